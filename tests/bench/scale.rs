//! The scale rows (issue 16): 3 and 16 nodes as namespaces, each with its
//! vireo-membershipd and vireo-agent (the agents' default fencing), four HA
//! probe VMs per node (32 MiB, halted once booted, as most of a node's VMs
//! are idle): 12 and 64 VMs. (Dirtying guests took ~6% of a CPU each under
//! PVM: 64 of them starved the daemons of this 2-core host.)
//! Measured: each join (`vireo cluster join` until every member's view has
//! the node), a VM's definition until every node's `/cluster/vms` lists it
//! (the owner publishes within a step, 500 ms, then the store's delivery),
//! and kill -9 of the last node until its four VMs run on survivors (each
//! exactly once; the bound grows with the token, 650 ms per node beyond 2).

use std::time::{Duration, Instant};

use vireo_cluster_tests::agents::{vmm_copies, Fencing};
use vireo_cluster_tests::ha_lab::Lab;
use vireo_cluster_tests::net::kill_processes_in;
use vireo_cluster_tests::wait_until;

use crate::Failures;

const DEFAULTS: Fencing = Fencing {
    watchdog_timeout_ms: 8000,
    margin_ms: 1000,
};
const VMS_PER_NODE: usize = 4;
const WAIT: Duration = Duration::from_secs(120);

struct Figures {
    joins: Vec<Duration>,
    converge: Vec<Duration>,
    failover: Duration,
}

fn median_max(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let s = |d: Duration| d.as_secs_f64();
    (s(v[v.len() / 2]), s(*v.last().unwrap()))
}

/// Until every node's VM table lists `name`.
fn listed_everywhere(lab: &Lab, n: usize, name: &str) -> Result<(), String> {
    for i in 0..n {
        if !lab.cluster_vms(i)?.contains_key(name) {
            return Err(format!("not yet in node {}'s table", i + 1));
        }
    }
    Ok(())
}

/// Errors are returned, not panics: the release profile aborts on a panic,
/// which would leave the nodes' processes running.
fn run(n: usize) -> Result<Figures, String> {
    let lab = Lab::start_n(n, DEFAULTS);
    let failed = |e: String| format!("{e}\n{}", lab.logs());
    let namespaces = lab.namespaces();
    let mut converge = Vec::new();
    let mut uuids = Vec::new();
    for node in 0..n {
        for k in 0..VMS_PER_NODE {
            let name = format!("s{node}x{k}");
            let defined = Instant::now();
            uuids.push((node, lab.define_with(node, &name, true, "probe.hold")));
            if k == 0 {
                wait_until(WAIT, "the VM in every node's table", || {
                    listed_everywhere(&lab, n, &name)
                })
                .map_err(failed)?;
                converge.push(defined.elapsed());
            }
            lab.agent(node)
                .ok("POST", &format!("/vms/{name}/start"), None, 200)
                .map_err(failed)?;
        }
    }
    // Every VM's state published (a VM started less than a step before
    // its node dies may be left stopped by its survivor: docs/cluster.md).
    wait_until(WAIT, "every VM running in node 1's table", || {
        let vms = lab.cluster_vms(0)?;
        let running = vms.values().filter(|v| v["state"] == "running").count();
        (running == n * VMS_PER_NODE)
            .then_some(())
            .ok_or(format!("{running} running"))
    })
    .map_err(failed)?;
    let last = n - 1;
    let victims: Vec<&String> = uuids
        .iter()
        .filter(|(node, _)| *node == last)
        .map(|(_, u)| u)
        .collect();
    lab.agent(last).watchdog.stop();
    let killed = Instant::now();
    kill_processes_in(&namespaces[last]);
    wait_until(WAIT, "the killed node's VMs on survivors", || {
        for uuid in &victims {
            let copies = vmm_copies(&namespaces, uuid);
            if copies.len() != 1 || copies[0] == last {
                return Err(format!("{uuid} runs on {copies:?}"));
            }
        }
        Ok(())
    })
    .map_err(failed)?;
    let failover = killed.elapsed();
    for (_, uuid) in &uuids {
        let copies = vmm_copies(&namespaces, uuid);
        if copies.len() != 1 {
            return Err(format!("{uuid} runs on {copies:?}"));
        }
    }
    Ok(Figures {
        joins: lab.joins.clone(),
        converge,
        failover,
    })
}

pub fn bench_scale(failures: &mut Failures) {
    println!("\n== cluster scale: agents' default fencing, {VMS_PER_NODE} HA probe VMs per node");
    for n in [3, 16] {
        let name = format!("{n} nodes, {} VMs", n * VMS_PER_NODE);
        match run(n) {
            Ok(f) => {
                let (jm, jx) = median_max(f.joins);
                let (cm, cx) = median_max(f.converge);
                println!(
                    "{name:<18} join {jm:.1} s median ({jx:.1} max); define -> in all tables \
                     {:.0} ms median ({:.0} max); kill -9 -> its {VMS_PER_NODE} VMs elsewhere {:.1} s",
                    cm * 1000.0,
                    cx * 1000.0,
                    f.failover.as_secs_f64()
                );
            }
            Err(e) => {
                eprintln!("{e}");
                let why = e.lines().next().unwrap_or("").to_string();
                println!("{name:<18} failed: {why}");
                failures.add(&name, &why);
            }
        }
    }
}
