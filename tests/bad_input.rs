//! Bad input must give a clear message and exit code 1, never a panic, and
//! leave nothing behind (no API socket, no console file or socket).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vireo_tests::{probe_elf, run_vmm, scratch_dir, vmm_binary, RunResult};

/// Runs the VMM with `args` plus an API socket and a console file inside a
/// fresh directory, and checks the failure is clean.
fn expect_clean_failure(name: &str, args: &[&str], message: &str) -> RunResult {
    let dir = scratch_dir(name);
    let api = dir.join("api.sock");
    let console = format!("file:{}", dir.join("console.log").display());
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--api-socket", api.to_str().unwrap(), "--serial", &console]);
    let run = run_vmm(&all, Duration::from_secs(30));
    check_failure(&run, message);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    std::fs::remove_dir_all(dir).unwrap();
    run
}

fn check_failure(run: &RunResult, message: &str) {
    assert_eq!(
        run.status.code(),
        Some(1),
        "exit code; stderr: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(message),
        "stderr should mention {message:?}, got: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "panic: {}", run.stderr);
}

fn probe() -> String {
    probe_elf().to_str().unwrap().to_string()
}

#[test]
fn missing_kernel() {
    expect_clean_failure(
        "missing",
        &["--kernel", "/nonexistent/vmlinux"],
        "cannot open the kernel",
    );
}

#[test]
fn kernel_that_is_a_directory() {
    expect_clean_failure("dir", &["--kernel", "/tmp"], "is not a regular file");
}

#[test]
fn non_kernel_file() {
    let dir = scratch_dir("text-input");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "this is not a kernel\n".repeat(100)).unwrap();
    expect_clean_failure(
        "text",
        &["--kernel", text.to_str().unwrap()],
        "not a Linux kernel",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn truncated_elf() {
    let dir = scratch_dir("trunc-input");
    let elf = std::fs::read(probe_elf()).unwrap();
    for keep in [16usize, 64, 200, elf.len() / 2] {
        let cut = dir.join(format!("cut-{keep}.elf"));
        std::fs::write(&cut, &elf[..keep]).unwrap();
        expect_clean_failure(
            "trunc",
            &["--kernel", cut.to_str().unwrap()],
            "invalid or truncated",
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_initrd() {
    let p = probe();
    expect_clean_failure(
        "initrd",
        &["--kernel", &p, "--initrd", "/nonexistent/initrd"],
        "cannot open the initrd",
    );
}

#[test]
fn memory_larger_than_the_host() {
    let p = probe();
    expect_clean_failure(
        "bigmem",
        &["--kernel", &p, "--memory", "64T"],
        "this host has only",
    );
}

#[test]
fn malformed_memory_size() {
    let p = probe();
    expect_clean_failure(
        "badmem",
        &["--kernel", &p, "--memory", "12Q"],
        "invalid memory size",
    );
}

#[test]
fn zero_vcpus() {
    let p = probe();
    expect_clean_failure(
        "zerocpu",
        &["--kernel", &p, "--cpus", "0"],
        "vCPU count must be between 1 and 254",
    );
}

#[test]
fn too_many_vcpus() {
    let p = probe();
    expect_clean_failure(
        "manycpu",
        &["--kernel", &p, "--cpus", "300"],
        "vCPU count must be between 1 and 254",
    );
}

#[test]
fn bad_serial_spec() {
    let p = probe();
    let run = run_vmm(
        &["--kernel", &p, "--serial", "tcp:1234"],
        Duration::from_secs(30),
    );
    check_failure(&run, "invalid serial");
}

#[test]
fn no_dev_kvm() {
    // A private mount namespace with an empty /dev: the VMM sees no /dev/kvm.
    let dir = scratch_dir("nokvm");
    let api = dir.join("api.sock");
    let script = format!(
        "mount -t tmpfs none /dev && exec {} --kernel {} --api-socket {} --serial none",
        vmm_binary().display(),
        probe(),
        api.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux) is needed for this test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("cannot use /dev/kvm"), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"));
    assert!(!Path::new(&api).exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn handed_over_descriptors_that_are_not_open() {
    let p = probe();
    for flag in ["--ready-fd", "--serial-client-fd"] {
        let run = run_vmm(
            &["--kernel", &p, "--serial", "none", flag, "57"],
            Duration::from_secs(30),
        );
        check_failure(&run, "not an open inherited descriptor");
    }
}
