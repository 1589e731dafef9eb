//! Opt-in load balancing (issue 16): three agents started with
//! `VIREO_BALANCE_EVERY_S=2`; three probe VMs started on node 1 spread out
//! to one per node by live migration (each guest's disk-writing counter
//! goes on where it lands), and stay there (no move back and forth).
//!
//! Needs root, /dev/kvm, VIREO_VMM and VIREO_PROBE (`make test-cluster`).

use std::collections::BTreeSet;
use std::time::Duration;

use vireo_cluster_tests::agents::{vmm_copies, Fencing};
use vireo_cluster_tests::ha_lab::Lab;
use vireo_cluster_tests::wait_until;

const FENCING: Fencing = Fencing {
    watchdog_timeout_ms: 4000,
    margin_ms: 1500,
};

#[test]
fn three_vms_started_on_one_node_spread_to_one_per_node_and_stay() {
    // The agents inherit it (their `--balance-every-s`).
    std::env::set_var("VIREO_BALANCE_EVERY_S", "2");
    let lab = Lab::start(FENCING);
    let namespaces = lab.namespaces();
    let w = lab.watch();
    let names = ["b1", "b2", "b3"];
    for name in names {
        lab.define(0, name, false);
        lab.agent(0)
            .ok("POST", &format!("/vms/{name}/start"), None, 200)
            .unwrap();
    }
    let spread = || -> Result<Vec<usize>, String> {
        let nodes: Vec<usize> = names
            .iter()
            .map(|n| w.runs_on(n).ok_or(format!("{n}: not exactly one copy")))
            .collect::<Result<_, _>>()?;
        match nodes.iter().collect::<BTreeSet<_>>().len() {
            3 => Ok(nodes),
            _ => Err(format!("on nodes {nodes:?}")),
        }
    };
    let (nodes, took) = wait_until(Duration::from_secs(120), "one VM per node", spread)
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    eprintln!("spread to nodes {nodes:?} in {took:?}");
    lab.wait_running_on(&w, &names, &[0, 1, 2], "every guest writes its disk");
    // Stable: several balancing periods later, still there.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(spread(), Ok(nodes.clone()), "{}", lab.logs());
    let uuids = lab.vms.lock().unwrap().clone();
    for (i, name) in names.iter().enumerate() {
        assert_eq!(vmm_copies(&namespaces, &uuids[*name]), vec![nodes[i]]);
    }
}
