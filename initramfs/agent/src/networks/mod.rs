//! The node's networks: definitions (`spec`), one JSON file each in
//! `STATE/networks/NAME.json`; how they are made on the node (`apply`,
//! `link`, `firewall`); the guest ports VMs attach to them (`ports`); the
//! DHCP server of nat, isolated and private networks (`dhcp`) and the DNS
//! forwarder of nat ones (`dns`); the node's own bonds and VLANs, kept
//! for vireo-init (`node_net`); the REST routes (`routes`).
//!
//! Locking: `op` (an async mutex) serialises every change to the node's
//! networking (create, delete, attach, detach); `defs` and `ports` are
//! plain mutexes held for a few reads or writes, never across an await.

pub mod apply;
pub mod dhcp;
pub mod dns;
pub mod firewall;
pub mod forwards;
pub mod link;
pub mod mac;
pub mod node_net;
pub mod ports;
pub mod routes;
pub mod spec;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::ApiError;
use crate::net_types::{Lease, NetworkInfo, NetworkSpec};
use crate::store::{self, Paths};

/// The network manager: cheap to clone, shared by the routes and the VMs.
#[derive(Clone)]
pub struct Networks {
    inner: Arc<Inner>,
}

struct Inner {
    paths: Arc<Paths>,
    op: tokio::sync::Mutex<()>,
    defs: Mutex<BTreeMap<String, NetworkSpec>>,
    ports: Mutex<Vec<ports::PortRecord>>,
    dhcp: Mutex<BTreeMap<String, dhcp::Server>>,
    dns: Mutex<BTreeMap<String, dns::Forwarder>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `STATE/networks`.
fn dir(state: &Path) -> PathBuf {
    state.join("networks")
}

impl Networks {
    /// Loads every definition; nothing on the node changes (see `restore`).
    pub fn load(paths: Arc<Paths>) -> std::io::Result<Self> {
        let dir = dir(&paths.state);
        std::fs::create_dir_all(&dir)?;
        let mut defs = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match store::read_json::<NetworkSpec>(&path) {
                Ok(Some(spec)) => {
                    defs.insert(spec.name.clone(), spec);
                }
                Ok(None) => {}
                Err(e) => eprintln!("vireo-agent: skipping network definition {e}"),
            }
        }
        let ports = ports::load(&paths.run);
        Ok(Networks {
            inner: Arc::new(Inner {
                paths,
                op: tokio::sync::Mutex::new(()),
                defs: Mutex::new(defs),
                ports: Mutex::new(ports),
                dhcp: Mutex::new(BTreeMap::new()),
                dns: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// At the agent's start: makes every network that is not on the node
    /// (the node booted), and starts the DHCP servers.
    pub async fn restore(&self) {
        let _op = self.inner.op.lock().await;
        for spec in self.specs() {
            if !apply::is_active(&spec) {
                if let Err(e) = apply::apply(&spec).await {
                    eprintln!("vireo-agent: network '{}': {e}", spec.name);
                    continue;
                }
            }
            if let Err(e) = self.refresh_network_rules(&spec).await {
                eprintln!("vireo-agent: network '{}': port forwards: {e}", spec.name);
            }
            self.start_dhcp(&spec);
            self.start_dns(&spec);
        }
        for network in self.specs().iter().map(|s| s.name.clone()) {
            if let Err(e) = self.refresh_tenant_rules(&network).await {
                eprintln!("vireo-agent: network '{network}': {e}");
            }
        }
    }

    fn specs(&self) -> Vec<NetworkSpec> {
        lock(&self.inner.defs).values().cloned().collect()
    }

    pub fn spec(&self, name: &str) -> Result<NetworkSpec, ApiError> {
        lock(&self.inner.defs)
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no network named '{name}'")))
    }

    pub fn list(&self) -> Vec<NetworkInfo> {
        self.specs().into_iter().map(|s| self.info(s)).collect()
    }

    pub fn info(&self, spec: NetworkSpec) -> NetworkInfo {
        let gateway = spec::subnet_of(&spec).map(|s| format!("{}/{}", s.gateway(), s.prefix));
        let ports = self
            .ports_on(&spec.name)
            .iter()
            .map(|p| p.to_port())
            .collect();
        NetworkInfo {
            bridge: apply::bridge_name(&spec),
            active: apply::is_active(&spec),
            gateway,
            ports,
            spec,
        }
    }

    fn ports_on(&self, network: &str) -> Vec<ports::PortRecord> {
        lock(&self.inner.ports)
            .iter()
            .filter(|p| p.network == network)
            .cloned()
            .collect()
    }

    /// POST /networks: validated, made on the node, then stored.
    pub async fn create(&self, spec: NetworkSpec) -> Result<NetworkInfo, ApiError> {
        let _op = self.inner.op.lock().await;
        spec::validate(&spec, &self.specs()).map_err(|e| match e.contains("exists already") {
            true => ApiError::conflict(e),
            false => ApiError::bad_request(e),
        })?;
        apply::apply(&spec).await.map_err(ApiError::bad_request)?;
        let path = dir(&self.inner.paths.state).join(format!("{}.json", spec.name));
        if let Err(e) = store::write_json(&path, &spec) {
            let _ = apply::remove(&spec).await;
            return Err(ApiError::internal(format!(
                "saving {}: {e}",
                path.display()
            )));
        }
        lock(&self.inner.defs).insert(spec.name.clone(), spec.clone());
        self.start_dhcp(&spec);
        self.start_dns(&spec);
        Ok(self.info(spec))
    }

    /// DELETE /networks/{name}: refused while a VM definition names it
    /// (`users`) or a guest port is attached.
    pub async fn delete(&self, name: &str, users: Vec<String>) -> Result<(), ApiError> {
        let _op = self.inner.op.lock().await;
        let spec = self.spec(name)?;
        if !users.is_empty() {
            return Err(ApiError::conflict(format!(
                "network '{name}' is used by VM {}",
                users.join(", ")
            )));
        }
        if !self.ports_on(name).is_empty() {
            return Err(ApiError::conflict(format!(
                "network '{name}' has guest ports attached"
            )));
        }
        if let Some(server) = lock(&self.inner.dhcp).remove(name) {
            server.stop();
        }
        lock(&self.inner.dns).remove(name);
        let removed = apply::remove(&spec).await;
        let state = &self.inner.paths.state;
        std::fs::remove_file(dir(state).join(format!("{name}.json")))
            .map_err(|e| ApiError::internal(format!("removing the network's file: {e}")))?;
        let _ = std::fs::remove_file(dhcp::leases_path(state, name));
        let _ = std::fs::remove_file(forwards::path(state, name));
        lock(&self.inner.defs).remove(name);
        removed.map_err(|e| ApiError::internal(format!("network '{name}' forgotten, but: {e}")))
    }

    /// GET /networks/{name}/leases.
    pub fn leases(&self, name: &str) -> Result<Vec<Lease>, ApiError> {
        let spec = self.spec(name)?;
        if !spec::serves_dhcp(&spec) {
            return Err(ApiError::bad_request(format!(
                "network '{name}' has no DHCP server (only nat, isolated and private networks \
                 with a subnet do)"
            )));
        }
        Ok(dhcp::read_leases(&self.inner.paths.state, name))
    }

    /// The DNS forwarder of a nat network, on its gateway address.
    fn start_dns(&self, spec: &NetworkSpec) {
        let Some(subnet) = spec::subnet_of(spec) else {
            return;
        };
        if spec.kind != crate::net_types::NetworkKind::Nat
            || lock(&self.inner.dns).contains_key(&spec.name)
        {
            return;
        }
        match dns::Forwarder::start(subnet.gateway()) {
            Ok(f) => {
                lock(&self.inner.dns).insert(spec.name.clone(), f);
            }
            Err(e) => eprintln!("vireo-agent: network '{}': {e}", spec.name),
        }
    }

    fn start_dhcp(&self, spec: &NetworkSpec) {
        if !spec::serves_dhcp(spec) || lock(&self.inner.dhcp).contains_key(&spec.name) {
            return;
        }
        let Some(bridge) = apply::bridge_name(spec) else {
            return;
        };
        match dhcp::Server::start(&self.inner.paths.state, spec, &bridge) {
            Ok(server) => {
                lock(&self.inner.dhcp).insert(spec.name.clone(), server);
            }
            Err(e) => eprintln!("vireo-agent: network '{}': DHCP: {e}", spec.name),
        }
    }
}

/// Writes a network's leases (atomically, like every state file).
fn store_leases(path: &Path, leases: &[Lease]) -> Result<(), String> {
    store::write_json(path, leases).map_err(|e| format!("{}: {e}", path.display()))
}
