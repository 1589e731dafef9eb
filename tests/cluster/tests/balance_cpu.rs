//! Load balancing by CPU (issue 16): three agents with
//! `VIREO_BALANCE_EVERY_S=2` and `VIREO_BALANCE_CPU_PERCENT=30`. Node 1
//! runs two probes that spin (`probe.tick`), nodes 2 and 3 one halted
//! probe each (`probe.hold`): memory is even (no node would hold less after
//! any move), CPU is not. One busy VM moves off node 1 by live migration,
//! the other stays (sending it too would leave its destination the busier
//! node), the idle ones never move, and it stays that way.
//!
//! Its own test binary: the agents read the balancing settings from the
//! environment, which other tests must not share.
//!
//! Needs root, /dev/kvm, VIREO_VMM and VIREO_PROBE (`make test-cluster`).

use std::time::Duration;

use vireo_cluster_tests::agents::{vmm_copies, Fencing};
use vireo_cluster_tests::ha_lab::Lab;
use vireo_cluster_tests::wait_until;

const FENCING: Fencing = Fencing {
    watchdog_timeout_ms: 4000,
    margin_ms: 1500,
};

#[test]
fn a_node_kept_busy_by_two_spinning_vms_sends_one_away_and_the_idle_ones_stay() {
    // The agents inherit them (`--balance-every-s`, `--balance-cpu-percent`).
    std::env::set_var("VIREO_BALANCE_EVERY_S", "2");
    std::env::set_var("VIREO_BALANCE_CPU_PERCENT", "30");
    let lab = Lab::start(FENCING);
    let namespaces = lab.namespaces();
    let w = lab.watch();
    let placed = [("busy1", 0, "probe.tick"), ("busy2", 0, "probe.tick")];
    let idle = [("idle2", 1, "probe.hold"), ("idle3", 2, "probe.hold")];
    for (name, node, cmdline) in placed.iter().chain(&idle) {
        lab.define_with(*node, name, false, cmdline);
        lab.agent(*node)
            .ok("POST", &format!("/vms/{name}/start"), None, 200)
            .unwrap();
    }
    let where_now = || -> Result<[usize; 4], String> {
        let on = |n: &str| w.runs_on(n).ok_or(format!("{n}: not exactly one copy"));
        Ok([on("busy1")?, on("busy2")?, on("idle2")?, on("idle3")?])
    };
    let moved = || -> Result<[usize; 4], String> {
        let now = where_now()?;
        match now {
            [a, b, 1, 2] if a != b => Ok(now),
            _ => Err(format!("busy1, busy2, idle2, idle3 on nodes {now:?}")),
        }
    };
    let (nodes, took) = wait_until(Duration::from_secs(90), "the busy VMs apart", moved)
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    eprintln!("busy1, busy2, idle2, idle3 on nodes {nodes:?} after {took:?}");
    let log = lab.logs();
    assert!(log.contains("balancing: moving 'busy"), "{log}");
    assert!(!log.contains("balancing: moving 'idle"), "{log}");
    // Stable: several balancing periods later, still there, one VMM each.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(where_now(), Ok(nodes), "{}", lab.logs());
    let uuids = lab.vms.lock().unwrap().clone();
    for (i, name) in ["busy1", "busy2", "idle2", "idle3"].iter().enumerate() {
        assert_eq!(vmm_copies(&namespaces, &uuids[*name]), vec![nodes[i]]);
    }
    // The node table shows the CPU the moved VM took along.
    let table = lab.agent(0).ok("GET", "/cluster/nodes", None, 200).unwrap();
    let busy_cores: Vec<f64> = table
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["stats"]["vms_cpu"].as_f64().unwrap_or(0.0))
        .collect();
    eprintln!("cores used by each node's VMs: {busy_cores:?}");
    let busy_nodes = busy_cores.iter().filter(|c| **c > 0.2).count();
    assert_eq!(busy_nodes, 2, "two nodes with a spinning VM: {table}");
}
