//! Opt-in load balancing (docs/cluster.md, "Load balancing"): every
//! `--balance-every-s` seconds a quorate node looks at two loads of every
//! online node: the CPU its VMMs use (cores, each node's `vms_cpu` in its
//! `node/ID` record, this node's own measured here per VM) and the memory
//! of the running VMs it owns (from the store: `vm/NAME` records and the
//! states in `node/ID`).
//!
//! - CPU first: when this node's VMs kept more than `--balance-cpu-percent`
//!   of its CPUs busy two periods in a row, its busiest VM that leaves the
//!   destination no busier (per CPU) than this node goes there.
//! - Otherwise memory: when another node would still hold no more than
//!   this node after the move, the largest such VM goes there, unless that
//!   would make the destination CPU-hot and busier than this node.
//!
//! A move is a live migration asked of this agent's own API (`POST
//! /vms/NAME/migrate`), so it is a task like any other. One move per node
//! at a time; since a destination never ends up above its source on the
//! load that moved the VM, moves do not bounce back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::stats::CpuMeter;
use super::{Cluster, NodeRecord, VmRecord};
use crate::vm_types::{VmInfo, VmState};
use crate::vms::Vms;

/// A move not finished by then (the VM still here) no longer holds back
/// the next one: it failed, and the VM runs on here.
const MOVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Periods in a row over the CPU threshold before a VM moves for CPU: one
/// busy burst is not a reason to migrate.
const HOT_PERIODS: u32 = 2;

pub struct Balancer {
    every: Option<Duration>,
    cpu_threshold: f64,
    last: Instant,
    /// The VM being moved away, and since when.
    moving: Option<(String, Instant)>,
    /// This node's VMMs' CPU time, read once a period.
    meter: CpuMeter,
    /// Periods in a row this node's VMs were over the CPU threshold.
    hot_periods: u32,
}

/// The store's VM records: name → (owner, version, record).
type OwnedVms = BTreeMap<String, (u32, u64, VmRecord)>;

/// A move the balancer decided on.
#[derive(Debug, PartialEq, Eq)]
struct Move {
    vm: String,
    node: String,
}

/// One node's loads: memory of its running VMs (MiB), cores its VMMs use,
/// and its CPU count.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Load {
    memory_mib: u64,
    cpu: f64,
    cpus: f64,
}

impl Load {
    /// Busy share of its CPUs, 0.0-1.0 (more when overcommitted).
    fn cpu_share(&self) -> f64 {
        self.cpu / self.cpus.max(1.0)
    }

    fn with(self, vm: &Candidate) -> Load {
        Load {
            memory_mib: self.memory_mib + vm.memory_mib,
            cpu: self.cpu + vm.cpu,
            ..self
        }
    }

    fn without(self, vm: &Candidate) -> Load {
        Load {
            memory_mib: self.memory_mib.saturating_sub(vm.memory_mib),
            cpu: (self.cpu - vm.cpu).max(0.0),
            ..self
        }
    }
}

/// One of this node's running VMs, as the rules see it.
#[derive(Clone, Debug, PartialEq)]
struct Candidate {
    name: String,
    memory_mib: u64,
    cpu: f64,
}

impl Balancer {
    pub fn new(cluster: &Cluster) -> Balancer {
        let settings = cluster.settings();
        let s = settings.balance_every_s;
        Balancer {
            every: (s > 0).then(|| Duration::from_secs(s)),
            cpu_threshold: f64::from(settings.balance_cpu_percent) / 100.0,
            last: Instant::now(),
            moving: None,
            meter: CpuMeter::default(),
            hot_periods: 0,
        }
    }

    pub async fn step(&mut self, cluster: &Cluster, vms: &Vms) {
        let Some(every) = self.every else { return };
        if self.last.elapsed() < every || !Cluster::quorate(&cluster.store().status()) {
            return;
        }
        self.last = Instant::now();
        let local = self.candidates(vms);
        if let Some((vm, since)) = &self.moving {
            if vms.get(vm).is_ok() && since.elapsed() < MOVE_TIMEOUT {
                return;
            }
            self.moving = None;
        }
        let Some(m) = self.pick(cluster, local) else {
            return;
        };
        eprintln!("vireo-agent: balancing: moving '{}' to '{}'", m.vm, m.node);
        let body = json!({"node": m.node}).to_string().into_bytes();
        let path = format!("/vms/{}/migrate", m.vm);
        let api = cluster.inner.api.clone();
        match super::migrate::call(cluster, "POST", &api, &path, body).await {
            Ok(_) => {
                self.moving = Some((m.vm, Instant::now()));
                self.hot_periods = 0;
            }
            Err(e) => eprintln!("vireo-agent: balancing: moving '{}': {e}", m.vm),
        }
    }

    /// This node's running VMs with the cores each used this period
    /// (read every period, so that the next has a figure).
    fn candidates(&mut self, vms: &Vms) -> Vec<Candidate> {
        let running: Vec<VmInfo> = vms
            .list()
            .into_iter()
            .filter(|v| v.state == VmState::Running && v.pid.is_some())
            .collect();
        let pids: Vec<i32> = running.iter().filter_map(|v| v.pid).collect();
        let used = self.meter.read(&pids);
        running
            .iter()
            .map(|v| Candidate {
                name: v.spec.name.clone(),
                memory_mib: v.spec.memory_mib,
                cpu: v.pid.and_then(|p| used.get(&p)).copied().unwrap_or(0.0),
            })
            .collect()
    }

    /// The move the rules choose now, if any.
    fn pick(&mut self, cluster: &Cluster, local: Vec<Candidate>) -> Option<Move> {
        let records = cluster.records().ok()?;
        let owned = cluster.vm_records().ok()?;
        let loads = node_loads(cluster, &records, &owned);
        let me = cluster.me();
        let mut mine = *loads.get(&me)?;
        // This node's own CPU figure is fresher than its published one.
        mine.cpu = local.iter().map(|c| c.cpu).sum();
        let hot = mine.cpu_share() > self.cpu_threshold;
        self.hot_periods = if hot { self.hot_periods + 1 } else { 0 };
        let drained = cluster.drained().ok()?;
        let others: Vec<(u32, Load)> = loads
            .iter()
            .filter(|(id, _)| **id != me && !drained.contains(id) && records.contains_key(id))
            .map(|(id, l)| (*id, *l))
            .collect();
        let fits = |id: u32, vm: &Candidate| {
            let (_, _, rec) = owned.get(&vm.name)?;
            let unfit = cluster.unfit(id, &records[&id], &rec.spec, &drained);
            unfit.is_none().then_some(())
        };
        let rules = Rules {
            cpu_threshold: self.cpu_threshold,
        };
        let chosen = if self.hot_periods >= HOT_PERIODS {
            rules.for_cpu(mine, &others, &local, fits)
        } else {
            None
        };
        let (vm, id) = chosen.or_else(|| rules.for_memory(mine, &others, &local, fits))?;
        Some(Move {
            vm,
            node: records[&id].name.clone(),
        })
    }
}

/// Every node of this node's view with its published loads (memory from
/// the VM records it owns, CPU from its `node/ID` statistics).
fn node_loads(
    cluster: &Cluster,
    records: &BTreeMap<u32, NodeRecord>,
    owned: &OwnedVms,
) -> BTreeMap<u32, Load> {
    let view = Cluster::view_nodes(&cluster.store().status());
    let mut loads: BTreeMap<u32, Load> = view
        .iter()
        .map(|&id| {
            let stats = records.get(&id).map(|r| &r.stats);
            let load = Load {
                memory_mib: 0,
                cpu: stats.map_or(0.0, |s| s.vms_cpu),
                cpus: stats.map_or(1.0, |s| f64::from(s.cpus.max(1))),
            };
            (id, load)
        })
        .collect();
    for (name, (owner, _, rec)) in owned {
        let running = records
            .get(owner)
            .and_then(|r| r.vms.get(name))
            .is_some_and(|s| s == "running");
        if let (true, Some(l)) = (running, loads.get_mut(owner)) {
            l.memory_mib += rec.spec.memory_mib;
        }
    }
    loads
}

/// The two rules, apart from the cluster so they can be tested alone.
struct Rules {
    cpu_threshold: f64,
}

impl Rules {
    /// The busiest VM that leaves its destination no busier per CPU than
    /// this node, to the least busy node that can take it.
    fn for_cpu(
        &self,
        mine: Load,
        others: &[(u32, Load)],
        local: &[Candidate],
        fits: impl Fn(u32, &Candidate) -> Option<()>,
    ) -> Option<(String, u32)> {
        let mut busiest: Vec<&Candidate> = local.iter().filter(|c| c.cpu > 0.0).collect();
        busiest.sort_by(|a, b| b.cpu.total_cmp(&a.cpu));
        let mut targets = others.to_vec();
        targets.sort_by(|a, b| a.1.cpu_share().total_cmp(&b.1.cpu_share()));
        first_move(&targets, &busiest, fits, |theirs, vm| {
            mine.without(vm).cpu_share() >= theirs.with(vm).cpu_share()
        })
    }

    /// The largest VM whose move leaves its destination holding no more
    /// memory than this node and not made CPU-hot and busier than this
    /// node, to the node holding the least.
    fn for_memory(
        &self,
        mine: Load,
        others: &[(u32, Load)],
        local: &[Candidate],
        fits: impl Fn(u32, &Candidate) -> Option<()>,
    ) -> Option<(String, u32)> {
        let mut largest: Vec<&Candidate> = local.iter().collect();
        largest.sort_by_key(|c| std::cmp::Reverse(c.memory_mib));
        let mut targets = others.to_vec();
        targets.sort_by_key(|(id, l)| (l.memory_mib, *id));
        first_move(&targets, &largest, fits, |theirs, vm| {
            let (after_mine, after_theirs) = (mine.without(vm), theirs.with(vm));
            let evens_out = after_mine.memory_mib >= after_theirs.memory_mib;
            let cpu_hot = after_theirs.cpu_share() > self.cpu_threshold
                && after_theirs.cpu_share() > after_mine.cpu_share();
            evens_out && !cpu_hot
        })
    }
}

/// The first VM, in `vms`' order, that `allowed` lets go to a node, in
/// `targets`' order, that can take it.
fn first_move(
    targets: &[(u32, Load)],
    vms: &[&Candidate],
    fits: impl Fn(u32, &Candidate) -> Option<()>,
    allowed: impl Fn(Load, &Candidate) -> bool,
) -> Option<(String, u32)> {
    for &(id, theirs) in targets {
        for vm in vms {
            if allowed(theirs, vm) && fits(id, vm).is_some() {
                return Some((vm.name.clone(), id));
            }
        }
    }
    None
}

#[cfg(test)]
#[path = "balance_tests.rs"]
mod tests;
