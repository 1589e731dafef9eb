//! The agent as a real process on a temporary state and run directory,
//! driven over HTTP (ureq) and WebSocket (tungstenite) as the CLI drives it,
//! with the probe guest (VIREO_VMM, VIREO_PROBE: `make test-probe` sets them).
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../common/token.rs"]
mod token;
pub use token::{token_file, TOKEN};

/// The VMM and the probe, or a panic that says how to get them: a missing
/// prerequisite fails the test, it never passes untested.
pub fn vmm_and_probe() -> (PathBuf, PathBuf) {
    let (Some(vmm), Some(probe)) = (
        std::env::var_os("VIREO_VMM"),
        std::env::var_os("VIREO_PROBE"),
    ) else {
        panic!("VIREO_VMM and VIREO_PROBE must name the VMM and the probe (run `make test-probe`)");
    };
    for needed in [Path::new("/dev/kvm"), Path::new(&vmm), Path::new(&probe)] {
        assert!(needed.exists(), "{} is missing", needed.display());
    }
    (vmm.into(), probe.into())
}

/// A node's directories; dropping it kills every VMM it still has and
/// removes them.
pub struct Node {
    pub dir: PathBuf,
    pub vmm: PathBuf,
    pub probe: PathBuf,
}

impl Node {
    pub fn new(name: &str) -> Self {
        let (vmm, probe) = vmm_and_probe();
        let dir = std::env::temp_dir().join(format!("vireo-vms-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        Node { dir, vmm, probe }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn run(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// Where the `local` pool keeps its volumes.
    pub fn local_pool(&self) -> PathBuf {
        self.state().join("pools/local")
    }

    pub fn agent(&self, extra: &[&str]) -> Agent {
        Agent::start(self, extra)
    }

    /// The pids in the VMs' pid files.
    pub fn vmm_pids(&self) -> Vec<i32> {
        let Ok(dirs) = std::fs::read_dir(self.run().join("vms")) else {
            return Vec::new();
        };
        dirs.filter_map(|d| {
            let text = std::fs::read_to_string(d.ok()?.path().join("vmm.pid.json")).ok()?;
            serde_json::from_str::<Value>(&text).ok()?["pid"]
                .as_i64()
                .map(|p| p as i32)
        })
        .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for pid in self.vmm_pids() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*self.dir.to_string_lossy()) {
                // SAFETY: kill(2) on a pid whose command line names our directory.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Agent {
    pub base: String,
    pub child: Child,
    pub log: PathBuf,
    http: ureq::Agent,
}

impl Agent {
    fn start(node: &Node, extra: &[&str]) -> Agent {
        let log = node
            .dir
            .join(format!("agent-{}.log", Instant::now().elapsed().as_nanos()));
        let log = unique(log);
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vireo-agent"))
            .args(["--listen", "127.0.0.1:0", "--vmm"])
            .arg(&node.vmm)
            .arg("--run-dir")
            .arg(node.run())
            .arg("--admin-token-file")
            .arg(token_file(&node.dir))
            .args(extra)
            // Jailed VMs have their own test (vm_jail.rs, `--jail on`); the
            // others run the VMM directly whether or not a jailer is beside
            // it, unless VIREO_TEST_JAIL (auto, on) asks to run them jailed.
            .env(
                "VIREO_JAIL",
                std::env::var("VIREO_TEST_JAIL").unwrap_or_else(|_| "off".into()),
            )
            .env("VIREO_STATE_DIR", node.state())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let base = wait_for_listen_line(&log);
        let http = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build(),
        );
        Agent {
            base,
            child,
            log,
            http,
        }
    }

    /// `METHOD path [json]` → (status, body as JSON, or as a string).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.call_raw(method, path, body.map(|b| b.to_string()));
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub fn call_raw(&self, method: &str, path: &str, body: Option<String>) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {TOKEN}");
        let sent = match (method, body) {
            ("GET", _) => self.http.get(&url).header("authorization", &auth).call(),
            ("DELETE", _) => self.http.delete(&url).header("authorization", &auth).call(),
            ("POST", Some(b)) => self
                .http
                .post(&url)
                .header("authorization", &auth)
                .content_type("application/json")
                .send(&b),
            ("POST", None) => self
                .http
                .post(&url)
                .header("authorization", &auth)
                .send_empty(),
            ("PUT", Some(b)) => self
                .http
                .put(&url)
                .header("authorization", &auth)
                .content_type("application/json")
                .send(&b),
            (m, _) => panic!("method {m}"),
        };
        let mut resp = sent.unwrap_or_else(|e| panic!("{method} {url}: {e}\n{}", self.state_now()));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, text)
    }

    /// A call that must answer `want`; returns its body.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
        let (status, v) = self.call(method, path, body);
        assert_eq!(status, want, "{method} {path}: {v}");
        v
    }

    pub fn define_probe(&self, node: &Node, name: &str, cmdline: &str, memory_mib: u64) -> Value {
        let spec = json!({
            "name": name,
            "memory_mib": memory_mib,
            "boot": {"kind": "kernel", "kernel": node.probe, "cmdline": cmdline},
        });
        self.ok("POST", "/vms", Some(spec), 201)
    }

    pub fn vm(&self, name: &str) -> Value {
        self.ok("GET", &format!("/vms/{name}"), None, 200)
    }

    pub fn log(&self, name: &str) -> String {
        self.call_raw("GET", &format!("/vms/{name}/log"), None).1
    }

    /// Polls until `pred` holds for the VM, or panics after `limit`.
    pub fn wait_vm(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.vm(name);
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: not {what} within {limit:?}: {v}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until the console log contains `needle`.
    pub fn wait_log(&self, name: &str, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log(name);
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: no '{needle}' within {limit:?}; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a task to finish; returns it.
    pub fn wait_task(&self, id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let t = self.ok("GET", &format!("/tasks/{id}"), None, 200);
            if t["state"] != "running" {
                return t;
            }
            assert!(Instant::now() < deadline, "task {id} still running: {t}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The console WebSocket of `name`.
    pub fn console(&self, name: &str) -> Console {
        let url = format!(
            "{}/vms/{name}/console?token={TOKEN}",
            self.base.replace("http://", "ws://")
        );
        let (ws, _) = tungstenite::connect(url.as_str()).unwrap_or_else(|e| panic!("{url}: {e}"));
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
        }
        Console { ws }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Whether the agent still runs, and its log's tail: what a failed
    /// call prints, so a connection the agent dropped can be told from one
    /// it never made.
    fn state_now(&self) -> String {
        let pid = self.child.id();
        // A dead child not yet waited for is a zombie ("Z" in its stat).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = !stat.is_empty()
            && stat
                .rsplit(") ")
                .next()
                .is_some_and(|r| !r.starts_with('Z'));
        let log = self.agent_log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "agent pid {pid} {}; its log's last lines:\n{}",
            if alive { "running" } else { "gone" },
            tail.join("\n")
        )
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique(path: PathBuf) -> PathBuf {
    let mut n = 0;
    loop {
        let p = path.with_extension(format!("{n}.log"));
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

/// The agent prints `listening on http://ADDR` once its socket is bound.
fn wait_for_listen_line(log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        // Only a whole address: the log may be read while the line is
        // being written ("http://127.0" without the rest; CI saw it).
        let whole = text
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_once([',', ' ', '\n']));
        if let Some((url, _)) = whole {
            return url.to_string();
        }
        assert!(Instant::now() < deadline, "the agent did not start: {text}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub struct Console {
    pub ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
}

impl Console {
    /// Reads output until `needle` shows up (after the call), or panics.
    pub fn expect(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut seen = String::new();
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(tungstenite::Message::Binary(b)) => seen.push_str(&String::from_utf8_lossy(&b)),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("console closed: {e}; saw:\n{seen}"),
            }
            if seen.contains(needle) {
                return seen;
            }
        }
        panic!("no '{needle}' on the console within {limit:?}; saw:\n{seen}");
    }
}

/// RSS of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let mut s = String::new();
    std::fs::File::open(format!("/proc/{pid}/status"))
        .and_then(|mut f| f.read_to_string(&mut s))
        .unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
