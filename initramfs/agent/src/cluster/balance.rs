//! Opt-in load balancing (docs/cluster.md, "Load balancing"): every
//! `--balance-every-s` seconds a quorate node compares the memory of the
//! running VMs each online node owns (from the store: `vm/NAME` records and
//! the states in `node/ID`). When another undrained node that can take one
//! of this node's running VMs would still hold no more than this node after
//! the move, the largest such VM goes there by live migration, asked of
//! this agent's own API (`POST /vms/NAME/migrate`), so the move is a task
//! like any other. One move per node at a time; since a destination never
//! ends up above its source, moves do not bounce back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Cluster;
use crate::vm_types::VmState;
use crate::vms::Vms;

/// A move not finished by then (the VM still here) no longer holds back
/// the next one: it failed, and the VM runs on here.
const MOVE_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Balancer {
    every: Option<Duration>,
    last: Instant,
    /// The VM being moved away, and since when.
    moving: Option<(String, Instant)>,
}

/// A move the balancer decided on.
#[derive(Debug, PartialEq, Eq)]
struct Move {
    vm: String,
    node: String,
}

impl Balancer {
    pub fn new(cluster: &Cluster) -> Balancer {
        let s = cluster.settings().balance_every_s;
        Balancer {
            every: (s > 0).then(|| Duration::from_secs(s)),
            last: Instant::now(),
            moving: None,
        }
    }

    pub async fn step(&mut self, cluster: &Cluster, vms: &Vms) {
        let Some(every) = self.every else { return };
        if self.last.elapsed() < every || !Cluster::quorate(&cluster.store().status()) {
            return;
        }
        self.last = Instant::now();
        if let Some((vm, since)) = &self.moving {
            if vms.get(vm).is_ok() && since.elapsed() < MOVE_TIMEOUT {
                return;
            }
            self.moving = None;
        }
        let Some(m) = pick(cluster, vms) else { return };
        eprintln!("vireo-agent: balancing: moving '{}' to '{}'", m.vm, m.node);
        let body = json!({"node": m.node}).to_string().into_bytes();
        let path = format!("/vms/{}/migrate", m.vm);
        let api = cluster.inner.api.clone();
        match super::migrate::call(cluster, "POST", &api, &path, body).await {
            Ok(_) => self.moving = Some((m.vm, Instant::now())),
            Err(e) => eprintln!("vireo-agent: balancing: moving '{}': {e}", m.vm),
        }
    }
}

/// The move that evens out this node and the least loaded one, if any.
fn pick(cluster: &Cluster, vms: &Vms) -> Option<Move> {
    let records = cluster.records().ok()?;
    let owned = cluster.vm_records().ok()?;
    let drained = cluster.drained().ok()?;
    let view = Cluster::view_nodes(&cluster.store().status());
    let mut load: BTreeMap<u32, u64> = view.iter().map(|&id| (id, 0)).collect();
    for (name, (owner, _, rec)) in &owned {
        let running = records
            .get(owner)
            .and_then(|r| r.vms.get(name))
            .is_some_and(|s| s == "running");
        if let (true, Some(l)) = (running, load.get_mut(owner)) {
            *l += rec.spec.memory_mib;
        }
    }
    let me = cluster.me();
    let mine = *load.get(&me)?;
    let mut local: Vec<_> = vms
        .list()
        .into_iter()
        .filter(|v| v.state == VmState::Running && v.pid.is_some())
        .collect();
    local.sort_by_key(|v| std::cmp::Reverse(v.spec.memory_mib));
    let mut others: Vec<(u64, u32)> = load
        .iter()
        .filter(|(id, _)| **id != me && !drained.contains(id) && records.contains_key(id))
        .map(|(id, l)| (*l, *id))
        .collect();
    others.sort();
    for (theirs, id) in others {
        let rec = &records[&id];
        for v in &local {
            let m = v.spec.memory_mib;
            let evens_out = mine.saturating_sub(m) >= theirs + m;
            if evens_out && cluster.unfit(id, rec, &v.spec, &drained).is_none() {
                return Some(Move {
                    vm: v.spec.name.clone(),
                    node: rec.name.clone(),
                });
            }
        }
    }
    None
}
