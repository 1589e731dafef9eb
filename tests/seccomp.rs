//! seccomp: each thread kind that breaks its filter kills the VMM with a
//! message naming the system call and the thread (exit status 159).
//!
//! The thread is made to break it by the `seccomp-test-hook` build of
//! vireo-vmm (`make vmm-seccomp-hook`, or VIREO_VMM_SECCOMP_HOOK): with
//! `VIREO_SECCOMP_TEST_SYSCALL=KIND` that thread kind calls personality(2),
//! which no filter allows, right after confining itself. The same runs
//! with `--seccomp off` and `log` finish normally, and the shipped build
//! ignores the variable.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use vireo_tests::{
    probe_elf, repo_root, run_captured, scratch_dir, vmm_binary, wait_for, wait_with_deadline,
    RunResult,
};

/// 128 + SIGSYS.
const KILLED: i32 = 159;

fn hook_binary() -> PathBuf {
    let path = std::env::var_os("VIREO_VMM_SECCOMP_HOOK")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/seccomp-hook/debug/vireo-vmm"));
    assert!(
        path.exists(),
        "{} missing: run `make vmm-seccomp-hook` or set VIREO_VMM_SECCOMP_HOOK",
        path.display()
    );
    path
}

fn expected_message(thread: &str) -> String {
    format!(
        "vireo-vmm: seccomp: thread {thread} made a forbidden system call: personality ({})",
        libc::SYS_personality
    )
}

/// Boots the probe with `args` under `binary`, the hook aimed at `kind`.
fn boot(binary: &Path, kind: &str, mode: &str, args: &[String]) -> RunResult {
    let mut cmd = Command::new(binary);
    cmd.env("VIREO_SECCOMP_TEST_SYSCALL", kind)
        .arg("--kernel")
        .arg(probe_elf())
        .args(["--memory", "64M", "--seccomp", mode])
        .args(args);
    run_captured(&mut cmd, Duration::from_secs(60))
}

fn assert_killed(r: &RunResult, thread: &str) {
    assert_eq!(
        r.status.code(),
        Some(KILLED),
        "expected death by seccomp; stderr:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&expected_message(thread)),
        "stderr does not name {thread} and personality:\n{}",
        r.stderr
    );
}

/// Arguments that make the thread kind `kind` exist during a probe boot.
fn args_for(kind: &str, dir: &Path) -> Vec<String> {
    match kind {
        "api" => vec![
            "--api-socket".into(),
            dir.join("api.sock").display().to_string(),
        ],
        "blk" | "spawn" => {
            let disk = dir.join("disk.raw");
            std::fs::File::create(&disk)
                .unwrap()
                .set_len(4 << 20)
                .unwrap();
            vec![
                "--disk".into(),
                format!("path={}", disk.display()),
                "--cmdline".into(),
                "probe.blk=write:7:1".into(),
            ]
        }
        "console" => vec![format!("--serial=file:{}", dir.join("console").display())],
        _ => vec![],
    }
}

#[test]
fn each_thread_kind_dies_naming_the_call_and_itself() {
    let hook = hook_binary();
    for (kind, thread) in [
        ("main", "main"),
        ("vcpu", "vireo-vcpu-0"),
        ("api", "vireo-api"),
        ("console", "vireo-console"),
        ("spawn", "vireo-spawn"),
        ("blk", "vireo-blk"),
    ] {
        let dir = scratch_dir(&format!("seccomp-{kind}"));
        let r = boot(&hook, kind, "kill", &args_for(kind, &dir));
        assert_killed(&r, thread);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn without_a_filter_the_same_calls_go_through() {
    let hook = hook_binary();
    for mode in ["off", "log"] {
        for kind in ["main", "vcpu", "blk"] {
            let dir = scratch_dir(&format!("seccomp-{mode}-{kind}"));
            let r = boot(&hook, kind, mode, &args_for(kind, &dir));
            assert!(
                r.status.success() && r.stdout.contains("PROBE done ok"),
                "--seccomp {mode}, hook {kind}: {:?}\n{}",
                r.status,
                r.stderr
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[test]
fn the_shipped_build_has_no_hook() {
    let dir = scratch_dir("seccomp-shipped");
    let r = boot(&vmm_binary(), "vcpu", "kill", &args_for("vcpu", &dir));
    assert!(
        r.status.success() && r.stdout.contains("PROBE done ok"),
        "{:?}\n{}",
        r.status,
        r.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The migration thread starts on PUT /vm/migrate and confines itself
/// before it connects anywhere.
#[test]
fn the_migration_thread_dies_naming_itself() {
    let dir = scratch_dir("seccomp-migrate");
    let socket = dir.join("api.sock");
    let mut child = Command::new(hook_binary())
        .env("VIREO_SECCOMP_TEST_SYSCALL", "migrate")
        .arg("--kernel")
        .arg(probe_elf())
        .args(["--memory", "64M", "--cmdline", "probe.tick"])
        .arg("--api-socket")
        .arg(&socket)
        .arg(format!("--serial=file:{}", dir.join("console").display()))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the API socket", Duration::from_secs(30), || {
        socket.exists()
    });
    let url = format!("unix:{}", dir.join("nobody.sock").display());
    let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let body = format!(r#"{{"url":"{url}"}}"#);
    write!(
        s,
        "PUT /vm/migrate HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(KILLED), "{stderr}");
    assert!(
        stderr.contains(&expected_message("vireo-migrate")),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
