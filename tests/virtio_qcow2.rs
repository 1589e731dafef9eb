//! qcow2 end to end: the probe guest writes and reads qcow2 images through
//! virtio-blk, and QEMU's own `qemu-img` judges the result (compare
//! against a reference image, check, convert). Corrupt images are refused
//! at start with a clear message and left unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vireo_tests::{
    img_binary, probe_disk_pattern, probe_elf, run_vmm, scratch_dir, ProbeReport, RunResult,
};

const MIB: usize = 1 << 20;
const SEED: u64 = 11;

fn boot(disk: &str, blk: &str) -> (RunResult, ProbeReport) {
    let elf = probe_elf();
    let cmdline = format!("probe.blk={blk}");
    let args = [
        "--kernel",
        elf.to_str().unwrap(),
        "--memory",
        "64M",
        "--cmdline",
        &cmdline,
        "--serial",
        "stdio",
        "--disk",
        disk,
    ];
    let run = run_vmm(&args, Duration::from_secs(120));
    let report = ProbeReport::parse(&run.stdout);
    (run, report)
}

fn context(run: &RunResult) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        run.status, run.stdout, run.stderr
    )
}

/// Boots the probe on `disk` and asserts its `blk` line ends in ok.
fn probe_ok(disk: &str, blk: &str) {
    let (run, report) = boot(disk, blk);
    let (op, mib) = blk
        .split_once(':')
        .map(|(op, rest)| (op, rest.rsplit(':').next().unwrap()))
        .unwrap();
    let line = [op.to_string(), format!("mib={mib}"), "ok".to_string()];
    assert!(
        report.all("blk").iter().any(|l| l.starts_with(&line)),
        "{}",
        context(&run)
    );
    assert!(
        report.done_ok() && run.status.success(),
        "{}",
        context(&run)
    );
}

fn qemu_img(args: &[&str]) -> std::process::Output {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (qemu-utils) is installed");
    assert!(
        out.status.success(),
        "qemu-img {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `qemu-img check` finds no errors and no leaks.
fn check_clean(p: &Path) {
    let out = qemu_img(&["check", "-f", "qcow2", s(p)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No errors were found"), "{text}");
}

fn compare_identical(fmt: &str, image: &Path, reference: &Path) {
    let out = qemu_img(&["compare", "-f", fmt, "-F", "qcow2", s(image), s(reference)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Images are identical"));
}

/// A qcow2 reference image with `bytes` as its contents.
fn reference(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    std::fs::write(&raw, bytes).unwrap();
    let img = dir.join(format!("{name}.qcow2"));
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&img)]);
    img
}

#[test]
fn probe_writes_match_a_reference_on_raw_and_on_qcow2_overlays() {
    let dir = scratch_dir("qcow2-overlay");
    const WRITTEN: usize = 3;
    let base_bytes = probe_disk_pattern(3, 8);
    let base = reference(&dir, "base", &base_bytes);
    let base_before = std::fs::read(&base).unwrap();
    let mut want = base_bytes.clone();
    want[..WRITTEN * MIB].copy_from_slice(&probe_disk_pattern(SEED, WRITTEN));
    let want_img = reference(&dir, "want", &want);
    let blk = format!("write:{SEED}:{WRITTEN}");

    // The overlay names its backing file relative to its own directory.
    let over = dir.join("over.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        s(&over),
    ]);
    probe_ok(&format!("path={},format=qcow2", over.display()), &blk);
    compare_identical("qcow2", &over, &want_img);
    check_clean(&over);

    // 2 MiB clusters: every 64 KiB write is partial, copied on write from the backing file.
    let big = dir.join("big.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=2M",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        s(&big),
    ]);
    probe_ok(&format!("path={},format=qcow2", big.display()), &blk);
    compare_identical("qcow2", &big, &want_img);
    check_clean(&big);
    assert!(
        std::fs::read(&base).unwrap() == base_before,
        "the backing file changed"
    );

    let raw = dir.join("disk.raw");
    std::fs::write(&raw, &base_bytes).unwrap();
    probe_ok(&format!("path={}", raw.display()), &blk);
    compare_identical("raw", &raw, &want_img);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn images_vireo_allocates_are_read_by_qemu_img() {
    let dir = scratch_dir("qcow2-alloc");
    let want = probe_disk_pattern(SEED, 8);
    let made = dir.join("made.qcow2");
    let out = Command::new(img_binary())
        .args(["create", s(&made), "8M"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_clean(&made);
    let fresh = dir.join("fresh.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&fresh), "8M"]);
    for img in [&made, &fresh] {
        let spec = format!("path={},format=qcow2", img.display());
        probe_ok(&spec, &format!("write:{SEED}:8"));
        check_clean(img);
        let raw = dir.join("out.raw");
        let _ = std::fs::remove_file(&raw);
        qemu_img(&["convert", "-f", "qcow2", "-O", "raw", s(img), s(&raw)]);
        assert!(
            std::fs::read(&raw).unwrap() == want,
            "{} reads back differently",
            img.display()
        );
        probe_ok(&spec, &format!("read:{SEED}:8"));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn compressed_clusters_read_in_the_guest() {
    let dir = scratch_dir("qcow2-compressed");
    let raw = dir.join("src.raw");
    std::fs::write(&raw, probe_disk_pattern(SEED, 4)).unwrap();
    let img = dir.join("c.qcow2");
    qemu_img(&[
        "convert",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        s(&raw),
        s(&img),
    ]);
    let out = qemu_img(&["check", "-f", "qcow2", s(&img)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("100.00% compressed clusters"),
        "not compressed: {text}"
    );
    let spec = format!("path={},format=qcow2,readonly=on", img.display());
    probe_ok(&spec, &format!("read:{SEED}:4"));
    let (run, report) = boot(&spec, "read:12:1");
    let fail = ["read", "mib=1", "fail", "data", "mismatch"].map(String::from);
    assert!(
        report.all("blk").iter().any(|l| l.starts_with(&fail)),
        "{}",
        context(&run)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Starting the VMM on `img` fails with exit 1 and `message`, and the file is unchanged.
fn refused(img: &Path, format: &str, message: &str) {
    let before = std::fs::read(img).unwrap();
    let (run, _) = boot(
        &format!("path={},format={format}", img.display()),
        "read:1:1",
    );
    assert_eq!(run.status.code(), Some(1), "{}", context(&run));
    assert!(
        run.stderr.contains("cannot open the disk") && run.stderr.contains(message),
        "{}",
        context(&run)
    );
    assert!(!run.stderr.contains("panicked"), "{}", context(&run));
    assert!(
        std::fs::read(img).unwrap() == before,
        "{} changed",
        img.display()
    );
}

fn poke(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

#[test]
fn corrupt_qcow2_images_are_refused_and_left_unchanged() {
    let dir = scratch_dir("qcow2-corrupt");
    let fresh = |name: &str| {
        let p = dir.join(name);
        qemu_img(&["create", "-q", "-f", "qcow2", s(&p), "4M"]);
        p
    };
    let p = fresh("magic.qcow2");
    poke(&p, 0, b"XFI\xfb");
    refused(&p, "qcow2", "bad magic");
    let p = fresh("l1.qcow2");
    poke(&p, 40, &(1u64 << 34).to_be_bytes());
    refused(&p, "qcow2", "L1 table at offset 0x400000000");
    let p = fresh("order.qcow2");
    poke(&p, 96, &9u32.to_be_bytes());
    refused(&p, "qcow2", "refcount_order 9 is out of range");
    let p = fresh("raw.qcow2");
    refused(&p, "raw", "it is a qcow2 image; use format=qcow2");

    let (a, b) = (dir.join("a.qcow2"), dir.join("b.qcow2"));
    qemu_img(&["create", "-q", "-f", "qcow2", s(&a), "1M"]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "a.qcow2",
        "-F",
        "qcow2",
        s(&b),
    ]);
    qemu_img(&[
        "rebase",
        "-u",
        "-f",
        "qcow2",
        "-b",
        "b.qcow2",
        "-F",
        "qcow2",
        s(&a),
    ]);
    refused(&b, "qcow2", "loops back into its own chain");
    let orphan = dir.join("orphan.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-b",
        "gone.qcow2",
        "-F",
        "qcow2",
        s(&orphan),
        "1M",
    ]);
    refused(&orphan, "qcow2", "cannot open its backing file");
    std::fs::remove_dir_all(dir).unwrap();
}

/// What `probe.blk=trim:SEED:6` leaves: the pattern with sectors
/// 2048..4096, 4097..4103 and 6144..8192 zeroed.
fn trimmed(seed: u64) -> Vec<u8> {
    let mut want = probe_disk_pattern(seed, 6);
    for (sector, count) in [(2048, 2048), (4097, 6), (6144, 2048)] {
        want[sector * 512..(sector + count) * 512].fill(0);
    }
    want
}

#[test]
fn guest_write_zeroes_and_discard_reach_raw_and_qcow2_disks() {
    use std::os::unix::fs::MetadataExt;
    let dir = scratch_dir("trim");
    let want = trimmed(SEED);
    // Raw through O_DIRECT: the discarded MiB is a hole again.
    let raw = dir.join("t.raw");
    std::fs::write(&raw, vec![0u8; 6 * MIB]).unwrap();
    probe_ok(
        &format!("path={},direct=on", raw.display()),
        &format!("trim:{SEED}:6"),
    );
    assert!(std::fs::read(&raw).unwrap() == want, "raw bytes differ");
    let allocated = std::fs::metadata(&raw).unwrap().blocks() * 512;
    assert!(
        allocated <= 5 * MIB as u64,
        "discard freed nothing: {allocated} bytes allocated"
    );

    let img = dir.join("t.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&img), "6M"]);
    probe_ok(
        &format!("path={},format=qcow2", img.display()),
        &format!("trim:{SEED}:6"),
    );
    check_clean(&img);
    let out = dir.join("t.out");
    qemu_img(&["convert", "-f", "qcow2", "-O", "raw", s(&img), s(&out)]);
    assert!(
        std::fs::read(&out).unwrap() == want,
        "qcow2 contents differ"
    );
    let map = qemu_img(&["map", "-f", "qcow2", "--output=json", s(&img)]);
    let map = String::from_utf8_lossy(&map.stdout);
    for start in [MIB, 3 * MIB] {
        let zero = format!("{{ \"start\": {start}, \"length\": {MIB}, \"depth\": 0, \"present\": true, \"zero\": true, \"data\": false");
        assert!(
            map.contains(&zero),
            "MiB at {start} is not zero clusters:\n{map}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}
