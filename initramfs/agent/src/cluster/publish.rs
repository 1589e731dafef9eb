//! What this node puts into the store: its `node/ID` record (agent address,
//! statistics, VM states) every few seconds, and its VM definitions under
//! `vm/NAME`, mirrored from the local ones (define, edit, rename, undefine
//! show up here within a step).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::stats::Sampler;
use super::{Cluster, NodeRecord, VmRecord};
use crate::networks::Networks;
use crate::storage::Storage;
use crate::vm_types::VmInfo;
use crate::vms::{now, Vms};

const PUBLISH_EVERY: Duration = Duration::from_secs(2);

pub struct Publisher {
    /// This node's pools and networks, published for placement.
    storage: Storage,
    networks: Networks,
    sampler: Sampler,
    last: Option<Instant>,
    /// Names already reported as defined on another node too.
    conflicts: BTreeSet<String>,
    /// The VM states last published: a change is published at once.
    published: BTreeMap<String, String>,
    /// The pools and networks last published: so is a change of those.
    places: (Vec<String>, Vec<String>),
}

impl Publisher {
    pub fn new((storage, networks): (Storage, Networks)) -> Publisher {
        Publisher {
            storage,
            networks,
            sampler: Sampler::default(),
            last: None,
            conflicts: BTreeSet::new(),
            published: BTreeMap::new(),
            places: Default::default(),
        }
    }

    /// One step: only on the quorate side (elsewhere writes are refused).
    pub fn step(&mut self, cluster: &Cluster, vms: &Vms) {
        if !Cluster::quorate(&cluster.store().status()) {
            return;
        }
        let states = vm_states(vms);
        let places = (self.usable_pools(), self.network_names());
        if self.last.is_none_or(|t| t.elapsed() >= PUBLISH_EVERY)
            || states != self.published
            || places != self.places
        {
            self.places = places;
            self.last = Some(Instant::now());
            if let Err(e) = self.publish_node(cluster, vms) {
                eprintln!("vireo-agent: publishing this node's record: {e}");
            }
        }
        if let Err(e) = self.mirror_vms(cluster, vms) {
            eprintln!("vireo-agent: mirroring VM definitions: {e}");
        }
    }

    fn publish_node(&mut self, cluster: &Cluster, vms: &Vms) -> Result<(), String> {
        let list = vms.list();
        let pids: Vec<i32> = list.iter().filter_map(|v| v.pid).collect();
        let record = NodeRecord {
            name: cluster.inner.name.clone(),
            api: cluster.inner.api.clone(),
            stats: self
                .sampler
                .sample(&cluster.inner.dir.0, list.len() as u32, &pids),
            vms: vm_states(vms),
            updated: now(),
            pools: Some(self.places.0.clone()),
            networks: Some(self.places.1.clone()),
            watchdog_error: cluster.watchdog_state().error,
        };
        self.published = record.vms.clone();
        let text = serde_json::to_string(&record).map_err(|e| e.to_string())?;
        let key = format!("node/{}", cluster.me());
        cluster
            .store()
            .put(&key, &text, Some(cluster.me()))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn network_names(&self) -> Vec<String> {
        self.networks
            .list()
            .into_iter()
            .map(|n| n.spec.name)
            .collect()
    }

    fn usable_pools(&self) -> Vec<String> {
        let pools = self.storage.pools().into_iter();
        pools
            .map(|p| self.storage.pool_info(p))
            .filter(|p| p.available)
            .map(|p| p.def.name)
            .collect()
    }

    /// Local definitions → `vm/NAME` entries owned by this node; entries
    /// this node owns that are no longer local are deleted.
    fn mirror_vms(&mut self, cluster: &Cluster, vms: &Vms) -> Result<(), String> {
        let me = cluster.me();
        let stored = cluster.vm_records().map_err(|e| e.1)?;
        let local = vms.list();
        let store = cluster.store();
        for info in &local {
            let name = &info.spec.name;
            let rec = VmRecord {
                uuid: info.uuid.clone(),
                spec: info.spec.clone(),
            };
            let text = serde_json::to_string(&rec).map_err(|e| e.to_string())?;
            let key = format!("vm/{name}");
            match stored.get(name) {
                None => {
                    let _ = store.put_if(&key, &text, Some(me), 0);
                }
                Some((owner, version, old)) if *owner == me && *old != rec => {
                    let _ = store.put_if(&key, &text, Some(me), *version);
                }
                Some((owner, _, old)) if *owner != me && old.uuid != rec.uuid => {
                    if self.conflicts.insert(name.clone()) {
                        eprintln!(
                            "vireo-agent: VM '{name}' is also defined on node {owner}; \
                             only that one is in the cluster's table"
                        );
                    }
                }
                Some(_) => {}
            }
        }
        let names: BTreeSet<&String> = local.iter().map(|v| &v.spec.name).collect();
        for (name, (owner, version, _)) in &stored {
            if *owner == me && !names.contains(name) {
                let _ = store.write(vireo_cluster::store::Op::Delete {
                    key: format!("vm/{name}"),
                    expect: Some(*version),
                });
            }
        }
        Ok(())
    }
}

fn vm_states(vms: &Vms) -> BTreeMap<String, String> {
    vms.list()
        .into_iter()
        .map(|v| (v.spec.name, v.state.as_str().to_string()))
        .collect()
}

/// VMs that another node took over while this one was away (same VM:
/// same identity, another owner: an HA takeover, or a migration whose
/// hand-over this agent missed) leave this node's definitions, stopped
/// first if a VMM still runs them, so nothing here starts them again.
pub async fn drop_moved_away(cluster: &Cluster, vms: &Vms) {
    drop_owned_elsewhere(cluster, vms, |_| true).await;
}

/// Each step: a VM whose VMM here ended by handing it over with no agent
/// following the migration (this agent was restarted meanwhile) leaves
/// this node's definitions once the store names its new owner.
pub async fn drop_migrated_away(cluster: &Cluster, vms: &Vms) {
    drop_owned_elsewhere(cluster, vms, |info| {
        info.pid.is_none()
            && info
                .last_exit
                .as_ref()
                .is_some_and(|e| e.outcome == "migrated_away")
    })
    .await;
}

async fn drop_owned_elsewhere(cluster: &Cluster, vms: &Vms, which: impl Fn(&VmInfo) -> bool) {
    let Ok(stored) = cluster.vm_records() else {
        return;
    };
    for info in vms.list() {
        let Some((owner, _, rec)) = stored.get(&info.spec.name) else {
            continue;
        };
        if *owner == cluster.me() || rec.uuid != info.uuid || !which(&info) {
            continue;
        }
        eprintln!(
            "vireo-agent: VM '{}' now runs on node {owner}; removing it here",
            info.spec.name
        );
        if let Ok(slot) = vms.get(&info.spec.name) {
            vms.stop_leftover(&slot).await;
        }
        if let Err(e) = vms.undefine(&info.spec.name, false).await {
            eprintln!("vireo-agent: removing '{}': {}", info.spec.name, e.1);
        }
    }
}
