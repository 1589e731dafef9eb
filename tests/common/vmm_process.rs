//! vireo-vmm as a running process for the snapshot, migration and
//! orderly-stop tests: spawned (in a network namespace or not) with an API
//! socket and a console file, the probe's counters read off the console,
//! and the API driven with JSON bodies. `Pair`: two namespaces joined by a
//! veth, for migrations over TCP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{api_call, probe_elf, vmm_binary, wait_for};

/// Two namespaces, `a` (10.88.0.1) and `b` (10.88.0.2), one veth between.
pub struct Pair {
    pub a: String,
    pub b: String,
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip").args(args).status().unwrap().success();
    assert!(ok, "ip {args:?}");
}

impl Pair {
    pub fn new(tag: &str) -> Self {
        let (a, b) = (
            format!("vmig-{}-{tag}-a", std::process::id()),
            format!("vmig-{}-{tag}-b", std::process::id()),
        );
        for ns in [&a, &b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n", &a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b,
        ]);
        for (ns, addr) in [(&a, "10.88.0.1/24"), (&b, "10.88.0.2/24")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", "eth0"]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
        }
        Self { a, b }
    }

    /// Takes the link down (both ends), as a cable pulled mid-transfer.
    pub fn cut(&self) {
        ip(&["-n", &self.a, "link", "set", "eth0", "down"]);
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// One vireo-vmm process.
pub struct Vmm {
    pub child: Child,
    pub api: PathBuf,
    pub console: PathBuf,
    pub stderr: PathBuf,
}

impl Vmm {
    /// `vireo-vmm ARGS` in namespace `ns` (None: this one), with an API
    /// socket and a console file named after `name` in `dir`.
    pub fn spawn(ns: Option<&str>, dir: &Path, name: &str, args: &[String]) -> Self {
        let api = dir.join(format!("{name}.sock"));
        let console = dir.join(format!("{name}.log"));
        let stderr = dir.join(format!("{name}.err"));
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(vmm_binary());
                c
            }
            None => Command::new(vmm_binary()),
        };
        let child = cmd
            .args(args)
            .arg("--api-socket")
            .arg(&api)
            .arg(format!("--serial=file:{}", console.display()))
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            api,
            console,
            stderr,
        }
    }

    pub fn boot(
        ns: Option<&str>,
        dir: &Path,
        name: &str,
        cpus: u8,
        memory: &str,
        cmdline: &str,
        extra: &[String],
    ) -> Self {
        let mut args: Vec<String> = ["--kernel", probe_elf().to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend([
            "--cpus".into(),
            cpus.to_string(),
            "--memory".into(),
            memory.into(),
        ]);
        args.extend(["--cmdline".into(), cmdline.into()]);
        args.extend_from_slice(extra);
        Self::spawn(ns, dir, name, &args)
    }

    pub fn incoming(ns: Option<&str>, dir: &Path, name: &str, url: &str, extra: &[String]) -> Self {
        let mut args = vec!["--incoming".to_string(), url.to_string()];
        args.extend_from_slice(extra);
        Self::spawn(ns, dir, name, &args)
    }

    pub fn serial(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The numbers after `prefix` on the console.
    pub fn counters(&self, prefix: &str) -> Vec<u64> {
        let serial = self.serial();
        assert!(!serial.contains("fail"), "the guest failed:\n{serial}");
        serial
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|r| r.split_whitespace().next()?.parse().ok())
            .collect()
    }

    pub fn wait_counters(&self, prefix: &str, n: usize, timeout: Duration) {
        wait_for(&format!("{n} '{prefix}' lines"), timeout, || {
            self.counters(prefix).len() >= n
        });
    }

    pub fn exited(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .unwrap()
            .map(|s| s.code().unwrap_or(-1))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// PUT /vm/migrate with `body`; must be accepted.
    pub fn migrate(&self, body: &str) {
        let (code, reply) = api_json(&self.api, "PUT", "/vm/migrate", body);
        assert_eq!(code, 202, "{reply}");
    }

    /// GET /vm/migration's phase (None once the VMM is gone).
    pub fn phase(&self) -> Option<String> {
        if !self.api.exists() {
            return None;
        }
        let (_, body) = api_call(&self.api, "GET", "/vm/migration");
        let at = body.find("\"phase\":\"")? + 9;
        Some(body[at..].split('"').next()?.to_string())
    }

    pub fn migration(&self) -> String {
        api_call(&self.api, "GET", "/vm/migration").1
    }

    /// GET /vm/migration's JSON body alone.
    pub fn migration_body(&self) -> String {
        api_call(&self.api, "GET", "/vm/migration").1
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A request with a JSON body.
pub fn api_json(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let code = reply.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, reply)
}

/// Waits until `vmm` exits; returns its exit code.
pub fn wait_exit(vmm: &mut Vmm, timeout: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(code) = vmm.exited() {
            return code;
        }
        assert!(
            start.elapsed() < timeout,
            "still running after {timeout:?}: {}",
            vmm.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The numbers after `prefix` in `text`.
pub fn counters_in(text: &str, prefix: &str) -> Vec<u64> {
    assert!(!text.contains("fail"), "the guest failed:\n{text}");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The guest's console across every VMM it ran on is one stream: its
/// counter must go 1, 2, 3, … with no gap and no repeat.
pub fn assert_continuous(transcript: &str, prefix: &str) -> usize {
    let seen = counters_in(transcript, prefix);
    let want: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(seen, want, "the guest's counter is not continuous");
    seen.len()
}
