//! Pools defined on every node (docs/cluster.md, "Shared definitions"): a
//! pool defined with `cluster: true` on one node is written to the store
//! as `pool/NAME`, and every node defines it too (a directory all nodes
//! see, an NFS export each node mounts); removed on one node, it goes from
//! the store and from every node. What changed is told apart by what each
//! side held at the previous step: a name the store had and lost was
//! removed elsewhere, a name this node had and lost was removed here.

use std::collections::{BTreeMap, BTreeSet};

use vireo_cluster::store::Op;

use super::Cluster;
use crate::storage::Storage;
use crate::storage_api::PoolDef;

const PREFIX: &str = "pool/";

#[derive(Default)]
pub struct PoolSync {
    stored_before: BTreeSet<String>,
    local_before: BTreeSet<String>,
    /// The last failure per pool, said once.
    failing: BTreeMap<String, String>,
}

impl PoolSync {
    /// One step, on the quorate side.
    pub fn step(&mut self, cluster: &Cluster, storage: &Storage) {
        let Ok(entries) = cluster.store().list(PREFIX) else {
            return;
        };
        let stored: BTreeMap<String, (u64, PoolDef)> = entries
            .into_iter()
            .filter_map(|(k, e)| {
                let def: PoolDef = serde_json::from_str(&e.value).ok()?;
                Some((k.strip_prefix(PREFIX)?.to_string(), (e.version, def)))
            })
            .collect();
        let local: BTreeMap<String, PoolDef> = storage
            .pools()
            .into_iter()
            .filter(|p| p.cluster)
            .map(|p| (p.name.clone(), p))
            .collect();
        for (name, def) in &local {
            if stored.contains_key(name) {
                continue;
            }
            let done = match self.stored_before.contains(name) {
                true => storage.remove_pool(name).map_err(|e| e.1),
                false => serde_json::to_string(def)
                    .map_err(|e| e.to_string())
                    .and_then(|text| {
                        let key = format!("{PREFIX}{name}");
                        let put = cluster.store().put_if(&key, &text, None, 0);
                        put.map(|_| ()).map_err(|e| e.to_string())
                    }),
            };
            self.report(name, done);
        }
        for (name, (version, def)) in &stored {
            if local.contains_key(name) {
                continue;
            }
            let done = match (self.local_before.contains(name), storage.pool(name)) {
                (true, _) => cluster
                    .store()
                    .write(Op::Delete {
                        key: format!("{PREFIX}{name}"),
                        expect: Some(*version),
                    })
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                (false, Ok(_)) => Err("a pool of that name is defined here only".into()),
                (false, Err(_)) => storage
                    .define_pool(def.clone())
                    .map(|_| ())
                    .map_err(|e| e.1),
            };
            self.report(name, done);
        }
        self.stored_before = stored.into_keys().collect();
        self.local_before = storage
            .pools()
            .into_iter()
            .filter(|p| p.cluster)
            .map(|p| p.name)
            .collect();
    }

    fn report(&mut self, name: &str, done: Result<(), String>) {
        match done {
            Ok(()) => {
                self.failing.remove(name);
            }
            Err(e) if self.failing.get(name) != Some(&e) => {
                eprintln!("vireo-agent: cluster pool '{name}': {e}");
                self.failing.insert(name.to_string(), e);
            }
            Err(_) => {}
        }
    }
}
