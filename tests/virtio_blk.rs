//! virtio-blk end to end: the probe guest writes a pattern through
//! virtio-mmio onto a raw file, the host checks the file's bytes, and a
//! second boot reads it back; read-only and missing disks fail cleanly.

use std::time::Duration;

use vireo_tests::{probe_disk_pattern, probe_elf, run_vmm, scratch_dir, ProbeReport, RunResult};

const MIB: usize = 1 << 20;
const SEED: u64 = 7;
const DISK_MIB: usize = 8;

fn expected(seed: u64, mib: usize) -> Vec<u8> {
    probe_disk_pattern(seed, mib)
}

fn boot(disk: &str, blk: &str) -> (RunResult, ProbeReport) {
    boot_with(&[disk], &format!("probe.blk={blk}"))
}

/// Boots the probe with `cmdline` and one `--disk` per spec.
fn boot_with(disks: &[&str], cmdline: &str) -> (RunResult, ProbeReport) {
    let elf = probe_elf();
    let mut args = vec![
        "--kernel",
        elf.to_str().unwrap(),
        "--memory",
        "64M",
        "--cmdline",
        cmdline,
        "--serial",
        "stdio",
    ];
    for d in disks {
        args.extend(["--disk", d]);
    }
    let run = run_vmm(&args, Duration::from_secs(120));
    let report = ProbeReport::parse(&run.stdout);
    (run, report)
}

fn context(run: &RunResult) -> String {
    format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr)
}

fn assert_line(report: &ProbeReport, run: &RunResult, key: &str, words: &[&str]) {
    let found = report
        .all(key)
        .iter()
        .any(|l| l.starts_with(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>()));
    assert!(
        found,
        "no line '{key} {}'\n{}",
        words.join(" "),
        context(run)
    );
}

#[test]
fn probe_writes_then_reads_a_raw_disk() {
    let dir = scratch_dir("virtio-rw");
    let path = dir.join("disk.raw");
    std::fs::write(&path, vec![0u8; DISK_MIB * MIB]).unwrap();
    let spec = format!("path={},id=probe", path.display());

    let (run, report) = boot(&spec, &format!("write:{SEED}:{DISK_MIB}"));
    assert!(run.status.success(), "{}", context(&run));
    assert_line(&report, &run, "virtio", &["dev=0", "id=2", "ok"]);
    assert_line(&report, &run, "blk", &["write", "mib=8", "ok"]);
    assert!(report.done_ok(), "{}", context(&run));
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes == expected(SEED, DISK_MIB),
        "disk bytes differ from the pattern"
    );

    let (run, report) = boot(&spec, &format!("read:{SEED}:{DISK_MIB}"));
    assert_line(&report, &run, "blk", &["read", "mib=8", "ok"]);
    assert!(report.done_ok(), "{}", context(&run));

    // The wrong seed must not pass: the check really compares.
    let (run, report) = boot(&spec, "read:8:1");
    assert_line(
        &report,
        &run,
        "blk",
        &["read", "mib=1", "fail", "data", "mismatch"],
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn read_only_disk_refuses_the_probe_write() {
    let dir = scratch_dir("virtio-ro");
    let path = dir.join("disk.raw");
    let before = vec![0x5au8; 2 * MIB];
    std::fs::write(&path, &before).unwrap();
    let spec = format!("path={},readonly=on", path.display());
    let (run, report) = boot(&spec, "write:7:1");
    assert_line(&report, &run, "virtio", &["dev=0", "id=2", "ok"]);
    assert_line(
        &report,
        &run,
        "blk",
        &["write", "mib=1", "fail", "write", "ioerr"],
    );
    assert!(!report.done_ok(), "{}", context(&run));
    assert!(
        std::fs::read(&path).unwrap() == before,
        "read-only disk changed"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_disk_file_is_a_clear_error() {
    let (run, _) = boot("path=/nonexistent/disk.raw", "read:1:1");
    assert_eq!(run.status.code(), Some(1), "{}", context(&run));
    assert!(
        run.stderr
            .contains("cannot open the disk '/nonexistent/disk.raw'"),
        "{}",
        context(&run)
    );
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn bad_disk_options_are_a_clear_error() {
    let (run, _) = boot("path=/tmp/x,cache=none", "read:1:1");
    assert_eq!(run.status.code(), Some(1), "{}", context(&run));
    assert!(
        run.stderr.contains("unknown option 'cache=none'"),
        "{}",
        context(&run)
    );
}

/// One image read-write in two places (two disks, or two VMMs) would be
/// two writers: the second is refused with the reason, as QEMU does.
#[test]
fn an_image_in_use_is_refused() {
    let dir = scratch_dir("virtio-lock");
    let path = dir.join("disk.raw");
    std::fs::write(&path, vec![0u8; MIB]).unwrap();
    let spec = format!("path={}", path.display());
    let (run, _) = boot_with(&[&spec, &spec], "x");
    assert_eq!(run.status.code(), Some(1), "{}", context(&run));
    assert!(run.stderr.contains("already in use"), "{}", context(&run));
    // Read-only users share it.
    let ro = format!("{spec},readonly=on");
    let (run, report) = boot_with(&[&ro, &ro], "x");
    assert!(report.done_ok(), "{}", context(&run));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn disk_is_announced_on_the_command_line() {
    let dir = scratch_dir("virtio-cmdline");
    let specs: Vec<String> = ["a.raw", "b.raw"]
        .iter()
        .map(|name| {
            let path = dir.join(name);
            std::fs::write(&path, vec![0u8; MIB]).unwrap();
            format!("path={}", path.display())
        })
        .collect();
    let (run, report) = boot_with(&[&specs[0], &specs[1]], "x");
    let cmdline = report
        .all("cmdline")
        .first()
        .map(|w| w.join(" "))
        .unwrap_or_default();
    assert!(
        cmdline.contains("virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"),
        "{}",
        context(&run)
    );
    assert_line(&report, &run, "virtio", &["dev=1", "id=2", "ok"]);
    assert!(report.done_ok(), "{}", context(&run));
    std::fs::remove_dir_all(dir).unwrap();
}
