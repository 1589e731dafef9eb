//! Crash safety: `kill -9` of vireo-vmm while the probe rewrites random
//! chunks of a qcow2 image in flushed generations, 20 times in a row on
//! the same image. After each kill `qemu-img check` must find no
//! corruption (leaked clusters are allowed), and every chunk of every
//! generation the guest reported as flushed must be on disk.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use vireo_tests::qemu_img::{self, read_as_raw};
use vireo_tests::stress::{expected, first_stray_sector};
use vireo_tests::{complete_lines, probe_command, scratch_dir};

const DISK_MIB: u64 = 32;
const ROUNDS: u64 = 20;

/// Boots the stress workload, waits for generation `kill_at` (plus
/// `jitter`), kills the VMM with SIGKILL; returns the last generation the
/// guest reported as flushed.
fn crash_once(img: &Path, seed: u64, kill_at: u64, jitter: Duration) -> u64 {
    let log = img.with_extension("stderr");
    let stderr = std::fs::File::create(&log).unwrap();
    let mut child = probe_command("64M", "stdio")
        .args(["--cmdline", &format!("probe.blk=stress:{seed}:{DISK_MIB}")])
        .args(["--disk", &format!("path={},format=qcow2", img.display())])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn vireo-vmm");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        // The line being printed at the kill is cut short: not parsed.
        for line in complete_lines(stdout) {
            let _ = tx.send(line);
        }
    });
    let mut last = 0;
    let mut seen = Vec::new();
    let mut note = |line: String, last: &mut u64| {
        if let Some(n) = line.strip_prefix("PROBE blk stress gen=") {
            *last = n.trim().parse().expect("generation number");
        }
        let why = || std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !line.contains("fail"),
            "probe failed: {line}\nvireo-vmm stderr: {}",
            why()
        );
        seen.push(line);
    };
    while last < kill_at {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => note(line, &mut last),
            Err(_) => {
                let _ = child.kill();
                panic!("no generation {kill_at} within 120 s; serial: {seen:?}");
            }
        }
    }
    std::thread::sleep(jitter);
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    reader.join().unwrap();
    // Lines the VMM printed before it died are still in the pipe.
    for line in rx.try_iter() {
        note(line, &mut last);
    }
    last
}

/// `qemu-img check`: exit 0 (clean) or 3 (leaked clusters only).
fn check_no_corruption(img: &Path, round: u64) {
    let out = Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(img)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(3)) && !text.contains("ERROR"),
        "round {round}: qemu-img check {code:?}:\n{text}"
    );
}

#[test]
fn kill_9_during_qcow2_writes_never_corrupts_or_loses_flushed_data() {
    // 4 KiB clusters: every 64 KiB write allocates 16 clusters, and new L2
    // tables (every 2 MiB) and refcount blocks (every 8 MiB) keep coming.
    crash_rounds(4096, ROUNDS);
}

#[test]
fn kill_9_while_the_refcount_table_grows() {
    // 512-byte clusters: a refcount block every 128 KiB of file and the
    // refcount table outgrown at 8, 16 and 32 MiB.
    crash_rounds(512, ROUNDS / 2);
}

fn crash_rounds(cluster_size: u32, rounds: u64) {
    let dir = scratch_dir(&format!("qcow2-crash-{cluster_size}"));
    let img = dir.join("crash.qcow2");
    let opts = ["-o", &format!("cluster_size={cluster_size}")];
    qemu_img::create("qcow2", &img, &opts, Some(&format!("{DISK_MIB}M")));
    let mut before = vec![0u8; (DISK_MIB << 20) as usize];
    for round in 0..rounds {
        let seed = 1000 + round;
        let jitter = Duration::from_millis(round * 37 % 60);
        let flushed = crash_once(&img, seed, 1 + round % 4, jitter);
        check_no_corruption(&img, round);
        // The generation in flight at the kill may be there in part.
        let (must, may) = expected(&before, seed, flushed);
        let now = read_as_raw(&img, &dir.join("now.raw"));
        if let Some(s) = first_stray_sector(&now, &must, &may) {
            panic!("round {round} (flushed generation {flushed}): sector {s} holds neither the flushed nor the in-flight data");
        }
        before = now;
        eprintln!("{cluster_size}-byte clusters, round {round}: killed after generation {flushed}, check clean");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
