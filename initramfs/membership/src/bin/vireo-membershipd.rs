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
//! corosync).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vireo_membership::config;
use vireo_membership::node::{Node, NodeAction, NodeTimer};
use vireo_membership::status::ClusterStatus;
use vireo_membership::transport::{Transport, Udpu};
use vireo_membership::wire;

/// Set by SIGTERM/SIGINT; the protocol loop leaves the ring and exits.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    let handler = request_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
}

const DEFAULT_SOCKET: &str = "/run/vireo/membership.sock";
const DEFAULT_STATE_DIR: &str = "/var/lib/corosync";

struct Options {
    config: PathBuf,
}

fn parse_args() -> Result<Options, String> {
    let mut config = PathBuf::from("/etc/corosync/corosync.conf");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            // We never daemonise; -f is accepted for corosync compatibility.
            "-f" => {}
            "-c" => config = args.next().ok_or("-c needs a file")?.into(),
            "-h" | "--help" => {
                return Err("usage: vireo-membershipd [-f] [-c corosync.conf]".into());
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Options { config })
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
    install_signal_handlers();
    eprintln!("vireo-membershipd: node {my_id} up");
    let mut d = Daemon {
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
    };
    d.run()
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

struct Daemon {
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
}

impl Daemon {
    fn run(&mut self) -> Result<(), String> {
        let actions = self.node.start();
        self.apply(actions)?;
        while !STOP.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut deadline = now + Duration::from_millis(500);
            if let Some(t) = self.timers.values().min() {
                deadline = deadline.min(*t);
            }
            if self.send_every.is_some() {
                deadline = deadline.min(self.next_send);
            }
            let wait = deadline.saturating_duration_since(now);
            if let Some(datagram) = self.transport.recv(wait).map_err(|e| e.to_string())? {
                if let Ok(msg) = wire::decode(&datagram) {
                    let actions = self.node.receive(msg);
                    self.apply(actions)?;
                }
            }
            self.fire_timers()?;
            self.test_traffic()?;
            self.publish_status();
        }
        // As corosync does on shutdown: tell the ring we are going, so it
        // reforms at once instead of after token + consensus.
        let actions = self.node.leave();
        self.apply(actions)?;
        eprintln!("vireo-membershipd: left the ring");
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
                }
                NodeAction::StoreRingSeq(seq) => store_ring_seq(&self.ring_file, seq),
                // The delivery log lists regular configurations only.
                NodeAction::Transitional { .. } => {}
            }
        }
        Ok(())
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
