//! One cluster node: a corosync or vireo-membershipd process in its namespace,
//! started the way an operator starts corosync (`-f -c FILE`), with its own
//! tmpfs on /run (corosync's pid and lock files live at fixed paths there).
//!
//! `ip netns exec` gives the command its own mount namespace (iproute2 unshares
//! one to remount /sys), so the /run mount stays inside it and never reaches the
//! host: no `unshare -m` needed.

use std::fs::File;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vireo_membership::quorumtool;
use vireo_membership::status::ClusterStatus;

use crate::conf::Kind;

/// How long one status query may take before it counts as no answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Node {
    pub kind: Kind,
    pub namespace: String,
    pub dir: PathBuf,
    child: Option<Child>,
    /// Starts so far; names each run's delivery log.
    incarnation: u32,
    /// vireo-membershipd: broadcast a numbered message every N ms.
    pub send_every_ms: Option<u32>,
    /// Messages per period (VIREO_MEMBERSHIP_SEND_BURST); None = 1.
    pub send_burst: Option<u32>,
}

impl Node {
    pub fn new(kind: Kind, namespace: String, dir: PathBuf) -> Node {
        Node {
            kind,
            namespace,
            dir,
            child: None,
            incarnation: 0,
            send_every_ms: None,
            send_burst: None,
        }
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("corosync.conf")
    }

    /// The Vireo node's status socket (outside /run, so the host reaches it).
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("membership.sock")
    }

    /// The Vireo node's group messaging socket.
    pub fn group_socket_path(&self) -> PathBuf {
        self.dir.join("groups.sock")
    }

    /// The running process's pid (to show a daemon was not restarted).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The delivery log of run `incarnation` (1 = first start).
    pub fn delivery_log(&self, incarnation: u32) -> PathBuf {
        self.dir.join(format!("delivery-{incarnation}.log"))
    }

    pub fn incarnations(&self) -> u32 {
        self.incarnation
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn start(&mut self) -> Result<(), String> {
        if self.is_running() {
            return Err(format!("{} already runs", self.namespace));
        }
        let program = match self.kind {
            Kind::Corosync => find_in_path("corosync")
                .ok_or("corosync is not installed (apt-get install corosync)")?,
            Kind::Vireo => membershipd_binary()?,
        };
        self.incarnation += 1;
        let _ = std::fs::remove_file(self.socket_path());
        let output = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("output.log"))
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        // A vireo-membershipd offering a flood of test traffic runs without
        // real-time priority (`-p`, which corosync 3 does not take): at
        // real-time priority the flood would take the host's CPUs.
        let flood = self.send_every_ms.is_some() && self.kind == Kind::Vireo;
        let flags = if flood { "-f -p" } else { "-f" };
        let script = format!("mount -t tmpfs none /run && exec \"$0\" {flags} -c \"$1\"");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace, "sh", "-c", &script])
            .arg(&program)
            .arg(self.conf_path())
            .env("VIREO_MEMBERSHIP_SOCKET", self.socket_path())
            .env("VIREO_MEMBERSHIP_GROUP_SOCKET", self.group_socket_path())
            // Vireo's ringid_<nodeid> file, next to corosync's (system.state_dir).
            .env("VIREO_MEMBERSHIP_STATE_DIR", &self.dir)
            .env(
                "VIREO_MEMBERSHIP_DELIVERY_LOG",
                self.delivery_log(self.incarnation),
            )
            .stdin(Stdio::null())
            .stdout(output.try_clone().map_err(|e| e.to_string())?)
            .stderr(output);
        if let Some(ms) = self.send_every_ms {
            cmd.env("VIREO_MEMBERSHIP_SEND_EVERY_MS", ms.to_string());
        }
        if let Some(n) = self.send_burst {
            cmd.env("VIREO_MEMBERSHIP_SEND_BURST", n.to_string());
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, as a crash would (no LEAVE message). `ip netns exec` and `sh`
    /// exec into the node program, so the child's pid is the node's.
    pub fn kill9(&mut self) -> Result<(), String> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| format!("{} is not running", self.namespace))?;
        let _ = child.kill();
        child
            .wait()
            .map(|_| ())
            .map_err(|e| format!("reaping {}: {e}", self.namespace))
    }

    /// SIGTERM and wait: a clean shutdown, in which both corosync and
    /// vireo-membershipd send a LEAVE before exiting.
    pub fn terminate(&mut self) -> Result<(), String> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| format!("{} is not running", self.namespace))?;
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        if !sent.is_ok_and(|s| s.success()) {
            let _ = child.kill();
        }
        child
            .wait()
            .map(|_| ())
            .map_err(|e| format!("reaping {}: {e}", self.namespace))
    }

    /// What the node reports: `corosync-quorumtool -s` in its namespace for a
    /// real node, the status socket for a Vireo node.
    pub fn status(&mut self) -> Result<ClusterStatus, String> {
        if !self.is_running() {
            return Err(format!(
                "{} is not running; its output ends: {}",
                self.namespace,
                self.output_tail()
            ));
        }
        match self.kind {
            Kind::Corosync => quorumtool::parse(&self.quorumtool_text()?),
            Kind::Vireo => read_status_socket(&self.socket_path()),
        }
    }

    /// The last lines the node printed (why it exited, when it did).
    fn output_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("output.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }

    /// The raw text of `corosync-quorumtool -s` on a real node.
    pub fn quorumtool_text(&self) -> Result<String, String> {
        self.run_in_namespace(&["corosync-quorumtool", "-s"])
    }

    /// `corosync-cmapctl -g KEY` on a real node: the value after `=`.
    pub fn cmap_get(&self, key: &str) -> Result<String, String> {
        let out = self.run_in_namespace(&["corosync-cmapctl", "-g", key])?;
        out.split_once(" = ")
            .map(|(_, v)| v.trim().to_string())
            .ok_or_else(|| format!("corosync-cmapctl -g {key}: {out}"))
    }

    /// Runs a tool in the node's namespace with a deadline; its stdout when it
    /// printed anything (quorumtool exits non-zero when not quorate).
    pub fn run_in_namespace(&self, args: &[&str]) -> Result<String, String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", args[0]))?;
        let start = Instant::now();
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if start.elapsed() > QUERY_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} timed out in {}", args[0], self.namespace));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if stdout.trim().is_empty() {
            return Err(format!(
                "{} in {}: {}",
                args.join(" "),
                self.namespace,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(stdout)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.kill9();
        }
    }
}

/// Reads the one JSON object the daemon writes to each connection.
pub fn read_status_socket(path: &Path) -> Result<ClusterStatus, String> {
    let mut stream =
        UnixStream::connect(path).map_err(|e| format!("connect {}: {e}", path.display()))?;
    stream
        .set_read_timeout(Some(QUERY_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("status from {}: {e}: {text}", path.display()))
}

/// vireo-membershipd: `VIREO_MEMBERSHIPD`, else the newer of the workspace's
/// release and debug builds. Missing → an error that says so (the interop tests
/// then fail with it rather than pass without a Vireo node).
pub fn membershipd_binary() -> Result<PathBuf, String> {
    workspace_binary("vireo-membershipd", "VIREO_MEMBERSHIPD").ok_or_else(|| {
        "vireo-membershipd is not built (no target/release or target/debug binary, no \
         VIREO_MEMBERSHIPD): the Vireo daemon does not exist on this branch yet, so nothing \
         with a Vireo node can run"
            .to_string()
    })
}

/// The `vireo` CLI (`VIREO_CLI`, else the newer workspace build).
pub fn cli_binary() -> Result<PathBuf, String> {
    workspace_binary("vireo", "VIREO_CLI")
        .ok_or_else(|| "the vireo CLI is not built: cargo build -p vireo-cli".to_string())
}

/// `name` in one of the $PATH directories (plus the sbin ones root has).
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file());
    found
}

pub fn workspace_binary(name: &str, env: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path)).filter(|p| p.exists());
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join(name))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}
