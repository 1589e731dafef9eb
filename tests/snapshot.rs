//! Snapshot and restore of the probe guest through /dev/kvm: the guest goes
//! on where it was (its tick counter, its dirty-page generations, its disk
//! stress generations continue one by one, and every page it wrote is
//! still there), and bad snapshots are refused with the reason.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vireo_tests::qemu_img::{check_clean, create};
use vireo_tests::{api_call, probe_elf, scratch_dir, vmm_binary, wait_for, wait_with_deadline};

const WAIT: Duration = Duration::from_secs(60);

struct Vmm {
    child: Child,
    api: PathBuf,
    console: PathBuf,
}

impl Vmm {
    fn spawn(dir: &Path, name: &str, args: &[&str]) -> Self {
        let (api, console) = (
            dir.join(format!("{name}.sock")),
            dir.join(format!("{name}.log")),
        );
        let child = Command::new(vmm_binary())
            .args(args)
            .arg("--api-socket")
            .arg(&api)
            .arg(format!("--serial=file:{}", console.display()))
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self {
            child,
            api,
            console,
        }
    }

    fn boot(dir: &Path, cmdline: &str, extra: &[&str]) -> Self {
        let kernel = probe_elf();
        let mut args = vec!["--kernel", kernel.to_str().unwrap(), "--cpus", "2"];
        args.extend(["--memory", "128M", "--cmdline", cmdline]);
        args.extend(extra);
        Self::spawn(dir, "source", &args)
    }

    fn serial(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// The numbers after `prefix` on the console, in order.
    fn counters(&self, prefix: &str) -> Vec<u64> {
        let serial = self.serial();
        assert!(!serial.contains("fail"), "the guest failed:\n{serial}");
        serial
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect()
    }

    fn wait_counter(&self, prefix: &str, at_least: usize) {
        wait_for(prefix, WAIT, || self.counters(prefix).len() >= at_least);
    }

    /// Pauses and snapshots into `dir`; returns the last counter seen.
    fn snapshot(&self, snap: &Path, prefix: &str) -> u64 {
        assert_eq!(api_call(&self.api, "PUT", "/vm/pause").0, 204);
        let body = format!(r#"{{"dir": "{}"}}"#, snap.display());
        let (code, reply) = api_put(&self.api, "/vm/snapshot", &body);
        assert_eq!(code, 204, "{reply}");
        *self.counters(prefix).last().unwrap()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `PUT path` with a JSON body.
fn api_put(socket: &Path, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let code = reply.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, reply)
}

/// The restored guest's counter goes on from `last` + 1, one by one.
fn assert_continues(restored: &Vmm, prefix: &str, last: u64) {
    restored.wait_counter(prefix, 3);
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
    let source = Vmm::boot(&dir, "probe.tick", &[]);
    source.wait_counter("PROBE tick ", 5);
    let last = source.snapshot(&snap, "PROBE tick ");
    source.stop();
    let restored = Vmm::spawn(&dir, "restored", &["--restore", snap.to_str().unwrap()]);
    assert_continues(&restored, "PROBE tick ", last);
    // The restored VM answers its API like any other.
    let (code, info) = api_call(&restored.api, "GET", "/vm");
    assert!(
        code == 200 && info.contains("\"state\":\"running\""),
        "{info}"
    );
    restored.stop();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Every page the guest dirtied holds what it last wrote after a restore:
/// the probe checks each one before rewriting it.
#[test]
fn every_dirtied_page_survives_snapshot_and_restore() {
    let dir = scratch_dir("snap-dirty");
    let snap = dir.join("snap");
    let source = Vmm::boot(&dir, "probe.dirty=8", &[]);
    source.wait_counter("PROBE dirty gen=", 3);
    let last = source.snapshot(&snap, "PROBE dirty gen=");
    source.stop();
    let restored = Vmm::spawn(&dir, "restored", &["--restore", snap.to_str().unwrap()]);
    assert_continues(&restored, "PROBE dirty gen=", last);
    restored.stop();
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
    let disk = format!("path={},format=qcow2", image.display());
    let source = Vmm::boot(&dir, "probe.blk=stress:7:8", &["--disk", &disk]);
    source.wait_counter("PROBE blk stress gen=", 3);
    let last = source.snapshot(&snap, "PROBE blk stress gen=");
    assert_eq!(api_call(&source.api, "PUT", "/vm/shutdown").0, 204);
    let mut source = source;
    wait_with_deadline(&mut source.child, WAIT);
    let mut restored = Vmm::spawn(&dir, "restored", &["--restore", snap.to_str().unwrap()]);
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
    let source = Vmm::boot(&dir, "probe.tick", &[]);
    source.wait_counter("PROBE tick ", 1);
    let body = format!(r#"{{"dir": "{}"}}"#, snap.display());
    let (code, reply) = api_put(&source.api, "/vm/snapshot", &body);
    assert_eq!(code, 409, "a running VM must be paused first: {reply}");
    assert!(!snap.exists(), "a refused snapshot left a directory");
    assert_eq!(api_put(&source.api, "/vm/snapshot", "{\"dir\":").0, 400);
    source.snapshot(&snap, "PROBE tick ");
    let (code, reply) = api_put(&source.api, "/vm/snapshot", &body);
    assert!(code == 400 && reply.contains("not empty"), "{reply}");
    source.stop();

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
