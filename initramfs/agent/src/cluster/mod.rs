//! The agent in a cluster (docs/cluster.md): this node's replica of the
//! cluster store (`vireo_cluster::store`), what the agent keeps in it and
//! what it does with it.
//!
//! Keys: `node/ID` (owner ID) is what node ID publishes about itself
//! (`publish`): its agent's address, its statistics and its VMs' states;
//! `vm/NAME` (owner: the node that runs it) is a VM's definition, mirrored
//! from the owner's own definitions. One thread (`Cluster::start`) runs the
//! publication and HA (`ha`) in turn every half second, so the two never
//! race on one VM. Requests for a VM another node owns are forwarded to
//! that node's agent (`forward`).

mod balance;
mod console;
pub mod forward;
pub mod gather;
pub mod ha;
mod migrate;
pub mod peer;
pub mod placement;
mod publish;
pub mod routes;
mod shared_defs;
mod stats;
pub mod watchdog;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vireo_cluster::store::{Store, StoreOptions, StoreStatus};
use vireo_cluster::{ClusterDir, Membership};
use vireo_membership::config::NodeConfig;

use crate::cluster_types::{ClusterNode, ClusterVm, NodeStats};
use crate::error::ApiError;
use crate::networks::Networks;
use crate::storage::Storage;
use crate::vm_types::VmSpec;
use crate::vms::Vms;
use ha::HaSettings;
use placement::WatchdogState;

/// The store group the agents share.
pub const GROUP: &str = "vireo-agent";
/// How often the cluster thread runs (publication, HA, watchdog feeding).
pub const STEP: Duration = Duration::from_millis(500);

/// The agent's cluster options (flattened into its command line).
#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    /// The cluster directory (corosync.conf, store): no cluster without one.
    #[arg(long, env = "VIREO_CLUSTER_DIR", default_value = vireo_cluster::DEFAULT_DIR)]
    pub cluster_dir: PathBuf,
    /// vireo-membershipd's group socket.
    #[arg(long, env = "VIREO_MEMBERSHIP_GROUP_SOCKET", default_value = vireo_cluster::client::DEFAULT_SOCKET)]
    pub group_socket: PathBuf,
    #[command(flatten)]
    pub ha: HaSettings,
}

/// What node ID publishes under `node/ID`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    /// Its agent: `ADDR:PORT`.
    pub api: String,
    pub stats: NodeStats,
    /// Its VMs and their states.
    pub vms: BTreeMap<String, String>,
    pub updated: u64,
    /// The pools usable there and its networks (placement.rs); `None`
    /// from an agent that does not publish them.
    #[serde(default)]
    pub pools: Option<Vec<String>>,
    #[serde(default)]
    pub networks: Option<Vec<String>>,
    /// Why its watchdog cannot be armed, if it tried and failed.
    #[serde(default)]
    pub watchdog_error: Option<String>,
}

/// What `vm/NAME` holds: the owner's definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    pub uuid: String,
    pub spec: VmSpec,
}

/// This node's cluster side; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    dir: ClusterDir,
    me: u32,
    name: String,
    /// Where this agent listens, as other nodes reach it.
    api: String,
    settings: HaSettings,
    /// Nodes missing from the view, since when (this node's observation).
    missing: Mutex<BTreeMap<u32, Instant>>,
    watchdog: Mutex<WatchdogState>,
}

impl Cluster {
    /// The cluster side, if this node is in a cluster (its cluster directory
    /// holds a corosync.conf that lists one of its addresses).
    pub fn open(args: &ClusterArgs, api_port: u16) -> Result<Option<Cluster>, String> {
        let dir = ClusterDir::new(&args.cluster_dir);
        let Some(membership) = Self::membership_with_address(&dir)? else {
            return Ok(None);
        };
        let me = membership
            .nodeid
            .ok_or("corosync.conf lists none of this node's addresses")?;
        let entry = membership.config.nodes.iter().find(|n| n.nodeid == me);
        let addr = entry.map(|n| n.ring0_addr.to_string()).unwrap_or_default();
        let name = entry
            .and_then(|n| n.name.clone())
            .unwrap_or_else(|| format!("node{me}"));
        let opts = StoreOptions::new(&args.group_socket, GROUP).persist(dir.store_dir());
        let store = Store::open(opts).map_err(|e| e.to_string())?;
        Ok(Some(Cluster {
            inner: Arc::new(Inner {
                store,
                dir,
                me,
                name,
                api: format!("{addr}:{api_port}"),
                settings: args.ha.clone(),
                missing: Mutex::default(),
                watchdog: Mutex::default(),
            }),
        }))
    }

    /// corosync.conf's view of this node, waiting up to ADDRESS_WAIT for one
    /// of the nodelist's addresses to appear on an interface: at boot, init
    /// may start the agent before the network is configured, and an agent that
    /// gave up then would run as a lone node until restarted.
    fn membership_with_address(dir: &ClusterDir) -> Result<Option<Membership>, String> {
        const ADDRESS_WAIT: Duration = Duration::from_secs(30);
        let start = Instant::now();
        let mut said = false;
        loop {
            let membership = dir.membership()?;
            match &membership {
                Some(m) if m.nodeid.is_none() && start.elapsed() < ADDRESS_WAIT => {
                    if !said {
                        eprintln!("vireo-agent: waiting for one of corosync.conf's addresses");
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                _ => return Ok(membership),
            }
        }
    }

    pub fn me(&self) -> u32 {
        self.inner.me
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn settings(&self) -> &HaSettings {
        &self.inner.settings
    }

    /// Quorate, synced and ready: the only state in which this node may
    /// write, run HA VMs and feed its watchdog.
    pub fn quorate(status: &StoreStatus) -> bool {
        status.ready && status.synced && status.quorate
    }

    /// The nodes of the current view.
    pub fn view_nodes(status: &StoreStatus) -> BTreeSet<u32> {
        status.members.iter().map(|m| m.node).collect()
    }

    /// The fencing bound with the totem timers corosync.conf gives now (the
    /// token timeout grows with the nodelist).
    pub fn fence_bound(&self) -> Duration {
        let (token, join) = match self.inner.dir.membership() {
            Ok(Some(m)) => (m.config.totem.timers.token, m.config.totem.timers.join),
            // Unreadable now: corosync's largest usual values, to err long.
            _ => (10_000, 1_000),
        };
        self.inner.settings.fence_bound(token, join)
    }

    /// The nodelist as corosync.conf has it now (it grows as nodes join).
    fn nodelist(&self) -> Vec<NodeConfig> {
        match self.inner.dir.membership() {
            Ok(Some(m)) => m.config.nodes,
            _ => Vec::new(),
        }
    }

    fn records(&self) -> Result<BTreeMap<u32, NodeRecord>, ApiError> {
        let entries = self.inner.store.list("node/").map_err(unavailable)?;
        Ok(entries
            .iter()
            .filter_map(|(k, e)| {
                let id = k.strip_prefix("node/")?.parse().ok()?;
                let rec: NodeRecord = serde_json::from_str(&e.value).ok()?;
                Some((id, rec))
            })
            .collect())
    }

    /// Every VM record and its owner.
    pub fn vm_records(&self) -> Result<BTreeMap<String, (u32, u64, VmRecord)>, ApiError> {
        let entries = self.inner.store.list("vm/").map_err(unavailable)?;
        Ok(entries
            .into_iter()
            .filter_map(|(k, e)| {
                let name = k.strip_prefix("vm/")?.to_string();
                let rec: VmRecord = serde_json::from_str(&e.value).ok()?;
                Some((name, (e.owner?, e.version, rec)))
            })
            .collect())
    }

    /// GET /cluster/nodes.
    pub fn nodes(&self) -> Result<Vec<ClusterNode>, ApiError> {
        let status = self.inner.store.status();
        let view = Cluster::view_nodes(&status);
        let mut records = self.records()?;
        let missing = self
            .inner
            .missing
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let bound = self.fence_bound();
        let drained = self.drained()?;
        Ok(self
            .nodelist()
            .into_iter()
            .map(|n| {
                let rec = records.remove(&n.nodeid);
                let state = match (view.contains(&n.nodeid), missing.get(&n.nodeid)) {
                    (true, _) => "online",
                    // A member without a Vireo agent (a real corosync node).
                    (false, _) if rec.is_none() => "no_agent",
                    (false, Some(at)) if at.elapsed() >= bound => "fenced",
                    (false, _) => "offline",
                };
                ClusterNode {
                    id: n.nodeid,
                    name: n.name.unwrap_or_else(|| format!("node{}", n.nodeid)),
                    address: n.ring0_addr.to_string(),
                    state: state.into(),
                    api: rec.as_ref().map(|r| r.api.clone()),
                    updated: rec.as_ref().map(|r| r.updated),
                    drained: drained.contains(&n.nodeid),
                    stats: rec.map(|r| r.stats),
                }
            })
            .collect())
    }

    /// GET /cluster/vms: every VM of the cluster with its owner's view of it.
    pub fn vms(&self) -> Result<Vec<ClusterVm>, ApiError> {
        let records = self.records()?;
        let view = Cluster::view_nodes(&self.inner.store.status());
        Ok(self
            .vm_records()?
            .into_iter()
            .map(|(name, (owner, _, rec))| {
                let node = records.get(&owner);
                ClusterVm {
                    state: match view.contains(&owner) {
                        true => node.and_then(|n| n.vms.get(&name).cloned()),
                        false => Some("node_offline".into()),
                    }
                    .unwrap_or_else(|| "unknown".into()),
                    node: node.map_or_else(|| format!("node{owner}"), |n| n.name.clone()),
                    node_id: owner,
                    ha: rec.spec.ha,
                    name,
                }
            })
            .collect())
    }

    /// The node other than this one that owns VM `name` in the store.
    pub fn other_owner(&self, name: &str) -> Option<u32> {
        let owner = self.inner.store.get(&format!("vm/{name}")).ok()??.owner?;
        (owner != self.inner.me).then_some(owner)
    }

    /// The node that owns VM `name` and its agent (`ADDR:PORT`), when that
    /// is another node.
    pub fn owner_api(&self, name: &str) -> Option<(u32, String)> {
        let owner = self.other_owner(name)?;
        Some((owner, self.api_of(owner)?))
    }

    /// The agent (`ADDR:PORT`) node `id` last published.
    pub fn api_of(&self, id: u32) -> Option<String> {
        let rec = self.inner.store.get(&format!("node/{id}")).ok()??;
        serde_json::from_str::<NodeRecord>(&rec.value)
            .ok()
            .map(|r| r.api)
    }

    /// Runs the cluster thread: waits for the store's state, drops the
    /// local definitions of HA VMs another node took over while this one
    /// was away (before anything autostarts), then publishes and runs HA.
    /// `ready` is called once that first step is done. Cluster-wide pools
    /// and networks are kept in step by a thread of their own (an NFS mount
    /// may take long; HA must not wait for it).
    pub fn start(
        &self,
        vms: Vms,
        local: (Storage, Networks),
        ready: impl FnOnce() + Send + 'static,
    ) {
        vms.set_node_name(&self.inner.name);
        self.sync_definitions(&vms, &local);
        let cluster = self.clone();
        let rt = tokio::runtime::Handle::current();
        let spawned = std::thread::Builder::new()
            .name("vireo-cluster".into())
            .spawn(move || {
                if let Err(e) = cluster.inner.store.wait_ready(Duration::from_secs(30)) {
                    eprintln!("vireo-agent: cluster store: {e}; going on without it for now");
                }
                rt.block_on(publish::drop_moved_away(&cluster, &vms));
                ready();
                let mut ha = ha::Ha::new(&cluster, &vms, rt.clone());
                ha.resume_after_restart(&cluster, &vms);
                let mut publisher = publish::Publisher::new(local);
                let mut balancer = balance::Balancer::new(&cluster);
                loop {
                    publisher.step(&cluster, &vms);
                    rt.block_on(publish::drop_migrated_away(&cluster, &vms));
                    rt.block_on(ha.step(&cluster, &vms));
                    rt.block_on(balancer.step(&cluster, &vms));
                    std::thread::sleep(STEP);
                }
            });
        if let Err(e) = spawned {
            eprintln!("vireo-agent: cannot start the cluster thread: {e}");
        }
    }

    /// Keeps the cluster-wide pools and networks in step (shared_defs.rs).
    fn sync_definitions(&self, vms: &Vms, (storage, networks): &(Storage, Networks)) {
        let cluster = self.clone();
        let mut pools = shared_defs::DefSync::new(storage.clone());
        let mut nets = shared_defs::DefSync::new(shared_defs::LocalNetworks {
            networks: networks.clone(),
            vms: vms.clone(),
            rt: tokio::runtime::Handle::current(),
        });
        let spawned = std::thread::Builder::new()
            .name("vireo-shared".into())
            .spawn(move || loop {
                std::thread::sleep(STEP);
                if Cluster::quorate(&cluster.store().status()) {
                    pools.step(&cluster);
                    nets.step(&cluster);
                }
            });
        if let Err(e) = spawned {
            eprintln!("vireo-agent: cannot start the shared definitions' thread: {e}");
        }
    }

    fn set_missing(&self, missing: BTreeMap<u32, Instant>) {
        if let Ok(mut m) = self.inner.missing.lock() {
            *m = missing;
        }
    }
}

fn unavailable(e: vireo_cluster::store::StoreError) -> ApiError {
    ApiError::unavailable(format!("cluster store: {e}"))
}
