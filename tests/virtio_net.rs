//! virtio-net end to end: in a fresh network namespace the probe guest sends
//! 10,000 numbered frames; a host echo program on an AF_PACKET socket must
//! receive every one in order and send it back; the probe checks every echo.
//! Once through a tap on a bridge with a veth pair, once through a macvtap
//! (bridge mode) on a veth. A missing interface fails cleanly.

#[path = "netlab/mod.rs"]
mod netlab;

use std::os::fd::{AsRawFd, RawFd};
use std::process::Stdio;
use std::time::Duration;

use netlab::{bridge_with_tap, open_tap, spawn_echo, Netns};
use vireo_tests::{
    api_call, probe_elf, run_vmm, scratch_dir, wait_for, wait_with_deadline, ProbeReport, RunResult,
};

const FRAMES: usize = 10_000;
const TIMEOUT: Duration = Duration::from_secs(240);
const GUEST_MAC: &str = "02:76:69:72:65:6f";

fn context(run: &RunResult) -> String {
    format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr)
}

/// Boots the probe with `--net net` in `ns` while the echo runs on `echo_if`;
/// checks both sides. `inherit`: an fd the VMM is to get (`fd=N`).
fn echo_through(ns: &Netns, echo_if: &str, net: &str, guest_mac: &str, inherit: Option<RawFd>) {
    let echo = spawn_echo(ns, echo_if, FRAMES, TIMEOUT);
    let cmdline = format!("probe.net=echo:{FRAMES}");
    let run = ns.run_probe(&cmdline, net, inherit, TIMEOUT);
    let log = echo.finish();
    let report = ProbeReport::parse(&run.stdout);
    assert_eq!(
        report.field("net", "mac").as_deref(),
        Some(guest_mac),
        "{}",
        context(&run)
    );
    assert!(
        report
            .all("net")
            .iter()
            .any(|l| l.contains(&"link=up".into())),
        "{}",
        context(&run)
    );
    assert_eq!(log.error, None, "echo side\n{}", context(&run));
    let in_order: Vec<u32> = (0..FRAMES as u32).collect();
    assert!(
        log.seqs == in_order,
        "the host saw {} frames, first out of place at {:?}",
        log.seqs.len(),
        log.seqs.iter().zip(&in_order).position(|(a, b)| a != b)
    );
    let done = format!("count={FRAMES}");
    assert!(
        report
            .all("net")
            .iter()
            .any(|l| l.len() == 3 && l[0] == "echo" && l[1] == done && l[2] == "ok"),
        "the probe did not confirm every echo\n{}",
        context(&run)
    );
    assert!(report.done_ok(), "{}", context(&run));
    assert!(run.status.success(), "{}", context(&run));
    eprintln!("{net}: {FRAMES} echoes in {:?}", run.elapsed);
}

#[test]
fn frames_echo_through_a_tap_on_a_bridge() {
    let ns = bridge_with_tap("tap");
    let net = format!("tap=vtap0,mac={GUEST_MAC},id=lan");
    echo_through(&ns, "veth1", &net, GUEST_MAC, None);
}

#[test]
fn frames_echo_through_a_tap_fd_the_parent_opened() {
    let ns = bridge_with_tap("fd");
    let tap = open_tap(&ns, "vtap0");
    let net = format!("fd={},mac={GUEST_MAC}", tap.as_raw_fd());
    echo_through(&ns, "veth1", &net, GUEST_MAC, Some(tap.as_raw_fd()));
}

#[test]
fn frames_echo_through_a_macvtap_in_bridge_mode() {
    let ns = Netns::new("mvt");
    ns.ip("link add veth0 type veth peer name veth1");
    ns.ip("link add link veth0 name mvt0 type macvtap mode bridge");
    for dev in ["veth0", "veth1", "mvt0"] {
        ns.ip(&format!("link set {dev} up"));
    }
    // A macvtap only passes up frames for its own address: the guest takes it.
    let mac = ns.mac("mvt0");
    echo_through(&ns, "veth1", &format!("macvtap=mvt0,mac={mac}"), &mac, None);
}

#[test]
fn a_missing_interface_is_a_clear_error() {
    let elf = probe_elf();
    for (spec, says) in [
        ("macvtap=vireo-none0", "macvtap 'vireo-none0'"),
        ("fd=987", "tap fd 987"),
        ("tap=a,mac=01:00:00:00:00:01", "invalid net"),
    ] {
        let run = run_vmm(
            &["--kernel", elf.to_str().unwrap(), "--net", spec],
            Duration::from_secs(30),
        );
        assert_eq!(run.status.code(), Some(1), "{spec}\n{}", context(&run));
        assert!(run.stderr.contains(says), "{spec}\n{}", context(&run));
    }
}

/// An API reboot keeps a passed tap fd (the first boot's device must not
/// close it) and the NIC's default MAC: the probe's echo passes on both
/// boots, with the same address, derived from the backend (no mac= given).
#[test]
fn reboot_keeps_a_passed_tap_fd_and_the_default_mac() {
    const COUNT: usize = 1000;
    let ns = bridge_with_tap("reboot");
    let tap = open_tap(&ns, "vtap0");
    let dir = scratch_dir("net-reboot");
    let (api, console) = (dir.join("api.sock"), dir.join("console.log"));
    let cmdline = format!("probe.net=echo:{COUNT} probe.hold");
    let net = format!("fd={}", tap.as_raw_fd());
    let echo = spawn_echo(&ns, "veth1", COUNT, TIMEOUT);
    let mut child = ns
        .probe_command(&cmdline, &net, Some(tap.as_raw_fd()))
        .arg("--api-socket")
        .arg(&api)
        .arg(format!("--serial=file:{}", console.display()))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let serial = || std::fs::read_to_string(&console).unwrap_or_default();
    let echoed = |boots: usize| {
        let s = serial();
        assert!(!s.contains("done fail"), "{s}");
        s.matches(&format!("PROBE net echo count={COUNT} ok"))
            .count()
            >= boots
    };
    wait_for("the first boot's echoes", TIMEOUT, || echoed(1));
    assert_eq!(echo.finish().error, None);
    let echo = spawn_echo(&ns, "veth1", COUNT, TIMEOUT);
    assert_eq!(api_call(&api, "PUT", "/vm/reboot").0, 204);
    wait_for("the second boot's echoes", TIMEOUT, || echoed(2));
    let log = echo.finish();
    assert_eq!(log.error, None);
    assert_eq!(log.seqs.len(), COUNT);
    assert_eq!(api_call(&api, "PUT", "/vm/shutdown").0, 204);
    assert_eq!(wait_with_deadline(&mut child, TIMEOUT).code(), Some(0));
    let report = ProbeReport::parse(&serial());
    let macs: Vec<String> = report
        .all("net")
        .iter()
        .filter_map(|l| {
            l.iter()
                .find_map(|w| w.strip_prefix("mac="))
                .map(String::from)
        })
        .collect();
    assert_eq!(macs.len(), 2, "{}", serial());
    assert_eq!(
        macs[0], macs[1],
        "the NIC changed its MAC across the reboot"
    );
    assert!(macs[0].starts_with("02:"), "{}", macs[0]);
    std::fs::remove_dir_all(dir).unwrap();
}
