//! Snapshot and restore of the probe guest through /dev/kvm: the guest goes
//! on where it was (its tick counter, its dirty-page generations, its disk
//! stress generations continue one by one, and every page it wrote is
//! still there), and bad snapshots are refused with the reason.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vireo_tests::qemu_img::{check_clean, create};
use vireo_tests::vmm_process::{api_json, Vmm};
use vireo_tests::{api_call, scratch_dir, vmm_binary, wait_with_deadline};

const WAIT: Duration = Duration::from_secs(60);

/// The probe on 2 vCPUs and 128 MiB, with `cmdline` and `extra` arguments.
fn boot(dir: &Path, cmdline: &str, extra: &[String]) -> Vmm {
    Vmm::boot(None, dir, "source", 2, "128M", cmdline, extra)
}

fn restore(dir: &Path, snap: &Path) -> Vmm {
    let args = ["--restore".to_string(), snap.display().to_string()];
    Vmm::spawn(None, dir, "restored", &args)
}

/// Pauses `vm` and snapshots it into `snap`; returns the last counter seen.
fn snapshot(vm: &Vmm, snap: &Path, prefix: &str) -> u64 {
    assert_eq!(api_call(&vm.api, "PUT", "/vm/pause").0, 204);
    let body = format!(r#"{{"dir": "{}"}}"#, snap.display());
    let (code, reply) = api_json(&vm.api, "PUT", "/vm/snapshot", &body);
    assert_eq!(code, 204, "{reply}");
    *vm.counters(prefix).last().unwrap()
}

/// The restored guest's counter goes on from `last` + 1, one by one.
fn assert_continues(restored: &Vmm, prefix: &str, last: u64) {
    restored.wait_counters(prefix, 3, WAIT);
    let after = restored.counters(prefix);
    let expected: Vec<u64> = (last + 1..last + 1 + after.len() as u64).collect();
    assert_eq!(
        after, expected,
        "the counter did not go on where it stopped"
    );
}

#[test]
fn a_ticking_guest_goes_on_after_restore() {
    let dir = scratch_dir("snap-tick");
    let snap = dir.join("snap");
    let mut source = boot(&dir, "probe.tick", &[]);
    source.wait_counters("PROBE tick ", 5, WAIT);
    let last = snapshot(&source, &snap, "PROBE tick ");
    source.kill();
    let mut restored = restore(&dir, &snap);
    assert_continues(&restored, "PROBE tick ", last);
    // The restored VM answers its API like any other.
    let (code, info) = api_call(&restored.api, "GET", "/vm");
    assert!(
        code == 200 && info.contains("\"state\":\"running\""),
        "{info}"
    );
    restored.kill();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Every page the guest dirtied holds what it last wrote after a restore:
/// the probe checks each one before rewriting it.
#[test]
fn every_dirtied_page_survives_snapshot_and_restore() {
    let dir = scratch_dir("snap-dirty");
    let snap = dir.join("snap");
    let mut source = boot(&dir, "probe.dirty=8", &[]);
    source.wait_counters("PROBE dirty gen=", 3, WAIT);
    let last = snapshot(&source, &snap, "PROBE dirty gen=");
    source.kill();
    let mut restored = restore(&dir, &snap);
    assert_continues(&restored, "PROBE dirty gen=", last);
    restored.kill();
    std::fs::remove_dir_all(dir).unwrap();
}

/// An active virtio-blk device mid-workload: the restored guest's stress
/// generations go on (its queue indices and requests carried over), and the
/// image is clean after an orderly stop.
#[test]
fn a_disk_in_use_goes_on_after_restore() {
    let dir = scratch_dir("snap-disk");
    let snap = dir.join("snap");
    let image = dir.join("disk.qcow2");
    create("qcow2", &image, &[], Some("16M"));
    let disk = [
        "--disk".to_string(),
        format!("path={},format=qcow2", image.display()),
    ];
    let mut source = boot(&dir, "probe.blk=stress:7:8", &disk);
    source.wait_counters("PROBE blk stress gen=", 3, WAIT);
    let last = snapshot(&source, &snap, "PROBE blk stress gen=");
    assert_eq!(api_call(&source.api, "PUT", "/vm/shutdown").0, 204);
    wait_with_deadline(&mut source.child, WAIT);
    let mut restored = restore(&dir, &snap);
    assert_continues(&restored, "PROBE blk stress gen=", last);
    assert_eq!(api_call(&restored.api, "PUT", "/vm/shutdown").0, 204);
    assert_eq!(
        wait_with_deadline(&mut restored.child, WAIT).code(),
        Some(0)
    );
    check_clean(&image);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Runs `vireo-vmm --restore DIR`, which must fail with exit 1 saying `says`.
fn restore_refused(snap: &Path, extra: &[&str], says: &str) {
    let out = Command::new(vmm_binary())
        .args(["--restore", snap.to_str().unwrap(), "--serial", "none"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(says), "{stderr} lacks {says:?}");
}

#[test]
fn bad_snapshots_and_requests_are_refused_with_the_reason() {
    let dir = scratch_dir("snap-bad");
    let snap = dir.join("snap");
    let mut source = boot(&dir, "probe.tick", &[]);
    source.wait_counters("PROBE tick ", 1, WAIT);
    let body = format!(r#"{{"dir": "{}"}}"#, snap.display());
    let (code, reply) = api_json(&source.api, "PUT", "/vm/snapshot", &body);
    assert_eq!(code, 409, "a running VM must be paused first: {reply}");
    assert!(!snap.exists(), "a refused snapshot left a directory");
    assert_eq!(
        api_json(&source.api, "PUT", "/vm/snapshot", "{\"dir\":").0,
        400
    );
    snapshot(&source, &snap, "PROBE tick ");
    let (code, reply) = api_json(&source.api, "PUT", "/vm/snapshot", &body);
    assert!(code == 400 && reply.contains("not empty"), "{reply}");
    source.kill();

    let state = snap.join("state.json");
    let good = std::fs::read_to_string(&state).unwrap();
    restore_refused(&snap, &["--disk", "path=/nonexistent"], "has 0 disks");
    std::fs::write(&state, good.replacen("\"version\":1", "\"version\":99", 1)).unwrap();
    restore_refused(&snap, &[], "version 99");
    std::fs::write(
        &state,
        good.replacen("\"arch\":\"x86_64\"", "\"arch\":\"aarch64\"", 1),
    )
    .unwrap();
    restore_refused(&snap, &[], "aarch64");
    std::fs::write(&state, &good[..good.len() / 2]).unwrap();
    restore_refused(&snap, &[], "is not a Vireo snapshot");
    std::fs::write(&state, &good).unwrap();
    let memory = snap.join("memory");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&memory)
        .unwrap();
    f.set_len(4096).unwrap();
    restore_refused(&snap, &[], "the VM has");
    restore_refused(&dir.join("nothing-here"), &[], "state.json");
    std::fs::remove_dir_all(dir).unwrap();
}
