//! `vireo pool|vol|backup|task` against a real vireo-agent (the debug
//! build beside this test, which `make test-probe` builds first; or
//! `VIREO_AGENT`): tables, `--json`, streamed transfers, and the agent's
//! errors passed on with exit status 1.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The admin token the test agent accepts (`--admin-token-file`).
const TOKEN: &str = "vireo-cli-test-token";

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
        Agent::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("vireo-cli-storage-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("admin-token"), format!("{TOKEN}\n")).unwrap();
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
            .arg("--admin-token-file")
            .arg(dir.join("admin-token"))
            .args(extra)
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
        self.vireo_as(args, Some(TOKEN), &[])
    }

    /// `vireo` with `token` in VIREO_TOKEN (or none), more variables, and
    /// a HOME of the test's own.
    fn vireo_as(&self, args: &[&str], token: Option<&str>, env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vireo"))
            .args(args)
            .env("VIREO_HOST", self.addr.to_string())
            .env("VIREO_TOKEN", token.unwrap_or(""))
            .env("HOME", &self.dir)
            .env_remove("XDG_CONFIG_HOME")
            .envs(env.iter().copied())
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
    assert!(e.contains("no VM named 'vm1'"), "{e}");
    let e = a.fails(&["vol", "download", "local/up.raw", down.to_str().unwrap()]);
    assert!(
        e.contains("exists"),
        "an existing file is never overwritten: {e}"
    );
    let e = a.fails(&["pool", "remove", "local"]);
    assert!(e.contains("cannot be removed"), "{e}");
    a.ok(&["vol", "delete", "local/a.qcow2"]);
}

#[test]
fn login_keeps_a_token_and_token_create_makes_a_tenant_one() {
    let a = Agent::start();
    let denied = a.vireo_as(&["vol", "list"], None, &[]);
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success() && err.contains("(401)"), "{err}");
    let password = std::fs::read_to_string(a.dir.join("state/initial-admin-password")).unwrap();
    let login = a.vireo_as(&["login"], None, &[("VIREO_PASSWORD", password.trim())]);
    let said = String::from_utf8_lossy(&login.stdout);
    assert!(
        login.status.success() && said.contains("as admin (admin)"),
        "{said}"
    );
    let saved = a.dir.join(".config/vireo/credentials.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The kept session works without VIREO_TOKEN.
    let made = a.vireo_as(
        &[
            "token", "create", "--role", "tenant", "--tenant", "acme", "--json",
        ],
        None,
        &[],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let secret = json(&String::from_utf8_lossy(&made.stdout))["token"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = a.vireo_as(&["vol", "list", "--json"], Some(&secret), &[]);
    assert!(listed.status.success());
    // A tenant may not make tokens.
    let refused = a.vireo_as(&["token", "list"], Some(&secret), &[]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("(403)"));
    let wrong = a.vireo_as(&["login"], None, &[("VIREO_PASSWORD", "nope")]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("(401)"));
}

#[test]
fn login_keeps_the_ca_it_trusted_for_later_commands() {
    let a = Agent::start_with(&["--tls"]);
    let host = format!("https://{}", a.addr);
    // The port is bound before the agent has made its certificate and first password.
    let first = a.dir.join("state/initial-admin-password");
    let up = Instant::now();
    let password = loop {
        match std::fs::read_to_string(&first) {
            Ok(p) if !p.trim().is_empty() => break p,
            _ => assert!(up.elapsed() < Duration::from_secs(20), "no first password"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let ca = a.dir.join("state/tls/node.crt");
    let https = [("VIREO_HOST", host.as_str())];
    // Without a CA the node's certificate is not trusted.
    let untrusted = a.vireo_as(&["vol", "list"], Some(TOKEN), &https);
    assert!(!untrusted.status.success());
    let login = a.vireo_as(
        &["login"],
        None,
        &[
            https[0],
            ("VIREO_PASSWORD", password.trim()),
            ("VIREO_CA", ca.to_str().unwrap()),
        ],
    );
    let said = String::from_utf8_lossy(&login.stdout);
    assert!(
        login.status.success() && said.contains("CA kept in"),
        "{said}{}",
        String::from_utf8_lossy(&login.stderr)
    );
    // Later commands trust it (and use the session) with neither --ca nor a token.
    let listed = a.vireo_as(&["vol", "list", "--json"], None, &https);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
}
