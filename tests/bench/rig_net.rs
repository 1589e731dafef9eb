//! The network rows users judge: TCP throughput both ways and TCP request
//! rate between a Linux guest and the host it runs on, vireo-vmm against
//! QEMU microvm with its virtio-net backend in QEMU (vhost=off) and in the
//! kernel (vhost=on), all three on the same tap inside the QEMU rig, rounds
//! interleaved (tests/rig/rootfs/rig/jobs/bench-net.sh: iperf3 and sockperf).

use std::collections::HashMap;
use std::process::Command;

use crate::rig::{field, print_failed_launches};
use crate::Failures;

/// Rounds (each VMM, and each network kind, once a round);
/// `VIREO_BENCH_NET_RUNS` overrides.
const RUNS: u32 = 3;
/// Seconds per measurement inside the guest.
const SECS: u32 = 5;
const PEERS: [&str; 3] = ["vireo", "qemu", "qemu-vhost"];

/// One VMM's medians from its `RIG net-result` line.
#[derive(Clone, Copy, Debug, PartialEq)]
struct NetFigures {
    runs: u32,
    tx_mbps: f64,
    rx_mbps: f64,
    rr_per_s: f64,
}

/// The `RIG KIND ...` lines' figures, keyed by the values of `keys`:
/// `RIG net-result vmm=NAME runs=N failed=F tx_mbps=T rx_mbps=R rr_per_s=Q`
/// (keys `vmm`), `RIG layer-result layer=L path=P runs=N ...` (keys
/// `layer`, `path`, joined by a space).
fn parse(console: &str, kind: &str, keys: &[&str]) -> HashMap<String, NetFigures> {
    let mut table = HashMap::new();
    let marker = format!("RIG {kind} ");
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        let Some(rest) = line.split(marker.as_str()).nth(1) else {
            continue;
        };
        let num = |k| field(rest, k).and_then(|v| v.parse::<f64>().ok());
        let Some(key) = keys
            .iter()
            .map(|k| field(rest, k))
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let figures = NetFigures {
            runs: num("runs").unwrap_or(0.0) as u32,
            tx_mbps: num("tx_mbps").unwrap_or(f64::NAN),
            rx_mbps: num("rx_mbps").unwrap_or(f64::NAN),
            rr_per_s: num("rr_per_s").unwrap_or(f64::NAN),
        };
        table.insert(key.join(" "), figures);
    }
    table
}

/// The three figures of `ours` against `theirs`, one row each.
fn print_rows(what: &str, ours: &NetFigures, theirs: &NetFigures) {
    let rows = [
        ("TCP out", "Mb/s", ours.tx_mbps, theirs.tx_mbps),
        ("TCP in", "Mb/s", ours.rx_mbps, theirs.rx_mbps),
        ("TCP req/s", "/s", ours.rr_per_s, theirs.rr_per_s),
    ];
    for (name, unit, a, b) in rows {
        crate::print_row(&format!("{name} {what}"), unit, a, b);
    }
}

pub fn bench_net_in_rig(failures: &mut Failures) {
    let root = vireo_tests::repo_root();
    let runs = std::env::var("VIREO_BENCH_NET_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS);
    // Both jobs in one rig boot.
    let out = Command::new(root.join("tests/rig/run-rig.sh"))
        .arg("bench-net,bench-net-layers")
        .arg(format!("rig.runs={runs}"))
        .arg(format!("rig.secs={SECS}"))
        .arg(format!("rig.rounds={runs}"))
        .env(
            "RIG_INITRAMFS",
            root.join("target/build/rig/rig-initramfs-bench.cpio.gz"),
        )
        // A round is about 2 minutes of bench-net and 5 of the layers'.
        .env("RIG_QEMU_TIMEOUT", (300 + 600 * runs).to_string())
        .current_dir(&root)
        .output()
        .expect("run tests/rig/run-rig.sh");
    let console = String::from_utf8_lossy(&out.stdout);
    let vmms_done = print_vmm_rows(failures, &console, runs);
    let layers_done = print_layer_rows(failures, &console);
    if !(vmms_done && layers_done && out.status.success()) {
        failures.add(
            "Linux guest network",
            "a launch failed or the rig did not finish",
        );
        print_failed_launches(&console);
    }
}

/// vireo-vmm against QEMU microvm, vhost off and on (job bench-net).
fn print_vmm_rows(failures: &mut Failures, console: &str, runs: u32) -> bool {
    println!(
        "\n== Linux guest <-> rig host over virtio-net on a tap (iperf3 out of and into the \
         guest, sockperf TCP ping-pong), median of {runs} rounds, {SECS} s each; \
         vireo-vmm against QEMU microvm with vhost off and on"
    );
    let table = parse(console, "net-result", &["vmm"]);
    let [Some(ours), Some(plain), Some(vhost)] = PEERS.map(|p| table.get(p).copied()) else {
        failures.add("Linux guest network", "no net-result line for every VMM");
        return false;
    };
    print_rows("vs vhost=off", &ours, &plain);
    print_rows("vs vhost=on", &ours, &vhost);
    println!("goals: >= 1.0x QEMU with vhost=off (higher is better)");
    [ours, plain, vhost].iter().all(|f| f.runs >= runs)
}

/// Each kind of the agent's networks against a plain tap on a bridge, both
/// under vireo-vmm (job bench-net-layers).
fn print_layer_rows(failures: &mut Failures, console: &str) -> bool {
    println!(
        "\n== what the agent's networks cost a Linux guest (vireo-vmm), against a tap on a \
         bridge made by hand: to a host behind the uplink, and to a second guest"
    );
    let table = parse(console, "layer-result", &["layer", "path"]);
    let mut complete = true;
    for path in ["outside", "guest"] {
        let Some(base) = table.get(&format!("tap {path}")).filter(|f| f.runs > 0) else {
            failures.add(&format!("network layers, {path}"), "no tap baseline");
            complete = false;
            continue;
        };
        for layer in ["bridge", "nat", "macvtap"] {
            match table.get(&format!("{layer} {path}")).filter(|f| f.runs > 0) {
                Some(f) => print_rows(&format!("{path}, {layer} vs tap"), f, base),
                None => {
                    failures.add(&format!("network layers, {layer} {path}"), "no figures");
                    complete = false;
                }
            }
        }
    }
    println!("goal: a layer costs <= 10% (>= 0.9x the tap; noisy: two levels of emulation)");
    complete
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_read_through_console_noise() {
        let console = "x\r\nRIG net-result vmm=qemu-vhost runs=3 failed=0 tx_mbps=900 \
            rx_mbps=700 rr_per_s=12000\r\n[ 2.0] RIG net-result vmm=vireo runs=2 failed=1 \
            tx_mbps=450 rx_mbps= rr_per_s=8000\n\
            RIG layer-result layer=nat path=guest runs=1 failed=0 tx_mbps=37 rx_mbps=28 rr_per_s=179\n";
        let t = parse(console, "net-result", &["vmm"]);
        let v = t["qemu-vhost"];
        assert_eq!((v.runs, v.tx_mbps, v.rr_per_s), (3, 900.0, 12000.0));
        let ours = t["vireo"];
        assert_eq!((ours.runs, ours.tx_mbps), (2, 450.0));
        assert!(ours.rx_mbps.is_nan(), "an empty median is no figure");
        assert!(!t.contains_key("qemu"));
        assert_eq!(t.len(), 2, "layer lines are not VMM lines");
        let layers = parse(console, "layer-result", &["layer", "path"]);
        assert_eq!(layers["nat guest"].rx_mbps, 28.0);
    }
}
