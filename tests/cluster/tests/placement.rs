//! Where VMs may go in a three-node cluster with agents (issue 16), and
//! migrations that do not end well:
//!
//! - a pool defined with `cluster: true` on node 1 shows up on nodes 2 and
//!   3; removed on node 2, it goes from every node; so does a network
//!   (each node makes its bridge);
//! - `vireo node drain node3`: every node's table says drained, node 3
//!   refuses new VMs (define) and a migration to it; `vireo node undrain`
//!   and it takes them again;
//! - node 3's watchdog cannot be armed: an HA VM's start there is refused
//!   with that reason and no VMM runs;
//! - a VM whose disk is in pool `solo` (nodes 1 and 2) and whose NIC is on
//!   network `lan` (nodes 1 and 2): a migration to node 3 fails, first for
//!   the pool, then, pool added, for the network, node 3 keeping nothing;
//! - a migration to node 2 capped at 1 Mbit/s shows progress and is
//!   cancelled by `vireo vm migrate NAME --cancel`: the guest (the probe
//!   dirtying memory and checking every page it wrote) goes on at node 1,
//!   node 2 has neither VMM, definition nor port on its `lan` bridge;
//! - the migration without cap: node 2 runs it, its port is on node 2's
//!   bridge, the guest's generations go on;
//! - a migration to node 3 whose source (node 2) is killed midway: node 3
//!   keeps neither VMM nor definition.
//!
//! Needs root, /dev/kvm, VIREO_VMM and VIREO_PROBE (`make test-cluster`).

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use vireo_cluster_tests::agents::{vmm_copies, Fencing};
use vireo_cluster_tests::formation::cli;
use vireo_cluster_tests::ha_lab::Lab;
use vireo_cluster_tests::net::kill_processes_in;
use vireo_cluster_tests::wait_until;

const FENCING: Fencing = Fencing {
    watchdog_timeout_ms: 4000,
    margin_ms: 1500,
};
const WAIT: Duration = Duration::from_secs(60);

/// The generations `PROBE dirty gen=N ok` a console log shows.
fn dirty_gens(log: &str) -> Vec<u64> {
    vireo_cluster_tests::ha_lab::counters(log, "dirty gen=")
}

/// The ports on node `i`'s bridge of network `net`.
fn bridge_ports(lab: &Lab, i: usize, net: &str) -> Vec<String> {
    let ns = &lab.c.nodes[i].namespace;
    let out = Command::new("ip")
        .args([
            "-n",
            ns,
            "-o",
            "link",
            "show",
            "master",
            &format!("vr-{net}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .collect()
}

fn refused(lab: &Lab, i: usize, method: &str, path: &str, body: &str, want: &[&str]) {
    let (status, text) = lab.agent(i).call(method, path, Some(body)).unwrap();
    assert!(
        status == 409 && want.iter().all(|w| text.contains(w)),
        "{method} {path} on node {}: {status} {text}",
        i + 1
    );
}

/// Starts migrating `vm` from node `from` to `node`; the task's id.
fn start_migration(lab: &Lab, from: usize, vm: &str, body: Value) -> String {
    let task = lab
        .agent(from)
        .ok(
            "POST",
            &format!("/vms/{vm}/migrate"),
            Some(&body.to_string()),
            202,
        )
        .unwrap();
    task["id"].as_str().unwrap().to_string()
}

/// Waits until task `id` on node `i` ends; the task.
fn finished(lab: &Lab, i: usize, id: &str) -> Value {
    wait_until(WAIT, "the task to end", || {
        let t = lab.agent(i).ok("GET", &format!("/tasks/{id}"), None, 200)?;
        (t["state"] != "running")
            .then_some(t.clone())
            .ok_or(format!("{t}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()))
    .0
}

/// Waits until task `id` on node `i` has sent some bytes and still runs.
fn wait_progress(lab: &Lab, i: usize, id: &str) -> Value {
    wait_until(WAIT, "the migration to show progress", || {
        let t = lab.agent(i).ok("GET", &format!("/tasks/{id}"), None, 200)?;
        let moving = t["state"] == "running" && t["done"].as_u64().unwrap_or(0) > 0;
        moving.then_some(t.clone()).ok_or(format!("{t}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()))
    .0
}

fn pools_of(lab: &Lab, i: usize) -> Vec<String> {
    let list = lab.agent(i).ok("GET", "/pools", None, 200).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn cluster_pools(lab: &Lab) {
    let dir = lab.c.root().join("cpool");
    std::fs::create_dir_all(&dir).unwrap();
    let pool = json!({"name": "cpool", "kind": "dir", "path": dir, "cluster": true});
    lab.agent(0)
        .ok("POST", "/pools", Some(&pool.to_string()), 201)
        .unwrap();
    wait_until(WAIT, "the cluster pool on every node", || {
        let have: Vec<bool> = (0..3)
            .map(|i| pools_of(lab, i).contains(&"cpool".to_string()))
            .collect();
        have.iter()
            .all(|h| *h)
            .then_some(())
            .ok_or(format!("{have:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let on2 = lab.agent(1).ok("GET", "/pools/cpool", None, 200).unwrap();
    assert_eq!(on2["cluster"], true, "{on2}");
    assert_eq!(on2["path"], json!(dir), "{on2}");
    let (status, text) = lab.agent(1).call("DELETE", "/pools/cpool", None).unwrap();
    assert!((200..300).contains(&status), "{status} {text}");
    wait_until(WAIT, "the cluster pool gone from every node", || {
        let have: Vec<bool> = (0..3)
            .map(|i| pools_of(lab, i).contains(&"cpool".to_string()))
            .collect();
        have.iter()
            .all(|h| !*h)
            .then_some(())
            .ok_or(format!("{have:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
}

fn networks_of(lab: &Lab, i: usize) -> Vec<String> {
    let list = lab.agent(i).ok("GET", "/networks", None, 200).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|n| n["spec"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A network defined with `cluster: true` on node 1: every node makes its
/// bridge; deleted on node 3, it goes from every node.
fn cluster_networks(lab: &Lab) {
    let net = json!({"name": "everywhere", "kind": "isolated", "cluster": true});
    lab.agent(0)
        .ok("POST", "/networks", Some(&net.to_string()), 201)
        .unwrap();
    let bridge = |i: usize| {
        let ns = &lab.c.nodes[i].namespace;
        let out = Command::new("ip")
            .args(["-n", ns, "link", "show", "vr-everywhere"])
            .output()
            .unwrap();
        out.status.success()
    };
    // Until every node has it (name and bridge) or none does.
    let everywhere = |want: bool, what: &str| {
        wait_until(WAIT, what, || {
            let have: Vec<(bool, bool)> = (0..3)
                .map(|i| {
                    (
                        networks_of(lab, i).contains(&"everywhere".into()),
                        bridge(i),
                    )
                })
                .collect();
            have.iter()
                .all(|h| h.0 == want && h.1 == want)
                .then_some(())
                .ok_or(format!("{have:?}"))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    };
    everywhere(true, "the cluster network on every node");
    let (status, text) = lab
        .agent(2)
        .call("DELETE", "/networks/everywhere", None)
        .unwrap();
    assert!((200..300).contains(&status), "{status} {text}");
    everywhere(false, "the cluster network gone from every node");
}

fn drain_and_undrain(lab: &Lab, probe: &str) {
    let host = lab.agent(0).addr.to_string();
    let out = cli(
        &lab.c.nodes[0],
        &["node", "drain", "node3", "--host", &host],
    )
    .unwrap();
    assert!(out.contains("node3 runs no VM now"), "{out}");
    for i in 0..3 {
        wait_until(WAIT, "node 3 drained in every table", || {
            let nodes = lab.agent(i).ok("GET", "/cluster/nodes", None, 200)?;
            let node3 = nodes
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] == "node3");
            (node3.map(|n| n["drained"].clone()) == Some(json!(true)))
                .then_some(())
                .ok_or(format!("{nodes}"))
        })
        .unwrap();
    }
    let table = cli(&lab.c.nodes[1], &["cluster", "nodes", "--host", &host]).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.contains("node3") && l.contains("drained")),
        "{table}"
    );
    let spec = json!({"name": "newcomer", "memory_mib": 32,
                      "boot": {"kind": "kernel", "kernel": probe}})
    .to_string();
    refused(lab, 2, "POST", "/vms", &spec, &["drained", "node3"]);
    assert!(lab.local_vms(2).is_empty());
    let out = cli(
        &lab.c.nodes[2],
        &["node", "undrain", "node3", "--host", &host],
    )
    .unwrap();
    assert!(out.contains("takes new VMs again"), "{out}");
    lab.agent(2).ok("POST", "/vms", Some(&spec), 201).unwrap();
    let (status, text) = lab.agent(2).call("DELETE", "/vms/newcomer", None).unwrap();
    assert!((200..300).contains(&status), "{status} {text}");
}

/// Node 3's watchdog file replaced by a directory: arming it fails.
fn ha_needs_a_watchdog(lab: &Lab, probe: &str) {
    let wd = lab.agent(2).dir.join("watchdog");
    let _ = std::fs::remove_file(&wd);
    std::fs::create_dir_all(&wd).unwrap();
    let spec = json!({"name": "guarded", "memory_mib": 32, "ha": true,
                      "boot": {"kind": "kernel", "kernel": probe}});
    let info = lab
        .agent(2)
        .ok("POST", "/vms", Some(&spec.to_string()), 201)
        .unwrap();
    let uuid = info["uuid"].as_str().unwrap().to_string();
    refused(
        lab,
        2,
        "POST",
        "/vms/guarded/start",
        "",
        &["watchdog", "cannot be armed", "unfenced"],
    );
    assert!(vmm_copies(&lab.namespaces(), &uuid).is_empty());
    let shown = lab.agent(2).ok("GET", "/vms/guarded", None, 200).unwrap();
    assert_eq!(shown["state"], "stopped", "{shown}");
    let (status, text) = lab.agent(2).call("DELETE", "/vms/guarded", None).unwrap();
    assert!((200..300).contains(&status), "{status} {text}");
    std::fs::remove_dir(&wd).unwrap();
}

#[test]
fn pools_drains_watchdogs_and_migrations_that_do_not_end_well() {
    let lab = Lab::start(FENCING);
    let namespaces = lab.namespaces();
    let probe = std::env::var("VIREO_PROBE").unwrap();
    cluster_pools(&lab);
    cluster_networks(&lab);
    drain_and_undrain(&lab, &probe);
    ha_needs_a_watchdog(&lab, &probe);

    // Pool "solo" and network "lan" on nodes 1 and 2 only.
    let solo = lab.c.root().join("solo");
    std::fs::create_dir_all(&solo).unwrap();
    std::fs::File::create(solo.join("slow.raw"))
        .and_then(|f| f.set_len(1 << 20))
        .unwrap();
    let pool = json!({"name": "solo", "kind": "dir", "path": solo}).to_string();
    let lan = json!({"name": "lan", "kind": "isolated"}).to_string();
    for i in 0..2 {
        lab.agent(i).ok("POST", "/pools", Some(&pool), 201).unwrap();
        lab.agent(i)
            .ok("POST", "/networks", Some(&lan), 201)
            .unwrap();
    }
    let spec = json!({
        "name": "slow", "memory_mib": 64,
        "boot": {"kind": "kernel", "kernel": probe, "cmdline": "probe.dirty=16:16"},
        "disks": [{"volume": "solo/slow.raw"}],
        "nics": [{"network": "lan"}],
    });
    let info = lab
        .agent(0)
        .ok("POST", "/vms", Some(&spec.to_string()), 201)
        .unwrap();
    let uuid = info["uuid"].as_str().unwrap().to_string();
    lab.agent(0)
        .ok("POST", "/vms/slow/start", None, 200)
        .unwrap();
    let log1 = lab.agent(0).console_log(&uuid);
    wait_until(WAIT, "the guest dirties memory on node 1", || {
        let n = dirty_gens(&std::fs::read_to_string(&log1).unwrap_or_default()).len();
        (n >= 1).then_some(()).ok_or(format!("{n} generations"))
    })
    .unwrap();
    // Node 3 has neither the pool nor the network: it refuses the VM (the
    // task fails with its reason), and keeps nothing of it.
    let refused_by_node3 = |want: &str| {
        let id = start_migration(&lab, 0, "slow", json!({"node": "node3"}));
        let done = finished(&lab, 0, &id);
        let error = done["error"].as_str().unwrap_or_default();
        assert!(
            done["state"] == "failed" && error.contains("node3") && error.contains(want),
            "{done}"
        );
        assert!(lab.local_vms(2).is_empty());
    };
    refused_by_node3("'solo'");
    lab.agent(2).ok("POST", "/pools", Some(&pool), 201).unwrap();
    refused_by_node3("'lan'");
    assert!(lab.local_vms(2).is_empty());

    // Capped at 1 Mbit/s, the 16 MiB take minutes: cancelled midway.
    let id = start_migration(
        &lab,
        0,
        "slow",
        json!({"node": "node2", "bandwidth_mbps": 1}),
    );
    let moving = wait_progress(&lab, 0, &id);
    eprintln!("under way: {moving}");
    let host = lab.agent(2).addr.to_string();
    let out = cli(
        &lab.c.nodes[2],
        &["vm", "migrate", "slow", "--cancel", "--host", &host],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    assert!(out.contains("cancelled"), "{out}");
    let task = lab
        .agent(0)
        .ok("GET", &format!("/tasks/{id}"), None, 200)
        .unwrap();
    assert_ne!(task["state"], "done", "{task}");
    wait_until(WAIT, "nothing of slow left on node 2", || {
        let left = (
            vmm_copies(&namespaces, &uuid),
            lab.local_vms(1),
            bridge_ports(&lab, 1, "lan"),
        );
        (left.0 == vec![0] && left.1.is_empty() && left.2.is_empty())
            .then_some(())
            .ok_or(format!("{left:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let seen = dirty_gens(&std::fs::read_to_string(&log1).unwrap()).len();
    wait_until(WAIT, "the guest to go on at node 1", || {
        let now = dirty_gens(&std::fs::read_to_string(&log1).unwrap_or_default()).len();
        (now > seen)
            .then_some(())
            .ok_or(format!("{now} generations"))
    })
    .unwrap();
    let out = cli(
        &lab.c.nodes[2],
        &["vm", "migrate", "slow", "--cancel", "--host", &host],
    );
    assert!(out.is_err_and(|e| e.contains("not being migrated")));

    // Uncapped: node 2 runs it, its NIC on node 2's bridge.
    let before = *dirty_gens(&std::fs::read_to_string(&log1).unwrap())
        .last()
        .unwrap();
    let out = cli(
        &lab.c.nodes[2],
        &["vm", "migrate", "slow", "node2", "--json", "--host", &host],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    eprintln!("migration: {out}");
    let log2 = lab.agent(1).console_log(&uuid);
    wait_until(WAIT, "the guest to go on at node 2", || {
        let there = dirty_gens(&std::fs::read_to_string(&log2).unwrap_or_default());
        there
            .last()
            .is_some_and(|&g| g > before + 1)
            .then_some(())
            .ok_or(format!("{there:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let there = std::fs::read_to_string(&log2).unwrap();
    assert!(!there.contains("FAIL"), "{there}");
    assert_eq!(vmm_copies(&namespaces, &uuid), vec![1]);
    assert_eq!(bridge_ports(&lab, 1, "lan").len(), 1);
    assert!(bridge_ports(&lab, 0, "lan").is_empty());

    // Its source dies midway: node 3 keeps nothing of it.
    lab.agent(2)
        .ok("POST", "/networks", Some(&lan), 201)
        .unwrap();
    let id = wait_until(WAIT, "node 3 publishes its network", || {
        let body = json!({"node": "node3", "bandwidth_mbps": 1}).to_string();
        let (status, text) = lab
            .agent(1)
            .call("POST", "/vms/slow/migrate", Some(&body))?;
        let task: Value = serde_json::from_str(&text).unwrap_or_default();
        match (status, task["id"].as_str()) {
            (202, Some(id)) => Ok(id.to_string()),
            _ => Err(format!("{status} {text}")),
        }
    })
    .unwrap()
    .0;
    wait_progress(&lab, 1, &id);
    assert_eq!(lab.local_vms(2), vec!["slow".to_string()]);
    kill_processes_in(&namespaces[1]);
    wait_until(WAIT, "nothing of slow left on node 3", || {
        let left = (
            vmm_copies(&namespaces, &uuid),
            lab.local_vms(2),
            bridge_ports(&lab, 2, "lan"),
        );
        (left.0.is_empty() && left.1.is_empty() && left.2.is_empty())
            .then_some(())
            .ok_or(format!("{left:?}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
}
