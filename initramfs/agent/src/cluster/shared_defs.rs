//! Pools and networks defined on every node (docs/cluster.md, "Shared
//! definitions"): one defined with `cluster: true` on a node is written to
//! the store (`pool/NAME`, `net/NAME`), and every node defines it too (a
//! directory all nodes see, an NFS export each node mounts; a network's
//! bridge, NAT and DHCP made on each node); removed on one node, it goes
//! from the store and from every node. What changed is told apart by what
//! each side held at the previous step: a name the store had and lost was
//! removed elsewhere, a name this node had and lost was removed here.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::runtime::Handle;
use vireo_cluster::store::Op;

use super::Cluster;
use crate::net_types::NetworkSpec;
use crate::networks::Networks;
use crate::storage::Storage;
use crate::storage_api::PoolDef;
use crate::vms::Vms;

/// One kind of definition as this node has it.
pub trait LocalDefs {
    type Def: Serialize + DeserializeOwned + Clone;
    /// Its keys in the store.
    const PREFIX: &'static str;
    /// What it is, for the log.
    const WHAT: &'static str;
    /// The definitions here marked `cluster`.
    fn shared(&self) -> BTreeMap<String, Self::Def>;
    /// Whether any definition here has that name.
    fn has(&self, name: &str) -> bool;
    fn define(&self, def: Self::Def) -> Result<(), String>;
    fn remove(&self, name: &str) -> Result<(), String>;
}

pub struct DefSync<L: LocalDefs> {
    local: L,
    stored_before: BTreeSet<String>,
    local_before: BTreeSet<String>,
    /// The last failure per name, said once.
    failing: BTreeMap<String, String>,
}

impl<L: LocalDefs> DefSync<L> {
    pub fn new(local: L) -> DefSync<L> {
        DefSync {
            local,
            stored_before: BTreeSet::new(),
            local_before: BTreeSet::new(),
            failing: BTreeMap::new(),
        }
    }

    /// One step, on the quorate side.
    pub fn step(&mut self, cluster: &Cluster) {
        let Ok(entries) = cluster.store().list(L::PREFIX) else {
            return;
        };
        let stored: BTreeMap<String, (u64, L::Def)> = entries
            .into_iter()
            .filter_map(|(k, e)| {
                let def = serde_json::from_str(&e.value).ok()?;
                Some((k.strip_prefix(L::PREFIX)?.to_string(), (e.version, def)))
            })
            .collect();
        let local = self.local.shared();
        for (name, def) in &local {
            if stored.contains_key(name) {
                continue;
            }
            let done = match self.stored_before.contains(name) {
                true => self.local.remove(name),
                false => serde_json::to_string(def)
                    .map_err(|e| e.to_string())
                    .and_then(|text| {
                        let key = format!("{}{name}", L::PREFIX);
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
            let done = match (self.local_before.contains(name), self.local.has(name)) {
                (true, _) => cluster
                    .store()
                    .write(Op::Delete {
                        key: format!("{}{name}", L::PREFIX),
                        expect: Some(*version),
                    })
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                (false, true) => Err("one of that name is defined on this node only".into()),
                (false, false) => self.local.define(def.clone()),
            };
            self.report(name, done);
        }
        self.stored_before = stored.into_keys().collect();
        self.local_before = self.local.shared().into_keys().collect();
    }

    fn report(&mut self, name: &str, done: Result<(), String>) {
        match done {
            Ok(()) => {
                self.failing.remove(name);
            }
            Err(e) if self.failing.get(name) != Some(&e) => {
                eprintln!("vireo-agent: cluster {} '{name}': {e}", L::WHAT);
                self.failing.insert(name.to_string(), e);
            }
            Err(_) => {}
        }
    }
}

impl LocalDefs for Storage {
    type Def = PoolDef;
    const PREFIX: &'static str = "pool/";
    const WHAT: &'static str = "pool";

    fn shared(&self) -> BTreeMap<String, PoolDef> {
        let pools = self.pools().into_iter().filter(|p| p.cluster);
        pools.map(|p| (p.name.clone(), p)).collect()
    }

    fn has(&self, name: &str) -> bool {
        self.pool(name).is_ok()
    }

    fn define(&self, def: PoolDef) -> Result<(), String> {
        self.define_pool(def).map(|_| ()).map_err(|e| e.1)
    }

    fn remove(&self, name: &str) -> Result<(), String> {
        self.remove_pool(name).map_err(|e| e.1)
    }
}

/// The node's networks, made and removed on the agent's runtime.
pub struct LocalNetworks {
    pub networks: Networks,
    pub vms: Vms,
    pub rt: Handle,
}

impl LocalDefs for LocalNetworks {
    type Def = NetworkSpec;
    const PREFIX: &'static str = "net/";
    const WHAT: &'static str = "network";

    fn shared(&self) -> BTreeMap<String, NetworkSpec> {
        let list = self.networks.list().into_iter().map(|n| n.spec);
        list.filter(|s| s.cluster)
            .map(|s| (s.name.clone(), s))
            .collect()
    }

    fn has(&self, name: &str) -> bool {
        self.networks.spec(name).is_ok()
    }

    fn define(&self, spec: NetworkSpec) -> Result<(), String> {
        let made = self.rt.block_on(self.networks.create(spec));
        made.map(|_| ()).map_err(|e| e.1)
    }

    fn remove(&self, name: &str) -> Result<(), String> {
        let users = crate::networks::routes::users(&self.vms, name);
        let removed = self.rt.block_on(self.networks.delete(name, users));
        removed.map_err(|e| e.1)
    }
}
