//! qcow2 end to end: the probe guest writes and reads qcow2 images through
//! virtio-blk, and QEMU's own `qemu-img` judges the result (compare
//! against a reference image, check, convert). Corrupt images are refused
//! at start with a clear message and left unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vireo_tests::qemu_img::{arg, check_clean, create, qemu_img, read_as_raw};
use vireo_tests::{
    img_binary, probe_disk_pattern, probe_elf, run_ok, run_vmm, scratch_dir, ProbeReport, RunResult,
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

fn compare_identical(fmt: &str, image: &Path, reference: &Path) {
    let out = qemu_img(&[
        "compare",
        "-f",
        fmt,
        "-F",
        "qcow2",
        arg(image),
        arg(reference),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Images are identical"));
}

/// A qcow2 reference image with `bytes` as its contents.
fn reference(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    std::fs::write(&raw, bytes).unwrap();
    let img = dir.join(format!("{name}.qcow2"));
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", arg(&raw), arg(&img)]);
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
    // 2 MiB clusters: every 64 KiB write is partial, copied on write from the backing file.
    let big = dir.join("big.qcow2");
    let backed = ["-b", "base.qcow2", "-F", "qcow2"];
    for (img, opts) in [(&over, &[][..]), (&big, &["-o", "cluster_size=2M"][..])] {
        create("qcow2", img, &[opts, &backed[..]].concat(), None);
        probe_ok(&format!("path={},format=qcow2", img.display()), &blk);
        compare_identical("qcow2", img, &want_img);
        check_clean(img);
    }
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
    run_ok(Command::new(img_binary()).args(["create", arg(&made), "8M"]));
    check_clean(&made);
    let fresh = dir.join("fresh.qcow2");
    create("qcow2", &fresh, &[], Some("8M"));
    for img in [&made, &fresh] {
        let spec = format!("path={},format=qcow2", img.display());
        probe_ok(&spec, &format!("write:{SEED}:8"));
        check_clean(img);
        assert!(
            read_as_raw(img, &dir.join("out.raw")) == want,
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
        arg(&raw),
        arg(&img),
    ]);
    let out = qemu_img(&["check", "-f", "qcow2", arg(&img)]);
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
        create("qcow2", &p, &[], Some("4M"));
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
    create("qcow2", &a, &[], Some("1M"));
    create("qcow2", &b, &["-b", "a.qcow2", "-F", "qcow2"], None);
    let rebase = [
        "rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2",
    ];
    qemu_img(&[&rebase[..], &[arg(&a)]].concat());
    refused(&b, "qcow2", "loops back into its own chain");
    let orphan = dir.join("orphan.qcow2");
    create(
        "qcow2",
        &orphan,
        &["-u", "-b", "gone.qcow2", "-F", "qcow2"],
        Some("1M"),
    );
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
    create("qcow2", &img, &[], Some("6M"));
    probe_ok(
        &format!("path={},format=qcow2", img.display()),
        &format!("trim:{SEED}:6"),
    );
    check_clean(&img);
    assert!(
        read_as_raw(&img, &dir.join("t.out")) == want,
        "qcow2 contents differ"
    );
    let map = qemu_img(&["map", "-f", "qcow2", "--output=json", arg(&img)]);
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
