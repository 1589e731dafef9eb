//! The agent's cluster side on three nodes (issue 16), each node a network
//! namespace with its vireo-membershipd and vireo-agent, VMs = probe guests
//! through /dev/kvm whose disks live in one directory every node sees.
//!
//! Formed by `vireo cluster create` + joins, with a fourth node that is a
//! real corosync 3.1.7 (no agent) whose view must be right after each step.
//! Checked: the node table and
//! the cluster-wide VM list (API and CLI), a request for another node's VM
//! forwarded to its owner, its console WebSocket too; kill -9 of a whole node → its HA VMs run on the
//! survivors, each exactly once, only after the fencing bound; the node
//! comes back and does not run them; node 1 reset and back within the
//! bound → its HA VM runs again exactly once; partition 1|2 → the single
//! node stops its HA VMs, its watchdog expires (it stops being fed), and
//! only then do the pair start them. Throughout, a scan every 50 ms of every node's
//! processes finds at most one VMM per VM, and each VM's console log on the
//! old node stops growing before its new copy exists.
//!
//! Needs root, /dev/kvm, VIREO_VMM and VIREO_PROBE (`make test-cluster`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vireo_cluster_tests::agents::{relay, Fencing, ADMIN_TOKEN};
use vireo_cluster_tests::expect::wait_for_view;
use vireo_cluster_tests::formation::cli;
use vireo_cluster_tests::ha_lab::{last_write, Lab};
use vireo_cluster_tests::net::kill_processes_in;
use vireo_cluster_tests::wait_until;

const FENCING: Fencing = Fencing {
    watchdog_timeout_ms: 4000,
    margin_ms: 1500,
};
const FORM: Duration = Duration::from_secs(30);

#[test]
fn ha_vms_survive_a_node_kill_and_a_partition_exactly_once() {
    let mut lab = Lab::start_with_real_node(FENCING);
    let real = 3;
    let namespaces = lab.namespaces();
    let w = lab.watch();

    // The node table: three online nodes, each with its statistics.
    wait_until(FORM, "3 nodes with statistics", || {
        let nodes = lab.agent(0).ok("GET", "/cluster/nodes", None, 200)?;
        let nodes = nodes.as_array().ok_or("not a list")?.clone();
        let ready = nodes
            .iter()
            .filter(|n| n["state"] == "online" && n["stats"]["memory_total"].as_u64() > Some(0))
            .count();
        (ready == 3).then_some(()).ok_or(format!("{nodes:?}"))
    })
    .unwrap();
    let table = cli(
        &lab.c.nodes[1],
        &["cluster", "nodes", "--host", &lab.agent(1).addr.to_string()],
    )
    .unwrap();
    eprintln!("vireo cluster nodes:\n{table}");
    for name in ["node1", "node2", "node3"] {
        assert!(table.contains(name) && table.contains("online"), "{table}");
    }

    // HA VMs: two on node 3, one on node 1; a plain VM on node 2.
    for (node, vm) in [(2, "ha-a"), (2, "ha-b"), (0, "ha-c")] {
        lab.define(node, vm, true);
        lab.agent(node)
            .ok("POST", &format!("/vms/{vm}/start"), None, 200)
            .unwrap();
    }
    lab.define(1, "plain", false);
    wait_until(FORM, "every VM in the cluster's table", || {
        let vms = lab.cluster_vms(0)?;
        (vms.len() == 4).then_some(()).ok_or(format!("{vms:?}"))
    })
    .unwrap();
    // A name node 3's VM has is refused on node 1, which defines nothing;
    // an unknown VM is a plain 404 (not forwarded anywhere).
    let spec = r#"{"name": "ha-a", "boot": {"kind": "kernel", "kernel": "/nonexistent"}}"#;
    let (status, text) = lab.agent(0).call("POST", "/vms", Some(spec)).unwrap();
    assert!(status == 409 && text.contains("node 3"), "{status} {text}");
    let local = lab.agent(0).ok("GET", "/vms", None, 200).unwrap();
    assert_eq!(local.as_array().map(Vec::len), Some(1), "{local}");
    let (status, _) = lab.agent(0).call("GET", "/vms/nope", None).unwrap();
    assert_eq!(status, 404);
    // Node 1's API acts on node 2's VM: forwarded to its owner.
    lab.agent(0)
        .ok("POST", "/vms/plain/start", None, 200)
        .unwrap();
    let plain = lab.agent(0).ok("GET", "/vms/plain", None, 200).unwrap();
    assert_eq!(plain["state"], "running", "{plain}");
    lab.wait_running_on(&w, &["plain"], &[1], "plain runs on node 2");
    console_through_another_node(&lab, 0, 1, "plain");
    lab.wait_running_on(&w, &["ha-a", "ha-b"], &[2], "HA VMs on node 3");
    lab.wait_running_on(&w, &["ha-c"], &[0], "HA VM on node 1");
    let host = lab.agent(0).addr.to_string();
    let (all, _) = wait_until(FORM, "vireo vm list --all", || {
        let all = cli(&lab.c.nodes[0], &["vm", "list", "--all", "--host", &host])?;
        let expected = [
            ("ha-a", "node3"),
            ("ha-b", "node3"),
            ("ha-c", "node1"),
            ("plain", "node2"),
        ];
        let seen = expected.iter().all(|(vm, node)| {
            all.lines()
                .any(|l| l.starts_with(vm) && l.contains(node) && l.contains("running"))
        });
        seen.then_some(all.clone()).ok_or(all)
    })
    .unwrap();
    eprintln!("vireo vm list --all:\n{all}");

    // kill -9 of node 3: membershipd, agent and VMMs at once.
    let uuids = lab.vms.lock().unwrap().clone();
    let old_logs: Vec<PathBuf> = ["ha-a", "ha-b"]
        .iter()
        .map(|vm| lab.agent(2).console_log(&uuids[*vm]))
        .collect();
    lab.agent(2).watchdog.stop();
    let killed = Instant::now();
    kill_processes_in(&namespaces[2]);
    let took = lab.wait_running_on(
        &w,
        &["ha-a", "ha-b"],
        &[0, 1],
        "node 3's HA VMs on the survivors",
    );
    // The real corosync node saw node 3 go, on the survivors' ring.
    wait_for_view(&mut lab.c, &[0, 1, real], &[0, 1, real], true, FORM).unwrap();
    // The agents' bound: watchdog + token + 4 join periods (50 ms) + one
    // feeder period (250 ms) + margin (docs/cluster.md).
    let token = u64::from(lab.c.token_ms);
    let bound =
        Duration::from_millis(FENCING.watchdog_timeout_ms + token + 200 + 250 + FENCING.margin_ms);
    eprintln!(
        "failover after kill -9: {:.1} s (fencing bound {:.1} s; Proxmox documents about 120 s)",
        took.as_secs_f64(),
        bound.as_secs_f64()
    );
    for (vm, old) in ["ha-a", "ha-b"].iter().zip(&old_logs) {
        let node = w.runs_on(vm).unwrap();
        let new = w.first_on(vm, node, killed).unwrap();
        assert!(
            new >= killed + bound,
            "{vm} restarted before the fencing bound"
        );
        let last = last_write(old).unwrap();
        assert!(
            last < new,
            "{vm}'s old console still grew after its new copy started"
        );
    }
    assert!(w.runs_on("ha-c") == Some(0) && w.runs_on("plain") == Some(1));

    // Node 3 comes back: it has none of its old HA VMs any more.
    lab.agents[2] = None;
    lab.c.restart(2).unwrap();
    let all = [0, 1, 2, real];
    wait_for_view(&mut lab.c, &all, &all, true, FORM).unwrap();
    lab.start_agent(2);
    wait_until(FORM, "node 3 drops the VMs that moved", || {
        let vms = lab.agent(2).ok("GET", "/vms", None, 200)?;
        let n = vms.as_array().map_or(99, Vec::len);
        (n == 0).then_some(()).ok_or(format!("{vms}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));

    // Node 1 reset and back within the bound (kill -9 of all it runs, then
    // its daemon and agent again at once): its HA VMs were running, so they
    // run again, each exactly once, claimed back here or taken over by a
    // survivor, whichever came first in the store's order.
    let ha_on = |n: usize| -> Vec<String> {
        ["ha-a", "ha-b", "ha-c"]
            .iter()
            .filter(|vm| w.runs_on(vm) == Some(n))
            .map(|vm| vm.to_string())
            .collect()
    };
    let before = ha_on(0);
    eprintln!("before node 1's reset it runs {before:?}");
    assert!(!before.is_empty(), "node 1 runs no HA VM");
    let old_logs: Vec<PathBuf> = before
        .iter()
        .map(|vm| lab.agent(0).console_log(&uuids[vm]))
        .collect();
    lab.agent(0).watchdog.stop();
    let reset = Instant::now();
    kill_processes_in(&namespaces[0]);
    lab.agents[0] = None;
    wait_until(FORM, "node 1's daemon and VMMs gone", || {
        let vmms_gone = before.iter().all(|vm| w.runs_on(vm).is_none());
        match lab.c.nodes[0].is_running() || !vmms_gone {
            true => Err("still running".to_string()),
            false => Ok(()),
        }
    })
    .unwrap();
    lab.c.restart(0).unwrap();
    lab.start_agent(0);
    let names: Vec<&str> = before.iter().map(String::as_str).collect();
    lab.wait_running_on(&w, &names, &[0, 1, 2], "node 1's HA VMs after its reset");
    for (vm, old) in names.iter().zip(&old_logs) {
        let node = w.runs_on(vm).unwrap();
        let new = w.first_on(vm, node, reset).unwrap();
        // Back on node 1 it is the same log file: the scan alone judges.
        if node != 0 {
            assert!(
                last_write(old).unwrap() < new,
                "{vm}'s old console grew after the restart"
            );
        }
        eprintln!("after node 1's reset {vm} runs on node {}", node + 1);
    }
    // What a takeover starts is what the owner last published as running.
    wait_until(FORM, "the restarted VMs published as running", || {
        let vms = lab.cluster_vms(1)?;
        match names.iter().all(|vm| vms[*vm]["state"] == "running") {
            true => Ok(()),
            false => Err(format!("{vms:?}")),
        }
    })
    .unwrap();

    // Partition: the node with the most HA VMs alone, the pair apart. The
    // lone node stops its HA VMs, its watchdog expires, then the pair
    // starts them.
    let lone = (0..3).max_by_key(|&n| (ha_on(n).len(), 3 - n)).unwrap();
    let pair: Vec<usize> = (0..3).filter(|&n| n != lone).collect();
    let on_lone = ha_on(lone);
    let old_logs: Vec<PathBuf> = on_lone
        .iter()
        .map(|vm| lab.agent(lone).console_log(&uuids[vm]))
        .collect();
    let cut = Instant::now();
    let majority: Vec<usize> = pair.iter().copied().chain([real]).collect();
    lab.c.partition(&[&[lone], &majority]).unwrap();
    let names: Vec<&str> = on_lone.iter().map(String::as_str).collect();
    let took = lab.wait_running_on(&w, &names, &pair, "the lone node's HA VMs on the pair");
    eprintln!(
        "failover after partition: {:.1} s for {} VMs",
        took.as_secs_f64(),
        names.len()
    );
    wait_for_view(&mut lab.c, &majority, &majority, true, FORM).unwrap();
    let expired = lab
        .agent(lone)
        .watchdog
        .expired()
        .expect("the lone node's watchdog expired");
    for (vm, old) in names.iter().zip(&old_logs) {
        let node = w.runs_on(vm).unwrap();
        let new = w.first_on(vm, node, cut).unwrap();
        assert!(
            expired < new,
            "{vm} restarted before the lone node's watchdog expired"
        );
        assert!(
            last_write(old).unwrap() < new,
            "{vm}'s old console grew after the restart"
        );
    }
    assert!(
        lab.agent(lone)
            .log()
            .contains("quorum lost: stopping HA VM"),
        "{}",
        lab.logs()
    );
    let doubles = w.doubles.lock().unwrap().clone();
    assert!(doubles.is_empty(), "two copies seen: {doubles:?}");
    // The guests' own view: no copy found another one writing its disk.
    let (second, stamped) = lab.second_writers();
    assert!(second.is_empty(), "second writers: {second:?}");
    assert!(stamped >= 4, "only {stamped} consoles stamped their disk");
    eprintln!("owner stamps: {stamped} boots stamped their disks, no second writer");
}

/// Node `via`'s console WebSocket of `vm`, which node `owner` runs, as the
/// web UI opens it (`?token=`): the answer comes from the owner, the replay
/// and then live lines arrive, and they are the owner's console log's.
fn console_through_another_node(lab: &Lab, via: usize, owner: usize, vm: &str) {
    let agent = lab.agent(via);
    let at = relay(&agent.namespace, agent.addr).unwrap();
    let url = format!("ws://{at}/vms/{vm}/console?replay=2048&token={ADMIN_TOKEN}");
    let (mut ws, answer) =
        tungstenite::connect(url.as_str()).unwrap_or_else(|e| panic!("{url}: {e}"));
    let from = answer
        .headers()
        .get("x-vireo-node")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(from, Some((owner + 1).to_string()), "the answering node");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    }
    let started = Instant::now();
    let (mut messages, mut seen) = (0, String::new());
    while messages < 3 && started.elapsed() < Duration::from_secs(30) {
        match ws.read() {
            Ok(tungstenite::Message::Binary(b)) => {
                messages += 1;
                seen.push_str(&String::from_utf8_lossy(&b));
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("the console closed: {e} after {seen:?}"),
        }
    }
    assert!(messages >= 3, "{messages} messages in 30 s: {seen:?}");
    // A whole line of what arrived last is in the owner's own log.
    let line = seen.lines().rev().nth(1).unwrap_or_default().trim();
    assert!(line.starts_with("PROBE blk stress gen="), "{seen:?}");
    let uuid = lab.vms.lock().unwrap()[vm].clone();
    let log = std::fs::read_to_string(lab.agent(owner).console_log(&uuid)).unwrap();
    assert!(
        log.contains(line),
        "{line:?} not in node {}'s log",
        owner + 1
    );
    eprintln!(
        "console of {vm} (node {}) through node {}: {messages} messages in {:.1} s, last line {line:?}",
        owner + 1,
        via + 1,
        started.elapsed().as_secs_f64()
    );
    ws.close(None).unwrap();
}
