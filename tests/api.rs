//! The control API on a running VM: info, pause/resume (the guest's serial
//! ticks stop and start again), reboot (the guest boots again), shutdown
//! (exit 0, socket gone).

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use vireo_tests::{api_call, probe_command, scratch_dir, wait_for, wait_with_deadline};

fn http(socket: &Path, method: &str, path: &str) -> (u16, String) {
    api_call(socket, method, path)
}

struct RunningVm {
    child: Child,
    socket: PathBuf,
    console: PathBuf,
    dir: PathBuf,
}

impl RunningVm {
    /// Boots the probe in tick mode: after its report it prints ticks forever.
    fn start(name: &str) -> Self {
        let dir = scratch_dir(name);
        let socket = dir.join("api.sock");
        let console = dir.join("console.log");
        let child = probe_command("128M", &format!("file:{}", console.display()))
            .args(["--cpus", "2", "--cmdline", "probe.tick"])
            .arg("--api-socket")
            .arg(&socket)
            .spawn()
            .unwrap();
        let vm = Self {
            child,
            socket,
            console,
            dir,
        };
        wait_for("the first tick", Duration::from_secs(30), || vm.ticks() > 0);
        vm
    }

    fn serial(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    fn ticks(&self) -> usize {
        self.serial().matches("PROBE tick").count()
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn get_vm_reports_config_and_state() {
    let vm = RunningVm::start("api-info");
    let (status, body) = http(&vm.socket, "GET", "/vm");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"state\":\"running\""), "{body}");
    assert!(body.contains("\"vcpus\":2"), "{body}");
    assert!(
        body.contains(&format!("\"memory_bytes\":{}", 128u64 << 20)),
        "{body}"
    );
    assert!(body.contains("\"cmdline\":\"probe.tick\""), "{body}");
    // The devices' registers, for telling what a stuck guest waits for.
    assert!(body.contains("\"devices\":{\"serial\":{\"ier\":"), "{body}");
    assert!(body.contains("\"keyboard_scanning\":true"), "{body}");
    assert_eq!(http(&vm.socket, "GET", "/nope").0, 404);
    assert_eq!(http(&vm.socket, "POST", "/vm/pause").0, 405);
}

#[test]
fn pause_stops_the_guest_and_resume_restarts_it() {
    let vm = RunningVm::start("api-pause");
    assert_eq!(http(&vm.socket, "PUT", "/vm/pause").0, 204);
    let (_, body) = http(&vm.socket, "GET", "/vm");
    assert!(body.contains("\"state\":\"paused\""), "{body}");
    // Paused: not one more byte on the console.
    let frozen = vm.serial();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(vm.serial(), frozen, "the guest kept running while paused");
    assert_eq!(http(&vm.socket, "PUT", "/vm/pause").0, 409);

    assert_eq!(http(&vm.socket, "PUT", "/vm/resume").0, 204);
    let before = vm.ticks();
    wait_for("ticks after resume", Duration::from_secs(30), || {
        vm.ticks() > before
    });
    assert_eq!(http(&vm.socket, "PUT", "/vm/resume").0, 409);
}

#[test]
fn reboot_boots_the_guest_again() {
    let vm = RunningVm::start("api-reboot");
    assert_eq!(vm.serial().matches("PROBE start").count(), 1);
    assert_eq!(http(&vm.socket, "PUT", "/vm/reboot").0, 204);
    wait_for("a second boot", Duration::from_secs(30), || {
        vm.serial().matches("PROBE start").count() == 2
    });
    let second = vm.serial();
    let after = &second[second.rfind("PROBE start").unwrap()..];
    wait_for("ticks after reboot", Duration::from_secs(30), || {
        vm.serial()[second.len() - after.len()..].contains("PROBE tick")
    });
}

#[test]
fn shutdown_ends_the_vmm_cleanly() {
    let mut vm = RunningVm::start("api-shutdown");
    assert_eq!(http(&vm.socket, "PUT", "/vm/shutdown").0, 204);
    let status = wait_with_deadline(&mut vm.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(!vm.socket.exists(), "the API socket was left behind");
}
