//! A running VM's disk switched onto an overlay and committed back
//! (`PUT /vm/disks/{id}/overlay`, `PUT|GET /vm/disks/{id}/commit`), what a
//! backup of a running VM does: while the probe rewrites its disk in
//! flushed generations, pause → overlay → resume must stay short, the base
//! left behind must hold exactly the generations up to the pause, and
//! after the commit (the guest writing all along) the base must hold
//! every generation the guest flushed, pass `qemu-img check`, and the
//! overlay file must be gone.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use vireo_tests::qemu_img::{self, arg, check_clean};
use vireo_tests::stress::{expected, first_stray_sector, generation_of, StressVm};
use vireo_tests::{scratch_dir, wait_with_deadline};

const DISK_MIB: usize = 32;

/// One request with an optional JSON body; (status, body).
fn api(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("API socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = reply
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// The two tests run one after the other, so neither's stress guest slows
/// the other's rounds (each waits for generations with a timeout).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The probe stressing `img`, with its API socket in `dir`.
fn start(dir: &Path, img: &Path, seed: u64, extra_disk: Option<&Path>) -> StressVm {
    let ro = extra_disk.map(|p| format!("path={},readonly=on,id=ro", p.display()));
    let extra: Vec<&str> = ro.iter().flat_map(|d| ["--disk", d.as_str()]).collect();
    StressVm::start(img, &dir.join("api.sock"), seed, DISK_MIB as u64, &extra)
}

fn call(vm: &StressVm, method: &str, path: &str, body: &str) -> (u16, String) {
    api(&vm.socket, method, path, body)
}

/// pause → overlay → resume; returns how long the guest was paused.
fn overlay_paused(vm: &StressVm, overlay: &Path) -> Duration {
    let body = format!(r#"{{"path":"{}"}}"#, overlay.display());
    let t0 = Instant::now();
    assert_eq!(call(vm, "PUT", "/vm/pause", "").0, 204);
    let (status, answer) = call(vm, "PUT", "/vm/disks/disk0/overlay", &body);
    assert_eq!(call(vm, "PUT", "/vm/resume", "").0, 204);
    let paused = t0.elapsed();
    assert_eq!(status, 204, "{answer}");
    paused
}

/// The base image's bytes (the VMM holds its lock: read with -U).
fn base_bytes(img: &Path, raw: &Path) -> Vec<u8> {
    let _ = std::fs::remove_file(raw);
    qemu_img::qemu_img(&[
        "convert",
        "-U",
        "-f",
        "qcow2",
        "-O",
        "raw",
        arg(img),
        arg(raw),
    ]);
    std::fs::read(raw).unwrap()
}

fn commit(vm: &StressVm) -> serde_json::Value {
    let (status, body) = call(vm, "PUT", "/vm/disks/disk0/commit", "");
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = call(vm, "GET", "/vm/disks/disk0/commit", "");
        assert_eq!(status, 200, "{body}");
        let s: serde_json::Value = serde_json::from_str(&body).unwrap();
        match s["phase"].as_str().unwrap() {
            "committed" => return s,
            "committing" => {}
            other => panic!("commit ended {other}: {body}"),
        }
        assert!(Instant::now() < deadline, "commit did not finish: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_running_disk_goes_onto_an_overlay_and_is_committed_back_without_losing_a_write() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("disk-layers");
    let img = dir.join("disk.qcow2");
    qemu_img::create(
        "qcow2",
        &img,
        &["-o", "cluster_size=4096"],
        Some(&format!("{DISK_MIB}M")),
    );
    let seed = 4242;
    let mut vm = start(&dir, &img, seed, None);
    let mut pauses = Vec::new();
    for round in 0..3 {
        // Generations queue up while a commit runs: start from the newest
        // (the frozen base is searched a few generations from `before` on).
        vm.drain();
        let before = vm.until_gen(vm.last + 2);
        let overlay = dir.join(format!(".disk.backup-{round}.qcow2"));
        pauses.push(overlay_paused(&vm, &overlay));
        let frozen = base_bytes(&img, &dir.join("frozen.raw"));
        let at = generation_of(&frozen, seed, before);
        assert!(at.is_some(), "round {round}: the frozen base is not one moment of the guest's writes (after generation {before})");
        qemu_img::qemu_img(&["check", "-U", "-f", "qcow2", arg(&img)]);
        vm.until_gen(vm.last + 3);
        let done = commit(&vm);
        assert!(
            done["total"].as_u64().unwrap() > 0 && done["done"] == done["total"],
            "{done}"
        );
        assert!(!overlay.exists(), "the committed overlay is deleted");
        vm.until_gen(vm.last + 2);
        eprintln!(
            "round {round}: paused {:?}, base frozen at generation {}, committed {} bytes",
            pauses[round],
            at.unwrap(),
            done["total"]
        );
    }
    assert_eq!(call(&vm, "PUT", "/vm/shutdown", "").0, 204);
    assert!(wait_with_deadline(&mut vm.child, Duration::from_secs(30)).success());
    let last = vm.drain();
    check_clean(&img);
    let now = qemu_img::read_as_raw(&img, &dir.join("final.raw"));
    let (must, may) = expected(&vec![0u8; now.len()], seed, last);
    assert_eq!(
        first_stray_sector(&now, &must, &may),
        None,
        "after the commits the image must hold every flushed generation (last {last})"
    );
    let worst = pauses.iter().max().unwrap();
    eprintln!("pause → overlay → resume: {pauses:?}");
    assert!(
        *worst <= Duration::from_millis(100),
        "the guest was paused {worst:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn overlay_and_commit_requests_that_cannot_be_done_say_why_and_change_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("disk-layers-bad");
    let img = dir.join("disk.qcow2");
    let ro = dir.join("ro.raw");
    qemu_img::create("qcow2", &img, &[], Some(&format!("{DISK_MIB}M")));
    qemu_img::create("raw", &ro, &[], Some("1M"));
    let mut vm = start(&dir, &img, 7, Some(&ro));
    vm.until_gen(1);
    let taken = dir.join("taken.qcow2");
    std::fs::write(&taken, b"not yours").unwrap();
    let cases = [
        (
            "PUT",
            "/vm/disks/nope/overlay",
            r#"{"path":"/tmp/x"}"#,
            400,
            "no disk 'nope'",
        ),
        ("PUT", "/vm/disks/disk0/overlay", "", 400, "JSON body"),
        (
            "PUT",
            "/vm/disks/disk0/overlay",
            r#"{"path":1}"#,
            400,
            "bad JSON",
        ),
        (
            "PUT",
            "/vm/disks/ro/overlay",
            r#"{"path":"/tmp/y"}"#,
            409,
            "read-only",
        ),
        (
            "PUT",
            "/vm/disks/disk0/commit",
            "",
            409,
            "not on an overlay",
        ),
        ("GET", "/vm/disks/disk0/commit", "", 409, "no overlay"),
    ];
    for (method, path, body, want, says) in cases {
        let (status, answer) = call(&vm, method, path, body);
        assert_eq!(status, want, "{method} {path} {body}: {answer}");
        assert!(answer.contains(says), "{method} {path}: {answer}");
    }
    let body = format!(r#"{{"path":"{}"}}"#, taken.display());
    let (status, answer) = call(&vm, "PUT", "/vm/disks/disk0/overlay", &body);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(std::fs::read(&taken).unwrap(), b"not yours");
    let before = vm.until_gen(vm.last + 1);
    vm.until_gen(before + 2);
    // On an overlay: no migration, a second overlay refused, then committed.
    let overlay = dir.join("o.qcow2");
    overlay_paused(&vm, &overlay);
    let (status, answer) = call(&vm, "PUT", "/vm/migrate", r#"{"url":"tcp://127.0.0.1:1"}"#);
    assert_eq!(status, 409, "{answer}");
    assert!(answer.contains("overlay"), "{answer}");
    let again = format!(r#"{{"path":"{}"}}"#, dir.join("o2.qcow2").display());
    assert_eq!(call(&vm, "PUT", "/vm/disks/disk0/overlay", &again).0, 409);
    assert!(!dir.join("o2.qcow2").exists());
    commit(&vm);
    assert_eq!(call(&vm, "PUT", "/vm/shutdown", "").0, 204);
    assert!(wait_with_deadline(&mut vm.child, Duration::from_secs(30)).success());
    check_clean(&img);
    std::fs::remove_dir_all(dir).unwrap();
}
