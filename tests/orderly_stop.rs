//! What the guest wrote without a FLUSH is on disk after every orderly stop
//! of the VMM (API shutdown, SIGTERM, API reboot), as QEMU guarantees on
//! exit: the probe writes a qcow2 image (allocating writes, whose L1/L2
//! pointers qcow2 keeps in memory until a flush) and never flushes; after
//! the stop `qemu-img compare` finds the written pattern and `qemu-img
//! check` a clean image.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vireo_tests::qemu_img::{arg, check_clean, create, qemu_img};
use vireo_tests::vmm_process::Vmm;
use vireo_tests::{
    api_call, first_child, probe_disk_pattern, scratch_dir, wait_for, wait_with_deadline,
};

const MIB: usize = 4;
const SEED: u64 = 21;

/// The probe writing `image` without FLUSH, then holding.
fn start(dir: &Path, image: &Path) -> Vmm {
    let cmdline = format!("probe.blk=noflush:{SEED}:{MIB} probe.hold");
    let disk = [
        "--disk".to_string(),
        format!("path={},format=qcow2", image.display()),
    ];
    Vmm::boot(None, dir, "vm", 1, "64M", &cmdline, &disk)
}

/// Waits until the probe has written (without FLUSH) `times` times.
fn wait_written(vm: &Vmm, times: usize) {
    let line = format!("PROBE blk noflush mib={MIB} ok");
    wait_for(
        "the probe's unflushed writes",
        Duration::from_secs(120),
        || {
            let serial = vm.serial();
            assert!(!serial.contains("done fail"), "{serial}");
            serial.matches(&line).count() >= times
        },
    );
}

/// The image holds exactly the probe's pattern and is clean.
fn assert_written(dir: &Path, image: &Path) {
    let raw = dir.join("want.raw");
    let mut want = probe_disk_pattern(SEED, MIB);
    want.resize(16 << 20, 0);
    std::fs::write(&raw, &want).unwrap();
    let out = qemu_img(&["compare", "-f", "qcow2", "-F", "raw", arg(image), arg(&raw)]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Images are identical"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    check_clean(image);
}

fn fresh_image(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch_dir(name);
    let image = dir.join("disk.qcow2");
    create("qcow2", &image, &[], Some("16M"));
    (dir, image)
}

#[test]
fn unflushed_qcow2_writes_survive_an_api_shutdown() {
    let (dir, image) = fresh_image("stop-api");
    let mut vm = start(&dir, &image);
    wait_written(&vm, 1);
    assert_eq!(api_call(&vm.api, "PUT", "/vm/shutdown").0, 204);
    // The answer comes after the flush: the image is complete now.
    assert_written(&dir, &image);
    let status = wait_with_deadline(&mut vm.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unflushed_qcow2_writes_survive_sigterm() {
    let (dir, image) = fresh_image("stop-term");
    let mut vm = start(&dir, &image);
    wait_written(&vm, 1);
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(vm.child.id() as i32, libc::SIGTERM) };
    let status = wait_with_deadline(&mut vm.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert_written(&dir, &image);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A reboot builds the next VM on the same open image only after the old
/// one is gone and flushed; the second boot reads the first one's writes
/// (`noflush` reads back what it wrote) and the image stays clean.
#[test]
fn unflushed_qcow2_writes_survive_an_api_reboot() {
    let (dir, image) = fresh_image("stop-reboot");
    let mut vm = start(&dir, &image);
    wait_written(&vm, 1);
    assert_eq!(api_call(&vm.api, "PUT", "/vm/reboot").0, 204);
    wait_written(&vm, 2);
    assert_eq!(api_call(&vm.api, "PUT", "/vm/shutdown").0, 204);
    let status = wait_with_deadline(&mut vm.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert_written(&dir, &image);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The reaper (vmm/src/reaper.rs) is the binary run again as `vireo-vmm
/// --reaper-of PID`: a command line that names no VM, its own name, only
/// its socket and /dev/null open (no disk, console or API socket), and it
/// is gone once the VMM has stopped in order (the image flushed and clean).
#[test]
fn the_reaper_is_a_process_of_its_own_that_holds_nothing_of_the_vm() {
    let (dir, image) = fresh_image("stop-reaper");
    let mut vm = start(&dir, &image);
    wait_written(&vm, 1);
    let vmm = vm.child.id();
    let reaper = first_child(vmm, Duration::from_secs(10));
    let proc_file = |name: &str| std::fs::read_to_string(format!("/proc/{reaper}/{name}"));
    let argv = format!("vireo-vmm\0--reaper-of\0{vmm}\0");
    wait_for("the reaper's exec", Duration::from_secs(10), || {
        proc_file("cmdline").is_ok_and(|c| c == argv)
            && proc_file("comm").is_ok_and(|c| c.trim() == "vireo-reaper")
    });
    let mut fds: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{reaper}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            )
        })
        .collect();
    fds.sort();
    let kinds: Vec<String> = fds
        .iter()
        .map(|(fd, target)| match target.starts_with("socket:") {
            true => format!("{fd}=socket"),
            false => format!("{fd}={target}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["0=/dev/null", "1=/dev/null", "2=/dev/null", "3=socket"]
    );
    assert_eq!(api_call(&vm.api, "PUT", "/vm/shutdown").0, 204);
    let status = wait_with_deadline(&mut vm.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert_written(&dir, &image);
    // Gone, or a zombie its new parent has yet to reap (no command line).
    wait_for("the reaper's exit", Duration::from_secs(10), || {
        proc_file("cmdline").map_or(true, |c| c != argv)
    });
    std::fs::remove_dir_all(dir).unwrap();
}
