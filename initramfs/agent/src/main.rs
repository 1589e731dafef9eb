//! vireo-agent: the node agent, started and kept alive by vireo-init.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use vireo_agent::selftest::SelftestConfig;
use vireo_agent::server::AppState;

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
    eprintln!("vireo-agent: listening on http://{addr}");
    let state = AppState::new(SelftestConfig {
        vmm: args.vmm,
        probe: args.probe,
        ..SelftestConfig::default()
    });
    if let Err(e) = vireo_agent::server::serve(listener, state, stop_signal()).await {
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
