//! A three-node cluster with agents and HA probe VMs, for `tests/ha.rs` and
//! the bench's failover row: formed by `vireo cluster create` + 2 joins,
//! one agent per node (`agents`), a directory every node sees for the VMs'
//! disks, and a watch that samples every 50 ms which nodes run a VMM of
//! each VM (and records any instant with two).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::agents::{vmm_copies, Agent, Fencing};
use crate::expect::wait_for_view;
use crate::{wait_until, Cluster, ClusterSpec, Kind};

const FORM: Duration = Duration::from_secs(60);
const LONG: Duration = Duration::from_secs(60);
/// Nodes 1–3 run agents (a fourth, if any, is a real corosync node).
pub const AGENTS: usize = 3;

pub fn vmm_and_probe() -> (PathBuf, PathBuf) {
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

/// `vireo cluster create` on node 1, joins of the others through it, each
/// waited for (a real corosync node joins like the others; it comes last,
/// so no later nodelist change needs its `corosync-cfgtool -R`). How long
/// each join took, from its command until every member's view has it.
pub fn form(c: &mut Cluster) -> Vec<Duration> {
    let token = c.create_on(0).unwrap();
    c.restart(0).unwrap();
    wait_for_view(c, &[0], &[0], true, FORM).unwrap();
    let mut joins = Vec::new();
    for i in 1..c.nodes.len() {
        let start = Instant::now();
        c.join_on(i, 0, &token).unwrap();
        c.restart(i).unwrap();
        let all: Vec<usize> = (0..=i).collect();
        wait_for_view(c, &all, &all, true, FORM).unwrap();
        joins.push(start.elapsed());
    }
    joins
}

/// Which nodes run a VMM of each VM, sampled every 50 ms: the history of
/// changes and any instant with two copies.
/// Per VM, each change of the set of nodes running it, and when.
type History = Arc<Mutex<BTreeMap<String, Vec<(Instant, Vec<usize>)>>>>;

pub struct Watch {
    stop: Arc<AtomicBool>,
    log: History,
    /// Every sample that found two VMMs of one VM.
    pub doubles: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    pub fn start(namespaces: Vec<String>, vms: Arc<Mutex<BTreeMap<String, String>>>) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let log: History = Arc::default();
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
    pub fn runs_on(&self, vm: &str) -> Option<usize> {
        let l = self.log.lock().unwrap();
        match l.get(vm)?.last()?.1.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// When `vm` was first seen running on `node` after `since`.
    pub fn first_on(&self, vm: &str, node: usize, since: Instant) -> Option<Instant> {
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

/// The numbers that follow each `marker` in a console log, in order (the
/// probe's generation counters: `blk stress gen=`, `dirty gen=`).
pub fn counters(log: &str, marker: &str) -> Vec<u64> {
    log.split(marker)
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

pub fn stress_gens(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("blk stress gen=")
        .count()
}

/// When a file was last written, as an `Instant` of this process.
pub fn last_write(path: &Path) -> Option<Instant> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    let age = SystemTime::now().duration_since(m).unwrap_or_default();
    Instant::now().checked_sub(age)
}

pub struct Lab {
    pub c: Cluster,
    pub agents: Vec<Option<Agent>>,
    pub fencing: Fencing,
    /// How long each join took while forming (`form`).
    pub joins: Vec<Duration>,
    vmm: PathBuf,
    probe: PathBuf,
    shared: PathBuf,
    /// VM name → uuid, for the watch.
    pub vms: Arc<Mutex<BTreeMap<String, String>>>,
    /// Agents serve their cluster certificates (mutual TLS between nodes).
    tls: bool,
}

impl Lab {
    /// Three nodes formed by create + joins, an agent on each.
    pub fn start(fencing: Fencing) -> Lab {
        Lab::start_spec(ClusterSpec::vireo(3), fencing)
    }

    /// The same three, and a fourth node that is a real corosync 3 (no
    /// agent): it must keep seeing the right membership throughout.
    pub fn start_with_real_node(fencing: Fencing) -> Lab {
        let kinds = [Kind::Vireo, Kind::Vireo, Kind::Vireo, Kind::Corosync];
        Lab::start_spec(ClusterSpec::new(&kinds), fencing)
    }

    /// `n` Vireo nodes, an agent on each (the bench's scale rows).
    pub fn start_n(n: usize, fencing: Fencing) -> Lab {
        Lab::start_agents(ClusterSpec::vireo(n), n, fencing, false)
    }

    /// Three nodes whose agents serve TLS with their cluster certificates,
    /// as nodes do by default (the other labs' agents run `--plain-http`).
    pub fn start_tls(fencing: Fencing) -> Lab {
        Lab::start_agents(ClusterSpec::vireo(3), AGENTS, fencing, true)
    }

    fn start_spec(spec: ClusterSpec, fencing: Fencing) -> Lab {
        Lab::start_agents(spec, AGENTS, fencing, false)
    }

    fn start_agents(spec: ClusterSpec, agents: usize, fencing: Fencing, tls: bool) -> Lab {
        let (vmm, probe) = vmm_and_probe();
        let mut c = Cluster::new(spec).unwrap();
        let joins = form(&mut c);
        let shared = c.root().join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        let mut lab = Lab {
            c,
            agents: (0..agents).map(|_| None).collect(),
            fencing,
            joins,
            vmm,
            probe,
            shared,
            vms: Arc::default(),
            tls,
        };
        for i in 0..agents {
            lab.start_agent(i);
        }
        lab
    }

    pub fn namespaces(&self) -> Vec<String> {
        self.c.nodes.iter().map(|n| n.namespace.clone()).collect()
    }

    /// The watch over this lab's VMs.
    pub fn watch(&self) -> Watch {
        Watch::start(self.namespaces(), self.vms.clone())
    }

    pub fn agent(&self, i: usize) -> &Agent {
        self.agents[i].as_ref().expect("agent running")
    }

    pub fn start_agent(&mut self, i: usize) {
        let node = &self.c.nodes[i];
        let a = Agent::start_with(i, node, &self.vmm, self.fencing, self.tls).unwrap();
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

    /// `kill -9` of node `i`'s agent alone: its membershipd and VMMs go on
    /// (as after an agent crash, which init answers by starting it again:
    /// `start_agent`). Its watchdog supervisor stops watching meanwhile.
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut a) = self.agents[i].take() {
            a.watchdog.stop();
            a.reap();
            // Its Drop would end every process of the node.
            std::mem::forget(a);
        }
    }

    pub fn define(&self, i: usize, name: &str, ha: bool) -> String {
        self.define_with(i, name, ha, "probe.blk=stress:7:4")
    }

    /// `define` with another probe command line.
    pub fn define_with(&self, i: usize, name: &str, ha: bool, cmdline: &str) -> String {
        let disk = self.shared.join(format!("{name}.raw"));
        // 4 MiB of stress writes and, past them, the probe's owner stamp.
        std::fs::File::create(&disk)
            .and_then(|f| f.set_len((4 << 20) + 4096))
            .unwrap();
        let spec = json!({
            "name": name, "memory_mib": 32, "ha": ha,
            "boot": {"kind": "kernel", "kernel": self.probe, "cmdline": cmdline},
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

    /// The names of the VMs defined on node `i` (its own `/vms`).
    pub fn local_vms(&self, i: usize) -> Vec<String> {
        let list = self.agent(i).ok("GET", "/vms", None, 200).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// The cluster's VM table as node `i` answers it.
    pub fn cluster_vms(&self, i: usize) -> Result<BTreeMap<String, Value>, String> {
        let list = self.agent(i).ok("GET", "/cluster/vms", None, 200)?;
        Ok(list
            .as_array()
            .ok_or("not a list")?
            .iter()
            .map(|v| (v["name"].as_str().unwrap_or("").to_string(), v.clone()))
            .collect())
    }

    /// Defines `name` (not HA) on node `i` and starts it; once it runs there
    /// and node `seen_by`'s cluster table lists it, its uuid.
    pub fn start_seen_by(&self, w: &Watch, i: usize, name: &str, seen_by: usize) -> String {
        let uuid = self.define(i, name, false);
        let start = format!("/vms/{name}/start");
        self.agent(i).ok("POST", &start, None, 200).unwrap();
        let what = format!("{name} runs on node {}", i + 1);
        self.wait_running_on(w, &[name], &[i], &what);
        wait_until(LONG, "the VM in the other node's table", || {
            let vms = self.cluster_vms(seen_by)?;
            vms.contains_key(name)
                .then_some(())
                .ok_or(format!("{vms:?}"))
        })
        .unwrap();
        uuid
    }

    /// Waits until every VM in `vms` runs on one of `nodes` and its guest
    /// there wrote its disk (stress generations on its console).
    pub fn wait_running_on(
        &self,
        w: &Watch,
        vms: &[&str],
        nodes: &[usize],
        what: &str,
    ) -> Duration {
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

    /// Every console line, on any node (alive or not), in which a probe
    /// found another copy of its VM writing its disk (the owner stamp,
    /// docs/probe.md), and how many consoles stamped their disk at all.
    pub fn second_writers(&self) -> (Vec<String>, usize) {
        let (mut found, mut stamped) = (Vec::new(), 0);
        for node in &self.c.nodes {
            let vms = std::fs::read_dir(node.dir.join("agent/run/vms"));
            for vm in vms.into_iter().flatten().flatten() {
                let log = std::fs::read_to_string(vm.path().join("console.log"));
                let log = log.unwrap_or_default();
                stamped += usize::from(log.contains("PROBE blk owner="));
                let hits = log.lines().filter(|l| l.contains("second writer"));
                found.extend(hits.map(|l| format!("{}: {l}", node.namespace)));
            }
        }
        (found, stamped)
    }

    pub fn logs(&self) -> String {
        self.agents
            .iter()
            .flatten()
            .map(|a| format!("--- agent {}:\n{}", a.index + 1, a.log()))
            .collect()
    }
}
