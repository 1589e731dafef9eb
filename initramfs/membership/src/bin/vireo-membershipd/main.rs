//! vireo-membershipd: a corosync-compatible membership daemon. Takes corosync's
//! own flags (`-f` foreground, `-c FILE`), reads the same corosync.conf, speaks
//! totem over udpu and serves its ClusterStatus as JSON on a Unix socket.
//!
//! One thread runs the protocol: it waits on the UDP socket with a timeout equal
//! to the nearest timer, so time and I/O stay in this loop and the state machine
//! below it stays pure. A second thread only answers status-socket clients from
//! a shared snapshot. No async runtime: one socket and a handful of timers do not
//! need one.
//!
//! Environment: VIREO_MEMBERSHIP_SOCKET (status socket, default
//! /run/vireo/membership.sock), VIREO_MEMBERSHIP_DELIVERY_LOG (append
//! `deliver <sender> <hex>` and `config <ring> <members…>` lines),
//! VIREO_MEMBERSHIP_SEND_EVERY_MS (broadcast a numbered test message every N ms),
//! VIREO_MEMBERSHIP_SEND_BURST (that many messages each period instead of one:
//! offered load above what the ring delivers, for throughput measurements),
//! VIREO_MEMBERSHIP_STATE_DIR (where the ring sequence file ringid_<nodeid>
//! lives; default system.state_dir from the config, else /var/lib/corosync, as
//! corosync), VIREO_MEMBERSHIP_GROUP_SOCKET (the group messaging socket,
//! default /run/vireo/groups.sock), VIREO_MEMBERSHIP_JOIN_PORT (TCP port of
//! the join service, default 5406; 0 turns it off), VIREO_CLUSTER_TOKEN_FILE
//! (the join token; default join.key beside the config),
//! VIREO_MEMBERSHIP_FIREWALL (`on`: accept the totem port only from the
//! nodelist's addresses, nftables table `vireo_totem`, kept in step with
//! every reload and removed at exit; docs/security.md; the appliance's init
//! turns it on).
//!
//! `-r` (the default, as corosync's) runs it with round-robin real-time
//! scheduling, `-p` without.
//!
//! SIGHUP (or a `corosync-cfgtool -R` anywhere in the ring) re-reads the
//! config: the nodelist and votes change without a restart.

mod clients;
mod groups;
mod join_service;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vireo_membership::config;
use vireo_membership::groups::{Groups, MemberId};
use vireo_membership::node::{Node, NodeAction, NodeTimer};
use vireo_membership::status::ClusterStatus;
use vireo_membership::transport::{Transport, Udpu};
use vireo_membership::wire;

use clients::{Inbox, Input};

/// Set by SIGTERM/SIGINT; the protocol loop leaves the ring and exits.
static STOP: AtomicBool = AtomicBool::new(false);
/// Set by SIGHUP: re-read corosync.conf.
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

extern "C" fn request_reload(_signal: libc::c_int) {
    RELOAD.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    let stop = request_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
    let reload = request_reload as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handlers only store to atomics, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, stop);
        libc::signal(libc::SIGINT, stop);
        libc::signal(libc::SIGHUP, reload);
    }
}

const DEFAULT_SOCKET: &str = "/run/vireo/membership.sock";
const DEFAULT_GROUP_SOCKET: &str = "/run/vireo/groups.sock";
const DEFAULT_STATE_DIR: &str = "/var/lib/corosync";

struct Options {
    config: PathBuf,
    /// Round-robin real-time scheduling (corosync's `-r`, its default;
    /// `-p` turns it off).
    realtime: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut config = PathBuf::from("/etc/corosync/corosync.conf");
    let mut realtime = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            // We never daemonise; -f is accepted for corosync compatibility.
            "-f" => {}
            "-c" => config = args.next().ok_or("-c needs a file")?.into(),
            "-r" => realtime = true,
            "-p" => realtime = false,
            "-h" | "--help" => {
                return Err("usage: vireo-membershipd [-f] [-c corosync.conf] [-r|-p]".into());
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Options { config, realtime })
}

/// Round-robin real-time scheduling at the highest priority, for this
/// thread and every thread started after it, as corosync does by default:
/// a daemon starved of CPU by busy VMs misses token rotations, and the ring
/// re-forms over and over (16 nodes with 64 VMs on two cores never kept a
/// ring without it). The kernel's real-time throttling (95% of each second
/// by default) still leaves the rest of the host its share. A refusal (no
/// privilege, a cgroup without real-time budget) is only a warning.
fn set_realtime() {
    // SAFETY: sched_get_priority_max only reads its argument.
    let max = unsafe { libc::sched_get_priority_max(libc::SCHED_RR) };
    // Zeroed, then the priority: musl's sched_param has more fields than
    // glibc's (the sporadic server's, unused by SCHED_RR).
    // SAFETY: sched_param is plain integers; all zeros is a valid value.
    let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
    param.sched_priority = max;
    // SAFETY: pid 0 is this thread; `param` is a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) } != 0 {
        eprintln!(
            "vireo-membershipd: warning: no real-time scheduling ({}); going on without it",
            io::Error::last_os_error()
        );
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vireo-membershipd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let opts = parse_args()?;
    if opts.realtime {
        set_realtime();
    }
    let text =
        fs::read_to_string(&opts.config).map_err(|e| format!("{}: {e}", opts.config.display()))?;
    let cfg = config::parse(&text).map_err(|e| format!("{}: {e}", opts.config.display()))?;
    for w in &cfg.warnings {
        eprintln!("vireo-membershipd: warning: line {}: {}", w.line, w.message);
    }
    let transport = Udpu::bind_local(&cfg).map_err(|e| format!("binding udpu: {e}"))?;
    let my_id = transport.node_id();
    let state_dir = match (
        std::env::var_os("VIREO_MEMBERSHIP_STATE_DIR"),
        &cfg.state_dir,
    ) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => PathBuf::from(DEFAULT_STATE_DIR),
    };
    let ring_file = state_dir.join(format!("ringid_{my_id}"));
    let node = Node::new(&cfg, my_id, load_ring_seq(&ring_file));
    let status = Arc::new(Mutex::new(node.status()));
    let socket = env_path("VIREO_MEMBERSHIP_SOCKET", DEFAULT_SOCKET);
    serve_status(&socket, Arc::clone(&status))?;
    let (inbox, inputs, wake) = Inbox::new().map_err(|e| format!("eventfd: {e}"))?;
    let group_socket = env_path("VIREO_MEMBERSHIP_GROUP_SOCKET", DEFAULT_GROUP_SOCKET);
    clients::serve(&group_socket, inbox.clone())?;
    let cluster_name = Arc::new(Mutex::new(
        cfg.totem.cluster_name.clone().unwrap_or_default(),
    ));
    start_join_service(&opts.config, &cfg, my_id, &inbox, cluster_name.clone())?;
    let inc = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let log = match std::env::var_os("VIREO_MEMBERSHIP_DELIVERY_LOG") {
        Some(p) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map_err(|e| format!("{}: {e}", Path::new(&p).display()))?,
        ),
        None => None,
    };
    let send_every = std::env::var("VIREO_MEMBERSHIP_SEND_EVERY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v > 0)
        .map(Duration::from_millis);
    let send_burst = std::env::var("VIREO_MEMBERSHIP_SEND_BURST")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, 10_000);
    let firewall = std::env::var("VIREO_MEMBERSHIP_FIREWALL").is_ok_and(|v| v == "on");
    if firewall {
        guard_totem_port(&cfg);
    }
    install_signal_handlers();
    eprintln!("vireo-membershipd: node {my_id} up");
    let mut node = node;
    let local_groups: Arc<Mutex<Vec<(String, MemberId)>>> = Arc::default();
    let shared = local_groups.clone();
    node.set_ring_hook(Box::new(move |ring, _members| {
        let list = shared.lock().map(|l| l.clone()).unwrap_or_default();
        Some(Groups::joinlist(ring.seq, list))
    }));
    let mut d = Daemon {
        groups: Groups::new(my_id, inc, &cfg),
        local_groups,
        clients: BTreeMap::new(),
        casts: VecDeque::new(),
        inputs,
        wake,
        conf_path: opts.config.clone(),
        conf_text: text,
        cluster_name,
        exit_at: None,
        node,
        transport,
        timers: BTreeMap::new(),
        status,
        log,
        ring_file,
        send_every,
        send_burst,
        next_send: Instant::now(),
        sent: 0,
        last_send_error: None,
        firewall,
    };
    d.run()
}

/// Loads the totem port's rules for `cfg`'s nodelist. A failure leaves
/// the port open, so it is said loudly, but the node stays in the cluster.
pub(crate) fn guard_totem_port(cfg: &config::CorosyncConfig) {
    match vireo_membership::firewall::apply(cfg) {
        Ok(()) => eprintln!(
            "vireo-membershipd: totem port {} accepted from {} nodelist addresses only",
            cfg.totem.port,
            cfg.nodes.len()
        ),
        Err(e) => {
            eprintln!("vireo-membershipd: warning: the totem port is open to every address: {e}")
        }
    }
}

/// The join service on our ring0 address (VIREO_MEMBERSHIP_JOIN_PORT, 0 = off).
fn start_join_service(
    conf: &Path,
    cfg: &config::CorosyncConfig,
    my_id: u32,
    inbox: &Inbox,
    cluster: Arc<Mutex<String>>,
) -> Result<(), String> {
    let port = match std::env::var("VIREO_MEMBERSHIP_JOIN_PORT") {
        Ok(p) => p
            .parse::<u16>()
            .map_err(|_| format!("VIREO_MEMBERSHIP_JOIN_PORT={p:?}"))?,
        Err(_) => vireo_membership::join::JOIN_PORT,
    };
    if port == 0 {
        return Ok(());
    }
    let addr = cfg
        .nodes
        .iter()
        .find(|n| n.nodeid == my_id)
        .map(|n| n.ring0_addr)
        .ok_or("our node id is not in the nodelist")?;
    let token_file = std::env::var_os("VIREO_CLUSTER_TOKEN_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| conf.with_file_name("join.key"));
    let service = join_service::JoinService {
        inbox: inbox.clone(),
        cluster,
        token_file,
    };
    join_service::spawn(std::net::SocketAddrV4::new(addr, port), service)
}

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

fn load_ring_seq(path: &Path) -> u64 {
    fs::read(path)
        .ok()
        .and_then(|b| {
            b.get(..8)
                .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
        })
        .unwrap_or(0)
}

fn serve_status(path: &Path, status: Arc<Mutex<ClusterStatus>>) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let json = {
                let s = status.lock().unwrap_or_else(|p| p.into_inner());
                serde_json::to_string(&*s).unwrap_or_default()
            };
            let _ = conn.write_all(json.as_bytes());
        }
    });
    Ok(())
}

pub(crate) struct Daemon {
    groups: Groups,
    /// The groups' local members as the ring hook reads them.
    local_groups: Arc<Mutex<Vec<(String, MemberId)>>>,
    /// Each local group client's event queue.
    clients: BTreeMap<u32, SyncSender<Vec<u8>>>,
    /// Group broadcasts the node's queue refused, in order, retried each turn.
    casts: VecDeque<Vec<u8>>,
    inputs: Receiver<Input>,
    wake: Arc<OwnedFd>,
    conf_path: PathBuf,
    /// The config as last read or written (kept for rewriting the nodelist).
    conf_text: String,
    cluster_name: Arc<Mutex<String>>,
    /// Our node was removed from the nodelist: leave the ring then.
    exit_at: Option<Instant>,
    node: Node,
    transport: Udpu,
    timers: BTreeMap<NodeTimer, Instant>,
    status: Arc<Mutex<ClusterStatus>>,
    log: Option<File>,
    ring_file: PathBuf,
    send_every: Option<Duration>,
    /// Test messages per period.
    send_burst: u32,
    next_send: Instant,
    sent: u64,
    last_send_error: Option<io::ErrorKind>,
    /// VIREO_MEMBERSHIP_FIREWALL=on: the totem port's rules follow the nodelist.
    firewall: bool,
}

impl Daemon {
    fn run(&mut self) -> Result<(), String> {
        let actions = self.node.start();
        self.apply(actions)?;
        while !STOP.load(Ordering::Relaxed) && !self.exit_due() {
            let now = Instant::now();
            let mut deadline = now + Duration::from_millis(500);
            if let Some(t) = self.timers.values().min() {
                deadline = deadline.min(*t);
            }
            if self.send_every.is_some() {
                deadline = deadline.min(self.next_send);
            }
            if !self.casts.is_empty() {
                deadline = deadline.min(now + Duration::from_millis(5));
            }
            let wait = deadline.saturating_duration_since(now);
            let (udp_ready, woken) = self.poll(wait);
            if udp_ready {
                if let Some(datagram) = self
                    .transport
                    .recv(Duration::ZERO)
                    .map_err(|e| e.to_string())?
                {
                    if let Ok(msg) = wire::decode(&datagram) {
                        let actions = self.node.receive(msg);
                        self.apply(actions)?;
                    }
                }
            }
            if woken {
                clients::drain_wake(&self.wake);
            }
            self.take_inputs()?;
            if RELOAD.swap(false, Ordering::Relaxed) {
                self.reload("SIGHUP")?;
            }
            self.fire_timers()?;
            self.test_traffic()?;
            self.flush_casts()?;
            self.publish_status();
        }
        // As corosync does on shutdown: tell the ring we are going, so it
        // reforms at once instead of after token + consensus.
        let actions = self.node.leave();
        self.apply(actions)?;
        eprintln!("vireo-membershipd: left the ring");
        if self.firewall {
            if let Err(e) = vireo_membership::firewall::remove() {
                eprintln!("vireo-membershipd: removing the totem port's rules: {e}");
            }
        }
        Ok(())
    }

    /// Updates the snapshot the status socket serves; logs quorum changes.
    fn publish_status(&mut self) {
        let snapshot = self.node.status();
        let mut current = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let changed = (current.quorate, current.ring_id, current.total_votes)
            != (snapshot.quorate, snapshot.ring_id, snapshot.total_votes);
        if changed {
            let ids: Vec<String> = snapshot
                .members
                .iter()
                .map(|m| m.node_id.to_string())
                .collect();
            eprintln!(
                "vireo-membershipd: quorum view ring {} members {} votes {}/{} quorate {}",
                snapshot.ring_id,
                ids.join(" "),
                snapshot.total_votes,
                snapshot.expected_votes,
                snapshot.quorate
            );
        }
        *current = snapshot;
    }

    fn fire_timers(&mut self) -> Result<(), String> {
        loop {
            let now = Instant::now();
            let due = self
                .timers
                .iter()
                .filter(|(_, at)| **at <= now)
                .min_by_key(|(_, at)| **at)
                .map(|(t, _)| *t);
            let Some(timer) = due else { return Ok(()) };
            self.timers.remove(&timer);
            let actions = self.node.timer_fired(timer);
            self.apply(actions)?;
        }
    }

    /// Test traffic: `send_burst` numbered messages per period on average. A
    /// loop turn that comes late sends what fell due (at most 64 periods), so the
    /// offered rate does not depend on how often the loop wakes; a full send
    /// queue ends the turn (the ring's flow control is the limit then).
    fn test_traffic(&mut self) -> Result<(), String> {
        let Some(every) = self.send_every else {
            return Ok(());
        };
        let now = Instant::now();
        let mut periods = 0;
        'due: while self.next_send <= now && periods < 64 {
            for _ in 0..self.send_burst {
                let msg = format!("{}:{}", self.node.node_id(), self.sent);
                if !self.node.broadcast(msg.into_bytes()) {
                    break 'due;
                }
                self.sent += 1;
            }
            periods += 1;
            self.next_send += every;
        }
        if self.next_send <= now {
            // Too far behind (queue full or a long stall): start afresh.
            self.next_send = now + every;
        }
        Ok(())
    }

    fn apply(&mut self, actions: Vec<NodeAction>) -> Result<(), String> {
        for action in actions {
            match action {
                NodeAction::Send(to, msg) => {
                    let bytes = wire::encode(&msg);
                    if let Err(e) = self.transport.send(to, &bytes) {
                        // Once per kind of error, not once per datagram.
                        if self.last_send_error != Some(e.kind()) {
                            eprintln!("vireo-membershipd: send: {e}");
                        }
                        self.last_send_error = Some(e.kind());
                    }
                }
                NodeAction::Arm(t, ms) => {
                    let at = Instant::now() + Duration::from_millis(ms.into());
                    self.timers.insert(t, at);
                }
                NodeAction::Cancel(t) => {
                    self.timers.remove(&t);
                }
                NodeAction::Deliver { sender, payload } => {
                    self.log_line(&format!("deliver {sender} {}", hex(&payload)));
                }
                NodeAction::Config { ring_id, members } => {
                    let ids: Vec<String> = members.iter().map(u32::to_string).collect();
                    eprintln!(
                        "vireo-membershipd: ring {ring_id} members {}",
                        ids.join(" ")
                    );
                    self.log_line(&format!("config {ring_id} {}", ids.join(" ")));
                    self.groups.config(ring_id.seq, &members);
                    self.group_outputs()?;
                }
                NodeAction::StoreRingSeq(seq) => store_ring_seq(&self.ring_file, seq),
                // The delivery log lists regular configurations only.
                NodeAction::Transitional { members, .. } => {
                    self.groups.transitional(&members);
                    self.group_outputs()?;
                }
                NodeAction::GroupDeliver { sender, payload } => {
                    self.groups.deliver(sender, payload);
                    self.group_outputs()?;
                }
                NodeAction::SyncCompleted { ring_id } => {
                    self.groups.sync_completed(ring_id.seq);
                    self.group_outputs()?;
                }
                NodeAction::ReloadConfig { sender } => {
                    self.reload(&format!("corosync-cfgtool -R on node {sender}"))?;
                }
            }
        }
        Ok(())
    }

    /// Waits for a datagram or a wake-up (group client, join service).
    fn poll(&self, wait: Duration) -> (bool, bool) {
        let mut fds = [
            libc::pollfd {
                fd: self.transport.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = wait.as_millis().min(60_000) as libc::c_int;
        // SAFETY: two valid pollfd entries for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n <= 0 {
            return (false, false);
        }
        (fds[0].revents != 0, fds[1].revents != 0)
    }

    fn exit_due(&self) -> bool {
        self.exit_at.is_some_and(|t| Instant::now() >= t)
    }

    fn log_line(&mut self, line: &str) {
        if let Some(f) = self.log.as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn store_ring_seq(path: &Path, seq: u64) {
    let write = || -> io::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(path, seq.to_le_bytes())
    };
    if let Err(e) = write() {
        eprintln!("vireo-membershipd: {}: {e}", path.display());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
