//! Ctrl-Alt-Del end to end: `PUT /vm/ctrl-alt-del` types it on the VM's
//! keyboard, the probe guest (`probe.cad`) reads it from the i8042 and
//! reboots the way a Linux guest's init does, and vireo-vmm exits 0 on the
//! guest's reset. (The rig checks the same with a Linux guest.)

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use vireo_tests::{api_call, probe_command, scratch_dir, wait_for, wait_with_deadline};

struct Probe {
    child: Child,
    socket: PathBuf,
    console: PathBuf,
    dir: PathBuf,
}

impl Probe {
    /// Boots the probe with `cmdline` and waits for the end of its report.
    fn start(name: &str, cmdline: &str) -> Self {
        let dir = scratch_dir(name);
        let socket = dir.join("api.sock");
        let console = dir.join("console.log");
        let child = probe_command("128M", &format!("file:{}", console.display()))
            .args(["--cpus", "2", "--cmdline", cmdline])
            .arg("--api-socket")
            .arg(&socket)
            .spawn()
            .unwrap();
        let probe = Self {
            child,
            socket,
            console,
            dir,
        };
        wait_for("the probe's report", Duration::from_secs(30), || {
            probe.serial().contains("PROBE done ok")
        });
        probe
    }

    fn serial(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    fn put(&self, path: &str) -> (u16, String) {
        api_call(&self.socket, "PUT", path)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The guest reads the keys, says so, resets, and the VMM exits 0.
fn expect_guest_reboots(probe: &mut Probe) {
    wait_for(
        "the probe's ctrl-alt-del line",
        Duration::from_secs(30),
        || probe.serial().contains("PROBE ctrl-alt-del"),
    );
    let status = wait_with_deadline(&mut probe.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "console:\n{}", probe.serial());
    assert!(!probe.socket.exists(), "API socket left behind");
}

#[test]
fn ctrl_alt_del_reboots_a_holding_guest() {
    let mut probe = Probe::start("cad-hold", "probe.hold probe.cad");
    let (status, body) = probe.put("/vm/ctrl-alt-del");
    assert_eq!(status, 204, "{body}");
    expect_guest_reboots(&mut probe);
}

#[test]
fn ctrl_alt_del_waits_for_a_paused_guest() {
    let mut probe = Probe::start("cad-pause", "probe.tick probe.cad");
    assert_eq!(probe.put("/vm/pause").0, 204);
    let (status, body) = probe.put("/vm/ctrl-alt-del");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("paused"), "{body}");
    assert_eq!(probe.put("/vm/resume").0, 204);
    assert_eq!(probe.put("/vm/ctrl-alt-del").0, 204);
    expect_guest_reboots(&mut probe);
}

#[test]
fn keys_nobody_reads_are_refused_not_lost() {
    // Without probe.cad nobody reads the keyboard: the first Ctrl-Alt-Del
    // waits in it, and once its buffer is full the API says so.
    let probe = Probe::start("cad-unread", "probe.hold");
    assert_eq!(probe.put("/vm/ctrl-alt-del").0, 204);
    let refused = (0..8)
        .map(|_| probe.put("/vm/ctrl-alt-del"))
        .find(|(status, _)| *status != 204);
    let (status, body) = refused.expect("the keyboard took keys forever");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("not reading its keyboard"), "{body}");
    assert!(!probe.serial().contains("PROBE ctrl-alt-del"));
}
