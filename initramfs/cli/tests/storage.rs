//! `vireo pool|vol|backup|task` against a real vireo-agent (the debug
//! build beside this test, which `make test-probe` builds first; or
//! `VIREO_AGENT`): tables, `--json`, streamed transfers, and the agent's
//! errors passed on with exit status 1.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("VIREO_AGENT") {
        return p.into();
    }
    // target/debug/deps/storage-HASH → target/debug/vireo-agent
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("vireo-agent");
    assert!(
        path.exists(),
        "{} not found: cargo build -p vireo-agent first (or set VIREO_AGENT)",
        path.display()
    );
    path
}

struct Agent {
    addr: SocketAddr,
    dir: PathBuf,
    child: Child,
}

impl Agent {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("vireo-cli-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(agent_binary())
            .args(["--listen", &addr.to_string()])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--run-dir")
            .arg(dir.join("run"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
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

    fn vireo(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vireo"))
            .args(args)
            .env("VIREO_HOST", self.addr.to_string())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.vireo(args);
        assert!(
            out.status.success(),
            "vireo {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A command that must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.vireo(args);
        assert_eq!(out.status.code(), Some(1), "vireo {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn pattern_file(path: &Path, len: usize) {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(path, data).unwrap();
}

#[test]
fn volumes_pools_and_transfers_through_the_cli() {
    let a = Agent::start();
    let table = a.ok(&["vol", "create", "local/a.qcow2", "--size", "64M"]);
    assert!(
        table.contains("local/a.qcow2") && table.contains("64.0 MiB"),
        "{table}"
    );
    let list = json(&a.ok(&["vol", "list", "--json"]));
    assert_eq!(list[0]["virtual_size"], 64 << 20);

    let up = a.dir.join("up.raw");
    pattern_file(&up, 8 << 20);
    a.ok(&["vol", "upload", up.to_str().unwrap(), "local/up.raw"]);
    let down = a.dir.join("down.raw");
    a.ok(&["vol", "download", "local/up.raw", down.to_str().unwrap()]);
    assert!(std::fs::read(&down).unwrap() == std::fs::read(&up).unwrap());

    let converted = json(&a.ok(&[
        "vol",
        "convert",
        "local/up.raw",
        "--format",
        "qcow2",
        "--json",
    ]));
    assert_eq!(
        (
            converted["state"].as_str(),
            converted["result"]["volume"]["format"].as_str()
        ),
        (Some("done"), Some("qcow2"))
    );
    let cloned = a.ok(&[
        "vol",
        "clone",
        "local/up.raw",
        "copy.raw",
        "--format",
        "raw",
    ]);
    assert!(cloned.contains("local/copy.raw"), "{cloned}");
    let raw = a.dir.join("raw.out");
    a.ok(&[
        "vol",
        "download",
        "local/copy.raw",
        raw.to_str().unwrap(),
        "--raw",
    ]);
    assert!(std::fs::read(&raw).unwrap() == std::fs::read(&up).unwrap());
    a.ok(&["vol", "snapshot", "local/a.qcow2", "s1"]);
    let show = a.ok(&["vol", "show", "local/a.qcow2"]);
    assert!(show.contains("snapshots s1"), "{show}");
    a.ok(&["vol", "delete-snapshot", "local/a.qcow2", "s1"]);

    let extra = a.dir.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    a.ok(&["pool", "add", "extra", "--dir", extra.to_str().unwrap()]);
    let pools = a.ok(&["pool", "list"]);
    assert!(
        pools.contains("extra") && pools.contains(extra.to_str().unwrap()),
        "{pools}"
    );
    let tasks = json(&a.ok(&["task", "list", "--json"]));
    assert!(tasks.as_array().unwrap().len() >= 3, "{tasks}");

    // The agent's reasons, passed on.
    let e = a.fails(&["vol", "show", "local/nope"]);
    assert!(e.contains("no volume 'local/nope'"), "{e}");
    let e = a.fails(&["vol", "resize", "local/a.qcow2", "--size", "1M"]);
    assert!(e.contains("only growing"), "{e}");
    let e = a.fails(&["backup", "vm1", "--storage", "local"]);
    assert!(e.contains("no VM manager"), "{e}");
    let e = a.fails(&["vol", "download", "local/up.raw", down.to_str().unwrap()]);
    assert!(
        e.contains("exists"),
        "an existing file is never overwritten: {e}"
    );
    let e = a.fails(&["pool", "remove", "local"]);
    assert!(e.contains("cannot be removed"), "{e}");
    a.ok(&["vol", "delete", "local/a.qcow2"]);
}
