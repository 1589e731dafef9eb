//! The agent's cluster side on three nodes (issue 16), each node a network
//! namespace with its vireo-membershipd and vireo-agent, VMs = probe guests
//! through /dev/kvm whose disks live in one directory every node sees.
//!
//! Formed by `vireo cluster create` + 2 joins. Checked: the node table and
//! the cluster-wide VM list (API and CLI), a request for another node's VM
//! forwarded to its owner; kill -9 of a whole node → its HA VMs run on the
//! survivors, each exactly once, only after the fencing bound; the node
//! comes back and does not run them; partition 1|2 → the single node stops
//! its HA VMs, its watchdog expires (it stops being fed), and only then do
//! the pair start them. Throughout, a scan every 50 ms of every node's
//! processes finds at most one VMM per VM, and each VM's console log on the
//! old node stops growing before its new copy exists.
//!
//! Needs root, /dev/kvm, VIREO_VMM and VIREO_PROBE (`make test-cluster`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use vireo_cluster_tests::agents::{vmm_copies, Agent, Fencing};
use vireo_cluster_tests::expect::wait_for_view;
use vireo_cluster_tests::formation::cli;
use vireo_cluster_tests::net::kill_processes_in;
use vireo_cluster_tests::{wait_until, Cluster, ClusterSpec};

const FENCING: Fencing = Fencing {
    watchdog_timeout_ms: 4000,
    margin_ms: 1500,
};
const FORM: Duration = Duration::from_secs(30);
const LONG: Duration = Duration::from_secs(60);

fn vmm_and_probe() -> (PathBuf, PathBuf) {
    let (Some(vmm), Some(probe)) = (
        std::env::var_os("VIREO_VMM"),
        std::env::var_os("VIREO_PROBE"),
    ) else {
        panic!(
            "VIREO_VMM and VIREO_PROBE must name the VMM and the probe (run `make test-cluster`)"
        );
    };
    for p in [Path::new("/dev/kvm"), Path::new(&vmm), Path::new(&probe)] {
        assert!(p.exists(), "{} is missing", p.display());
    }
    (vmm.into(), probe.into())
}

/// `vireo cluster create` on node 1, joins of nodes 2 and 3 through it.
fn form(c: &mut Cluster) {
    let token = c.create_on(0).unwrap();
    c.restart(0).unwrap();
    wait_for_view(c, &[0], &[0], true, FORM).unwrap();
    for i in 1..3 {
        c.join_on(i, 0, &token).unwrap();
        c.restart(i).unwrap();
        let all: Vec<usize> = (0..=i).collect();
        wait_for_view(c, &all, &all, true, FORM).unwrap();
    }
}

/// Which nodes run a VMM of each VM, sampled every 50 ms: the history of
/// changes and any instant with two copies.
struct Watch {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<BTreeMap<String, Vec<(Instant, Vec<usize>)>>>>,
    doubles: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    fn start(namespaces: Vec<String>, vms: Arc<Mutex<BTreeMap<String, String>>>) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let log: Arc<Mutex<BTreeMap<String, Vec<(Instant, Vec<usize>)>>>> = Arc::default();
        let doubles: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, l, d) = (stop.clone(), log.clone(), doubles.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let snapshot = vms.lock().unwrap().clone();
                for (name, uuid) in snapshot {
                    let copies = vmm_copies(&namespaces, &uuid);
                    if copies.len() > 1 {
                        d.lock().unwrap().push(format!("{name} on {copies:?}"));
                    }
                    let mut l = l.lock().unwrap();
                    let h = l.entry(name).or_default();
                    if h.last().is_none_or(|(_, last)| *last != copies) {
                        h.push((Instant::now(), copies));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Watch { stop, log, doubles }
    }

    /// The node running `vm` now, if exactly one does.
    fn runs_on(&self, vm: &str) -> Option<usize> {
        let l = self.log.lock().unwrap();
        match l.get(vm)?.last()?.1.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// When `vm` was first seen running on `node` after `since`.
    fn first_on(&self, vm: &str, node: usize, since: Instant) -> Option<Instant> {
        let l = self.log.lock().unwrap();
        l.get(vm)?
            .iter()
            .find(|(t, copies)| *t >= since && copies.contains(&node))
            .map(|(t, _)| *t)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn stress_gens(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("blk stress gen=")
        .count()
}

/// When a file was last written, as an `Instant` of this process.
fn last_write(path: &Path) -> Option<Instant> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    let age = SystemTime::now().duration_since(m).unwrap_or_default();
    Instant::now().checked_sub(age)
}

struct Lab {
    c: Cluster,
    agents: Vec<Option<Agent>>,
    vmm: PathBuf,
    probe: PathBuf,
    shared: PathBuf,
    /// VM name → uuid, for the watch.
    vms: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Lab {
    fn agent(&self, i: usize) -> &Agent {
        self.agents[i].as_ref().expect("agent running")
    }

    fn start_agent(&mut self, i: usize) {
        let a = Agent::start(i, &self.c.nodes[i], &self.vmm, FENCING).unwrap();
        let body = json!({"name": "shared", "kind": "dir", "path": self.shared}).to_string();
        wait_until(FORM, "agent answers", || {
            a.call("GET", "/health", None).map(|_| ())
        })
        .unwrap();
        let (status, text) = a.call("POST", "/pools", Some(&body)).unwrap();
        assert!(
            status == 201 || status == 409,
            "pool on node {i}: {status} {text}"
        );
        self.agents[i] = Some(a);
    }

    fn define(&self, i: usize, name: &str, ha: bool) -> String {
        let disk = self.shared.join(format!("{name}.raw"));
        std::fs::File::create(&disk)
            .and_then(|f| f.set_len(4 << 20))
            .unwrap();
        let spec = json!({
            "name": name, "memory_mib": 32, "ha": ha,
            "boot": {"kind": "kernel", "kernel": self.probe, "cmdline": "probe.blk=stress:7:4"},
            "disks": [{"volume": format!("shared/{name}.raw")}],
        });
        let info = self
            .agent(i)
            .ok("POST", "/vms", Some(&spec.to_string()), 201)
            .unwrap();
        let uuid = info["uuid"].as_str().unwrap().to_string();
        self.vms.lock().unwrap().insert(name.into(), uuid.clone());
        uuid
    }

    /// The cluster's VM table as node `i` answers it.
    fn cluster_vms(&self, i: usize) -> Result<BTreeMap<String, Value>, String> {
        let list = self.agent(i).ok("GET", "/cluster/vms", None, 200)?;
        Ok(list
            .as_array()
            .ok_or("not a list")?
            .iter()
            .map(|v| (v["name"].as_str().unwrap_or("").to_string(), v.clone()))
            .collect())
    }

    /// Waits until every VM in `vms` runs on one of `nodes` and its guest
    /// there wrote its disk (stress generations on its console).
    fn wait_running_on(&self, w: &Watch, vms: &[&str], nodes: &[usize], what: &str) -> Duration {
        wait_until(LONG, what, || {
            for vm in vms {
                let n = w.runs_on(vm).ok_or(format!("{vm}: not exactly one copy"))?;
                if !nodes.contains(&n) {
                    return Err(format!("{vm} runs on node {}", n + 1));
                }
                let uuid = self.vms.lock().unwrap()[*vm].clone();
                if stress_gens(&self.agent(n).console_log(&uuid)) < 2 {
                    return Err(format!("{vm}: no disk writes on node {} yet", n + 1));
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
        .1
    }

    fn logs(&self) -> String {
        self.agents
            .iter()
            .flatten()
            .map(|a| format!("--- agent {}:\n{}", a.index + 1, a.log()))
            .collect()
    }
}

#[test]
fn ha_vms_survive_a_node_kill_and_a_partition_exactly_once() {
    let (vmm, probe) = vmm_and_probe();
    let mut c = Cluster::new(ClusterSpec::vireo(3)).unwrap();
    form(&mut c);
    let shared = c.root().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let namespaces: Vec<String> = c.nodes.iter().map(|n| n.namespace.clone()).collect();
    let mut lab = Lab {
        c,
        agents: vec![None, None, None],
        vmm,
        probe,
        shared,
        vms: Arc::default(),
    };
    for i in 0..3 {
        lab.start_agent(i);
    }
    let w = Watch::start(namespaces.clone(), lab.vms.clone());

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
    // Node 1's API acts on node 2's VM: forwarded to its owner.
    lab.agent(0)
        .ok("POST", "/vms/plain/start", None, 200)
        .unwrap();
    let plain = lab.agent(0).ok("GET", "/vms/plain", None, 200).unwrap();
    assert_eq!(plain["state"], "running", "{plain}");
    lab.wait_running_on(&w, &["plain"], &[1], "plain runs on node 2");
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
    let bound = Duration::from_millis(FENCING.watchdog_timeout_ms + FENCING.margin_ms);
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
    wait_for_view(&mut lab.c, &[0, 1, 2], &[0, 1, 2], true, FORM).unwrap();
    lab.start_agent(2);
    wait_until(FORM, "node 3 drops the VMs that moved", || {
        let vms = lab.agent(2).ok("GET", "/vms", None, 200)?;
        let n = vms.as_array().map_or(99, Vec::len);
        (n == 0).then_some(()).ok_or(format!("{vms}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));

    // Partition 1 | 2 3: node 1 stops its HA VMs, its watchdog expires,
    // then the pair starts them.
    let on_node1: Vec<String> = ["ha-a", "ha-b", "ha-c"]
        .iter()
        .filter(|vm| w.runs_on(vm) == Some(0))
        .map(|vm| vm.to_string())
        .collect();
    let old_logs: Vec<PathBuf> = on_node1
        .iter()
        .map(|vm| lab.agent(0).console_log(&uuids[vm]))
        .collect();
    let cut = Instant::now();
    lab.c.partition(&[&[0], &[1, 2]]).unwrap();
    let names: Vec<&str> = on_node1.iter().map(String::as_str).collect();
    let took = lab.wait_running_on(&w, &names, &[1, 2], "node 1's HA VMs on the pair");
    eprintln!(
        "failover after partition: {:.1} s for {} VMs",
        took.as_secs_f64(),
        names.len()
    );
    let expired = lab
        .agent(0)
        .watchdog
        .expired()
        .expect("node 1's watchdog expired");
    for (vm, old) in names.iter().zip(&old_logs) {
        let node = w.runs_on(vm).unwrap();
        let new = w.first_on(vm, node, cut).unwrap();
        assert!(
            expired < new,
            "{vm} restarted before node 1's watchdog expired"
        );
        assert!(
            last_write(old).unwrap() < new,
            "{vm}'s old console grew after the restart"
        );
    }
    assert!(
        lab.agent(0).log().contains("quorum lost: stopping HA VM"),
        "{}",
        lab.logs()
    );
    let doubles = w.doubles.lock().unwrap().clone();
    assert!(doubles.is_empty(), "two copies seen: {doubles:?}");
}
