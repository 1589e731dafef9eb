//! vireo-agent: the node agent, started and kept alive by vireo-init.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use vireo_agent::selftest::SelftestConfig;
use vireo_agent::server::{AppState, VmOptions};
use vireo_agent::store::Paths;
use vireo_agent::vms::jailed::{JailMode, JailSettings};

#[derive(Parser)]
#[command(name = "vireo-agent", version, about = "Vireo node agent (REST API)")]
struct Args {
    /// Address and port of the REST API.
    #[arg(long, default_value = "0.0.0.0:8006")]
    listen: SocketAddr,
    /// The VMM that POST /selftest/vmm runs.
    #[arg(long, default_value = "/usr/bin/vireo-vmm")]
    vmm: PathBuf,
    /// The probe guest that POST /selftest/vmm boots.
    #[arg(long, default_value = "/usr/lib/vireo/probe.elf")]
    probe: PathBuf,
    /// Persistent state: VM definitions, pools, networks (VIREO-DATA on
    /// the appliance; any directory elsewhere).
    #[arg(long, env = "VIREO_STATE_DIR", default_value = "/var/lib/vireo")]
    state_dir: PathBuf,
    /// Runtime files: VMM sockets, pid files, console logs (a tmpfs).
    #[arg(long, env = "VIREO_RUN_DIR", default_value = "/run/vireo")]
    run_dir: PathBuf,
    /// Memory VMs may use, in MiB (default: MemTotal less 384 MiB for the node).
    #[arg(long, env = "VIREO_VM_MEMORY_MIB")]
    vm_memory_mib: Option<u64>,
    /// Seconds a graceful VM shutdown waits before stopping the VM hard.
    #[arg(long, default_value = "60")]
    shutdown_timeout: u64,
    /// Seconds between samples of the CPU, memory, disk and network history.
    #[arg(long, default_value = "10")]
    metrics_interval: f64,
    /// Run each VM's VMM through vireo-jailer (own uid, namespaces, a
    /// cgroup with the VM's limits): auto = when root, the jailer exists,
    /// the kernel has the namespaces and a cgroup with the memory
    /// controller (docs/security.md, "Jailed VMs").
    #[arg(long, env = "VIREO_JAIL", value_enum, default_value = "auto")]
    jail: JailMode,
    /// The jailer (default: vireo-jailer beside --vmm).
    #[arg(long)]
    jailer: Option<PathBuf>,
    #[command(flatten)]
    cluster: vireo_agent::cluster::ClusterArgs,
    #[command(flatten)]
    security: vireo_agent::auth::startup::SecurityArgs,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vireo-agent: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().map_or(args.listen, |a| a);
    let paths = match Paths::new(args.state_dir.clone(), args.run_dir.clone()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "vireo-agent: cannot use {} / {}: {e}",
                args.state_dir.display(),
                args.run_dir.display()
            );
            std::process::exit(1);
        }
    };
    let cluster_tls = vireo_cluster::ClusterDir::new(&args.cluster.cluster_dir).tls();
    let transport = match args
        .security
        .transport(&paths.state, addr, Some(&cluster_tls))
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vireo-agent: TLS: {e}");
            std::process::exit(1);
        }
    };
    let tls = vireo_agent::cluster::peer::node_tls_on();
    let jail = match JailSettings::choose(args.jail, args.jailer, &args.vmm, &paths.run) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("vireo-agent: {e}");
            std::process::exit(1);
        }
    };
    if let Some(j) = &jail {
        eprintln!("vireo-agent: VMMs run jailed ({})", j.jailer.display());
    }
    // A jailed VMM gets the files in its jail (vms/jailed.rs).
    if tls {
        vireo_agent::cluster::peer::set_migration_tls(cluster_tls);
    }
    let selftest = SelftestConfig {
        vmm: args.vmm,
        probe: args.probe,
        ..SelftestConfig::default()
    };
    let options = VmOptions {
        memory_limit_mib: args.vm_memory_mib,
        shutdown_timeout_s: Some(args.shutdown_timeout),
        metrics_interval_s: Some(args.metrics_interval),
        jail,
    };
    let mut state = match AppState::with_vm_options(selftest, paths, options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vireo-agent: cannot load the node's state: {e}");
            std::process::exit(1);
        }
    };
    match args.security.apply(&state.auth, &state.paths.state) {
        Ok(Some(token)) => vireo_agent::cluster::peer::set_node_credential(token),
        Ok(None) => {}
        Err(e) => {
            eprintln!("vireo-agent: users and tokens: {e}");
            std::process::exit(1);
        }
    }
    state.cluster =
        vireo_agent::cluster::Cluster::open(&args.cluster, addr.port()).unwrap_or_else(|e| {
            eprintln!("vireo-agent: not joining the cluster's store: {e}");
            None
        });
    // Serving starts at once; the VMs' bridges are restored and VMs are
    // re-adopted and autostarted beside it (in a cluster, once the store said
    // which VMs are still this node's).
    let (vms, networks) = (state.vms.clone(), state.networks.clone());
    let recover = async move {
        networks.restore().await;
        vms.recover().await
    };
    match &state.cluster {
        Some(c) => {
            let rt = tokio::runtime::Handle::current();
            let local = (state.storage.clone(), state.networks.clone());
            c.start(state.vms.clone(), local, move || rt.block_on(recover))
        }
        None => drop(tokio::spawn(recover)),
    }
    // The history behind the UI's graphs and /metrics.
    state.metrics.spawn_sampler(state.vms.clone());
    // Said last: whoever waits for this line (init, tests, scripts) finds
    // the lines above already written.
    let scheme = if transport.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // One write(2): eprintln! writes a line in pieces, and a reader could
    // see the address cut short.
    let line = format!(
        "vireo-agent: listening on {scheme}://{addr}, state in {}\n",
        state.paths.state.display()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    let router = vireo_agent::server::router(state);
    if let Err(e) = vireo_agent::listen::serve(listener, router, stop_signal(), transport).await {
        eprintln!("vireo-agent: {e}");
        std::process::exit(2);
    }
    eprintln!("vireo-agent: stopped");
}

/// SIGTERM (init's shutdown) or SIGINT (a terminal's Ctrl-C).
async fn stop_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
