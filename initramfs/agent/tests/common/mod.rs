//! What the storage tests share: the agent as a real process with its own
//! state directory, a blocking HTTP client (raw HTTP/1.1, so bad input can
//! be sent too), following tasks, and running the probe on a volume.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use vireo_tests::qemu_img;
pub use vireo_tests::{probe_command, scratch_dir};

mod token;
pub use token::{token_file, TOKEN};

/// A response: status, headers (lower-case names), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// The JSON error's message, checking the shape of error answers.
    pub fn error(&self) -> String {
        let v = self.json();
        assert_eq!(v["status"], self.status, "{}", self.text());
        v["error"].as_str().expect("an error message").to_string()
    }
}

/// One request; `body` is sent as is.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect to the agent");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    read_answer(s)
}

/// A request whose body is the file at `path`, streamed.
pub fn upload(addr: SocketAddr, target: &str, path: &Path) -> Answer {
    let mut file = std::fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    write!(
        s,
        "PUT {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // A refusal that needs no byte of the body (a volume that exists
    // already) is answered at once and the agent closes: the rest of the
    // body then meets a reset connection. The answer came first and is
    // still there to read.
    if let Err(e) = std::io::copy(&mut file, &mut s) {
        let refused_early = matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        );
        assert!(refused_early, "sending {}: {e}", path.display());
    }
    read_answer(s)
}

fn read_answer(mut s: TcpStream) -> Answer {
    let mut raw = Vec::new();
    // A reset after the whole answer (an early refusal, `upload`) is its end.
    if let Err(e) = s.read_to_end(&mut raw) {
        let answered = raw.windows(4).any(|w| w == b"\r\n\r\n");
        assert!(
            answered && e.kind() == std::io::ErrorKind::ConnectionReset,
            "reading the answer: {e}"
        );
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Answer {
    http(addr, "GET", path, b"")
}

pub fn post(addr: SocketAddr, path: &str, body: &Value) -> Answer {
    http(addr, "POST", path, body.to_string().as_bytes())
}

/// Waits for task `id` to end; its final state.
pub fn wait_task(addr: SocketAddr, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let t = get(addr, &format!("/tasks/{id}")).json();
        if t["state"] != "running" {
            return t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "task {id} runs on: {t}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A request that starts a task (202), followed to its end.
pub fn run_task(addr: SocketAddr, method: &str, path: &str, body: &Value) -> Value {
    let a = http(addr, method, path, body.to_string().as_bytes());
    assert_eq!(a.status, 202, "{method} {path}: {}", a.text());
    wait_task(addr, a.json()["id"].as_str().unwrap())
}

/// A task that must succeed; its result.
pub fn task_ok(addr: SocketAddr, method: &str, path: &str, body: &Value) -> Value {
    let t = run_task(addr, method, path, body);
    assert_eq!(t["state"], "done", "{method} {path}: {t}");
    t["result"].clone()
}

/// vireo-agent running on its own state directory.
pub struct Agent {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
}

impl Agent {
    pub fn start(name: &str) -> Self {
        Self::start_with(name, &[])
    }

    /// With more command-line flags.
    pub fn start_with(name: &str, extra: &[&str]) -> Self {
        let dir = scratch_dir(&format!("agent-{name}"));
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vireo-agent"))
            .args(["--listen", &addr.to_string()])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--run-dir")
            .arg(dir.join("run"))
            .arg("--admin-token-file")
            .arg(token_file(&dir))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start vireo-agent");
        let up = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                up.elapsed() < Duration::from_secs(20),
                "the agent did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { addr, dir, child }
    }

    /// The local pool's directory.
    pub fn local(&self) -> PathBuf {
        self.dir.join("state/pools/local")
    }

    /// The agent's resident memory now, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failed test's directory stays for a look; a passed one's goes
        // (the transfer test's alone left 450 MiB per run).
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Boots the probe on the image at `img` (id disk0) with the command line
/// `cmdline`; returns its serial output, which must end `PROBE done ok`.
pub fn probe(img: &Path, format: &str, cmdline: &str) -> String {
    let out = probe_command("64M", "stdio")
        .args(["--cmdline", cmdline])
        .args([
            "--disk",
            &format!("path={},format={format},id=disk0", img.display()),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run vireo-vmm");
    let serial = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && serial.contains("PROBE done ok"),
        "probe with {cmdline} on {}: {}\n{serial}\n{}",
        img.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serial
}

/// `qemu-img compare` says the two images read the same.
pub fn same_contents(a: &Path, b: &Path) {
    qemu_img::qemu_img(&["compare", "-U", qemu_img::arg(a), qemu_img::arg(b)]);
}

/// `qemu-img check` of a qcow2 image is clean (read under -U).
pub fn check(img: &Path) {
    let out = qemu_img::qemu_img(&["check", "-U", "-f", "qcow2", qemu_img::arg(img)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("No errors were found"),
        "{}: {text}",
        img.display()
    );
}
