//! The agent's REST API end to end: a real server on an ephemeral port,
//! raw HTTP/1.1 over TCP (so malformed requests can be sent too).

use std::net::SocketAddr;

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use vireo_agent::selftest::SelftestConfig;
use vireo_agent::server::AppState;
use vireo_agent::types::{ErrorBody, Health, KvmKind, NodeInfo, VmmSelftest};

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Server {
    start_with(SelftestConfig::default()).await
}

async fn start_with(selftest: SelftestConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let base = std::env::temp_dir().join(format!(
        "vireo-agent-api-{}-{}",
        std::process::id(),
        addr.port()
    ));
    let paths = vireo_agent::store::Paths::new(base.join("state"), base.join("run")).unwrap();
    let state = AppState::new(selftest, paths).unwrap();
    let admin = vireo_agent::auth::Caller {
        user: "test".into(),
        role: vireo_agent::auth::Role::Admin,
        tenant: None,
    };
    state.auth.add_static_token(TOKEN, admin);
    let task = tokio::spawn(vireo_agent::server::serve(listener, state, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}

impl Server {
    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

const TOKEN: &str = "vireo-api-test-token";

/// Sends `raw` (with the test's token) and returns (status, body) of the answer.
async fn request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let raw = raw.replacen("\r\n", &format!("\r\nAuthorization: Bearer {TOKEN}\r\n"), 1);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
}

#[tokio::test]
async fn health_and_node() {
    let srv = start().await;
    let (status, body) = get(srv.addr, "/health").await;
    assert_eq!(status, 200);
    let h: Health = serde_json::from_str(&body).unwrap();
    assert_eq!(h.status, "ok");

    let (status, body) = get(srv.addr, "/node").await;
    assert_eq!(status, 200, "{body}");
    let info: NodeInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(info.arch, std::env::consts::ARCH);
    assert!(info.cpus >= 1 && info.memory_bytes > 0);
    let raw: serde_json::Value = serde_json::from_str(&body).unwrap();
    let kind = raw["kvm"]["kind"].as_str().unwrap();
    assert!(
        ["kvm_intel", "kvm_amd", "pvm", "none"].contains(&kind),
        "{kind}"
    );
    assert_eq!(kind, info.kvm.kind.as_str());
    assert!(raw["load"]["15m"].is_number());
    if info.kvm.kind != KvmKind::None {
        assert!(info.kvm.available);
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn errors_are_json() {
    let srv = start().await;
    let (status, body) = get(srv.addr, "/nope").await;
    assert_eq!(status, 404);
    let e: ErrorBody = serde_json::from_str(&body).unwrap();
    assert_eq!(e.status, 404);
    assert!(e.error.contains("/nope"));

    let post = "POST /node HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let (status, body) = request(srv.addr, post).await;
    assert_eq!(status, 405);
    let e: ErrorBody = serde_json::from_str(&body).unwrap();
    assert_eq!(e.status, 405);

    // Not HTTP at all: the server answers 400 and stays up.
    let (status, _) = request(srv.addr, "HELLO\r\n\r\n").await;
    assert_eq!(status, 400);
    assert_eq!(get(srv.addr, "/health").await.0, 200);
    srv.shutdown().await;
}

fn post_selftest() -> &'static str {
    "POST /selftest/vmm HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
}

fn post_selftest_linux() -> &'static str {
    "POST /selftest/vmm?guest=linux HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
}

/// A stand-in VMM: a shell script that prints its arguments, then runs `body`.
fn fake_vmm(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-vmm");
    std::fs::write(&path, format!("#!/bin/sh\necho \"ARGS $*\"\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vireo-agent-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("probe.elf"), b"\x7fELF").unwrap();
    dir
}

/// The probe selftest with `vmm`, the default guest and no Linux files.
fn probe_config(vmm: PathBuf, probe: PathBuf, timeout: Duration) -> SelftestConfig {
    SelftestConfig {
        vmm,
        probe,
        timeout,
        ..SelftestConfig::default()
    }
}

/// The report of a selftest run that must answer 200.
async fn selftest_report(cfg: SelftestConfig) -> VmmSelftest {
    let (status, body) = selftest(cfg).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn selftest(cfg: SelftestConfig) -> (u16, String) {
    let srv = start_with(cfg).await;
    let out = request(srv.addr, post_selftest()).await;
    srv.shutdown().await;
    out
}

#[tokio::test]
async fn selftest_reports_the_vmm_run() {
    let dir = scratch("ok");
    let cfg = probe_config(
        fake_vmm(
            &dir,
            "echo 'PROBE cpus online=2'\necho 'PROBE done ok'\necho oops >&2",
        ),
        dir.join("probe.elf"),
        Duration::from_secs(30),
    );
    let r = selftest_report(cfg).await;
    assert!(r.ok && !r.timed_out, "{r:?}");
    assert_eq!(r.exit_status, Some(0));
    let probe = dir.join("probe.elf").display().to_string();
    let args = format!("ARGS --kernel {probe} --cpus 2 --memory 64M --serial stdio");
    assert!(r.serial.starts_with(&args), "{}", r.serial);
    assert!(r.serial.contains("PROBE done ok\n"));
    assert_eq!(r.stderr, "oops\n");
    assert_eq!(r.command[1..5], ["--kernel", &probe, "--cpus", "2"]);

    // Exit 0 without the probe's last line, and a failing VMM: not ok.
    for (body, exit) in [("echo 'PROBE start'", Some(0)), ("exit 3", Some(3))] {
        let cfg = probe_config(
            fake_vmm(&dir, body),
            dir.join("probe.elf"),
            Duration::from_secs(30),
        );
        let r = selftest_report(cfg).await;
        assert!(!r.ok, "{r:?}");
        assert_eq!(r.exit_status, exit);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn selftest_time_limit_and_missing_files() {
    let dir = scratch("limits");
    let cfg = probe_config(
        fake_vmm(&dir, "exec sleep 30"),
        dir.join("probe.elf"),
        Duration::from_millis(300),
    );
    let r = selftest_report(cfg).await;
    assert!(r.timed_out && !r.ok && r.exit_status.is_none(), "{r:?}");
    assert!(r.duration_ms < 5000, "{r:?}");

    let cfg = probe_config(
        dir.join("fake-vmm"),
        dir.join("no-such-probe.elf"),
        Duration::from_secs(5),
    );
    let (status, body) = selftest(cfg).await;
    assert_eq!(status, 503);
    let e: ErrorBody = serde_json::from_str(&body).unwrap();
    assert!(e.error.contains("no-such-probe.elf"), "{}", e.error);

    let cfg = probe_config(
        dir.join("no-such-vmm"),
        dir.join("probe.elf"),
        Duration::from_secs(5),
    );
    let (status, body) = selftest(cfg).await;
    assert_eq!(status, 500);
    assert!(body.contains("no-such-vmm"), "{body}");
    std::fs::remove_dir_all(dir).unwrap();

    // A guest this agent does not know.
    let srv = start().await;
    let bad = "POST /selftest/vmm?guest=windows HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(request(srv.addr, bad).await.0, 400);
    srv.shutdown().await;

    // GET on the POST-only route.
    let srv = start().await;
    assert_eq!(get(srv.addr, "/selftest/vmm").await.0, 405);
    srv.shutdown().await;
}

/// The real thing: the probe through the agent, with the VMM and probe
/// the Makefile names (VIREO_VMM, VIREO_PROBE: `make test-probe` sets
/// them). A missing prerequisite fails the test; it never passes untested.
#[tokio::test]
async fn selftest_boots_the_real_probe() {
    let (Some(vmm), Some(probe)) = (
        std::env::var_os("VIREO_VMM"),
        std::env::var_os("VIREO_PROBE"),
    ) else {
        panic!("VIREO_VMM and VIREO_PROBE must name the VMM and the probe (run `make test-probe`)");
    };
    for needed in [Path::new("/dev/kvm"), Path::new(&vmm), Path::new(&probe)] {
        assert!(needed.exists(), "{} is missing", needed.display());
    }
    let cfg = probe_config(vmm.into(), probe.into(), Duration::from_secs(60));
    let r = selftest_report(cfg).await;
    assert!(r.ok, "{r:?}");
    assert!(
        r.serial.lines().any(|l| l == "PROBE cpus online=2"),
        "{}",
        r.serial
    );
    assert!(
        r.serial
            .lines()
            .any(|l| l == "PROBE cmdline vireo selftest"),
        "{}",
        r.serial
    );
}

/// `?guest=linux`: the kernel and initramfs go to the VMM, and only the
/// guest's /init line (every vCPU online) counts as success.
#[tokio::test]
async fn selftest_boots_a_linux_guest() {
    let dir = scratch("linux");
    std::fs::write(dir.join("bzImage"), b"MZ").unwrap();
    std::fs::write(dir.join("initramfs.cpio.gz"), b"\x1f\x8b").unwrap();
    let linux = |vmm: PathBuf| SelftestConfig {
        vmm,
        probe: dir.join("probe.elf"),
        linux_kernel: dir.join("bzImage"),
        linux_initrd: dir.join("initramfs.cpio.gz"),
        timeout: Duration::from_secs(30),
    };
    for (body, ok) in [
        (
            "echo 'VIREO-GUEST-INIT cpus=2 mem_kb=240000 kernel=6.1'",
            true,
        ),
        (
            "echo 'VIREO-GUEST-INIT cpus=1 mem_kb=240000 kernel=6.1'",
            false,
        ),
        ("echo 'PROBE done ok'", false),
    ] {
        let srv = start_with(linux(fake_vmm(&dir, body))).await;
        let (status, text) = request(srv.addr, post_selftest_linux()).await;
        srv.shutdown().await;
        assert_eq!(status, 200, "{text}");
        let r: VmmSelftest = serde_json::from_str(&text).unwrap();
        assert_eq!(r.ok, ok, "{body}: {r:?}");
        let kernel = dir.join("bzImage").display().to_string();
        let initrd = dir.join("initramfs.cpio.gz").display().to_string();
        assert_eq!(r.command[1..5], ["--kernel", &kernel, "--initrd", &initrd]);
        assert!(r.command.contains(&"256M".to_string()), "{:?}", r.command);
    }

    // An image without a Linux guest: 503 naming the missing file.
    std::fs::remove_file(dir.join("initramfs.cpio.gz")).unwrap();
    let srv = start_with(linux(dir.join("fake-vmm"))).await;
    let (status, text) = request(srv.addr, post_selftest_linux()).await;
    srv.shutdown().await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("initramfs.cpio.gz"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}
