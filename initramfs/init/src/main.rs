//! vireo-init: PID 1 of the Vireo appliance. See docs/appliance.md.
//!
//! Boot: mounts → command line → hostname → coldplug → power button →
//! state disk → network (own thread; the stored node settings from the
//! state disk join the command line's) → agent (+ debug shell) → main loop.
//! Invoked as `modprobe` (the kernel's request_module helper), it loads
//! the named modules and exits.
//! The main loop reads signals synchronously (all blocked, sigtimedwait):
//! SIGCHLD reaps and restarts services; SIGTERM/SIGINT restart the node,
//! SIGUSR1/SIGUSR2 (and the power button) power it off; SIGHUP (sent by
//! `vireo cluster create|join|leave`) starts or leaves stopped the
//! membership daemon as the node's corosync.conf now exists or not.

mod cmdline;
mod log;
mod modules;
mod mounts;
mod net;
mod power;
mod service;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use power::Action;
use service::Service;

const AGENT: &str = "/usr/bin/vireo-agent";
const MEMBERSHIPD: &str = "/usr/bin/vireo-membershipd";
const CLI: &str = "/usr/bin/vireo";
/// The node's cluster files on VIREO-DATA (vireo_cluster::DEFAULT_DIR).
const CLUSTER_DIR: &str = "/var/lib/vireo/cluster";
const CLUSTER_CONF: &str = "/var/lib/vireo/cluster/corosync.conf";
/// Where the CLI finds whom to SIGHUP (never a host's PID 1 in tests).
const INIT_PID_FILE: &str = "/run/vireo/init.pid";
/// How often conditional services are rechecked without a SIGHUP.
const RECHECK: Duration = Duration::from_secs(5);
const BUSYBOX: &str = "/bin/busybox";
const DEFAULT_LISTEN: &str = "0.0.0.0:8006";
/// `vireo.admin_token=` handed to the agent (tmpfs, 0600).
const ADMIN_TOKEN_FILE: &str = "/run/vireo/admin-token";
const SIGNALS: [Signal; 6] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGHUP,
];

/// The services' PATH: the node's programs, busybox's applets, nft.
const SERVICE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.first().is_some_and(|a| a.ends_with("modprobe")) {
        std::process::exit(modules::modprobe_main(&args[1..]));
    }
    if args.get(1).map(String::as_str) == Some("--net-only") {
        std::process::exit(net::run_foreground(&args[2..]));
    }
    if std::process::id() != 1 {
        eprintln!("vireo-init: must run as PID 1 (the appliance's /init)");
        std::process::exit(1);
    }
    // The kernel starts init with no PATH; every service inherits this one
    // (nft, which the agent and the membership daemon run, is in /usr/sbin).
    // (Set before any thread exists to read the environment.)
    std::env::set_var("PATH", SERVICE_PATH);
    // Before any thread exists, so every thread inherits the blocked mask and
    // the signals queue for the main loop's sigtimedwait.
    block_signals();
    let mut mounts = mounts::Mounts::default();
    mounts.early();
    log!("Vireo init starting");
    let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let (mut cmd, warnings) = cmdline::parse(&text);
    for w in &warnings {
        log!("cmdline: {w}");
    }
    set_hostname(cmd.hostname.as_deref().unwrap_or("vireo"));
    // Ctrl-Alt-Del becomes SIGINT to PID 1 (an orderly restart) instead of
    // an immediate reboot.
    let _ = nix::sys::reboot::set_cad_enabled(false);

    let loader = Arc::new(modules::Loader::open(false));
    loader.coldplug();
    let nodes = loader.make_static_nodes();
    if nodes > 0 {
        log!("modules: {nodes} device node(s) that load their module on first open (modules.devname)");
    }
    for m in &cmd.modules {
        loader.load_logged(m);
    }
    // The cluster's fencing watchdog: a hardware one coldplug found, else
    // softdog (nothing counts down until the agent opens it).
    if !std::path::Path::new("/dev/watchdog").exists() {
        match loader.load("softdog") {
            Ok(()) => log!("watchdog: softdog"),
            Err(e) => log!("watchdog: none (softdog: {e}); cluster HA VMs are not fenced here"),
        }
    }
    power::watch_power_button(loader.clone());
    // The state disk first: bonds and VLANs kept there are made before vmbr0.
    mounts.state(&loader);
    let stored = std::path::Path::new(mounts::STATE_DIR).join(net::stored::FILE);
    for note in net::stored::load(&mut cmd, &stored) {
        log!("network settings: {note}");
    }
    net::spawn(&cmd, loader.clone());

    let mut services = start_services(&cmd);
    let action = main_loop(&mut services);
    power::shutdown(action, &mut services, &mut mounts);
}

fn set_hostname(name: &str) {
    match nix::unistd::sethostname(name) {
        Ok(()) => log!("hostname: {name}"),
        Err(e) => log!("hostname {name}: {e}"),
    }
}

/// Blocks the signals PID 1 handles, and gives them a no-op handler: the
/// kernel drops signals to init whose disposition is the default, and a
/// handler makes sure they stay pending until sigtimedwait takes them.
fn block_signals() {
    extern "C" fn noop(_: libc::c_int) {}
    let act = SigAction::new(
        SigHandler::Handler(noop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let mut set = SigSet::empty();
    for s in SIGNALS {
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        let _ = unsafe { sigaction(s, &act) };
        set.add(s);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
}

fn start_services(cmd: &cmdline::Cmdline) -> Vec<Service> {
    let listen = cmd.agent_listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let mut agent_args = vec![AGENT.into(), "--listen".into(), listen.into()];
    let _ = std::fs::create_dir_all("/run/vireo");
    if let Some(token) = &cmd.admin_token {
        match write_private(ADMIN_TOKEN_FILE, token) {
            Ok(()) => agent_args.extend(["--admin-token-file".into(), ADMIN_TOKEN_FILE.into()]),
            Err(e) => eprintln!("vireo-init: {ADMIN_TOKEN_FILE}: {e}"),
        }
    }
    let agent = Service::new("vireo-agent", agent_args)
        .env("VIREO_STATE_DIR", mounts::STATE_DIR)
        .env("PATH", SERVICE_PATH)
        .restart_when_created(CLUSTER_CONF);
    let mut services = vec![agent, membershipd()];
    if let Some(join) = cluster_join(cmd) {
        services.push(join);
    }
    if cmd.debug_shell {
        services.push(debug_shell());
    }
    let _ = std::fs::create_dir_all("/run/vireo");
    let _ = std::fs::write(INIT_PID_FILE, "1\n");
    services
}

fn write_private(path: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{text}")
}

/// The membership daemon: its own process, so an agent restart is never a
/// node failure; only while the node is in a cluster (its corosync.conf on
/// VIREO-DATA, with the ring id beside it).
fn membershipd() -> Service {
    Service::new(
        "vireo-membershipd",
        vec![
            MEMBERSHIPD.into(),
            "-f".into(),
            "-c".into(),
            CLUSTER_CONF.into(),
        ],
    )
    .env("VIREO_MEMBERSHIP_STATE_DIR", CLUSTER_DIR)
    // udpu has no crypto: the totem port only for the nodelist's addresses.
    .env("VIREO_MEMBERSHIP_FIREWALL", "on")
    .only_while(CLUSTER_CONF)
}

/// Zero-touch: `vireo.cluster=ADDR vireo.join_token=T` joins that cluster
/// at boot (retried until the network and the member answer), unless this
/// node is in a cluster already. The token goes through the environment,
/// not argv, so `ps` does not show it.
fn cluster_join(cmd: &cmdline::Cmdline) -> Option<Service> {
    let join = cmd.cluster_join.as_ref()?;
    if std::path::Path::new(CLUSTER_CONF).exists() {
        log!("cluster: already in a cluster ({CLUSTER_CONF}); vireo.cluster= ignored");
        return None;
    }
    log!("cluster: joining through {} (vireo.cluster=)", join.member);
    let argv = [CLI, "cluster", "join", join.member.as_str()]
        .map(String::from)
        .to_vec();
    Some(
        Service::new("cluster-join", argv)
            .env("VIREO_JOIN_TOKEN", &join.token)
            .env("VIREO_CLUSTER_DIR", CLUSTER_DIR)
            .oneshot(),
    )
}

/// `vireo.debug=shell`: busybox sh on the console, respawned when it exits.
/// cttyhack opens the real console tty so the shell gets job control.
fn debug_shell() -> Service {
    log!("debug shell enabled on the console (vireo.debug=shell)");
    let status = std::process::Command::new(BUSYBOX)
        .args(["--install", "-s", "/bin"])
        .status();
    if !status.is_ok_and(|s| s.success()) {
        log!("debug shell: busybox --install failed");
    }
    let argv = [BUSYBOX, "cttyhack", "/bin/sh"].map(String::from).to_vec();
    Service::new("debug-shell", argv)
        .env("PATH", SERVICE_PATH)
        .env("HOME", "/")
        .env("TERM", "vt100")
        .session()
        .stop_signal(Signal::SIGKILL)
}

/// Runs until a shutdown signal; returns what to do.
fn main_loop(services: &mut [Service]) -> Action {
    let mut set = SigSet::empty();
    for s in SIGNALS {
        set.add(s);
    }
    let mut next_recheck = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_recheck {
            for s in services.iter_mut() {
                s.recheck(now);
            }
            next_recheck = now + RECHECK;
        }
        for s in services.iter_mut() {
            s.poll(now);
        }
        let wait = services
            .iter()
            .filter_map(|s| s.next_due(now))
            .min()
            .unwrap_or(RECHECK)
            .min(next_recheck.saturating_duration_since(now));
        match wait_signal(&set, wait) {
            Some(Signal::SIGCHLD) => reap(services),
            Some(Signal::SIGHUP) => next_recheck = Instant::now(),
            Some(Signal::SIGTERM) | Some(Signal::SIGINT) => return Action::Restart,
            Some(Signal::SIGUSR1) | Some(Signal::SIGUSR2) => return Action::PowerOff,
            _ => {}
        }
    }
}

/// sigtimedwait(2): the next pending signal of `set`, or None on timeout.
fn wait_signal(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: valid set and timespec pointers; no siginfo wanted.
    let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    Signal::try_from(sig).ok()
}

/// Reaps every exited child: services get restarted, orphans re-parented to
/// PID 1 are simply collected.
fn reap(services: &mut [Service]) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(st) => {
                if !services.iter_mut().any(|s| s.on_exit(&st)) {
                    log_orphan(&st);
                }
            }
        }
    }
}

fn log_orphan(st: &WaitStatus) {
    if let Some(pid) = st.pid() {
        if matches!(st, WaitStatus::Signaled(..)) {
            log!("reaped pid {pid} ({})", service::describe(st));
        }
    }
}
