//! Where a VM may run in the cluster (docs/cluster.md, "Placement"): a
//! drained node (`drain/ID` in the store, `vireo node drain`) takes no new
//! VM; a node lacking a VM's pool or network cannot take it (each node
//! publishes the pools and networks it has); an HA VM runs only where the
//! fencing watchdog is armed. The same checks answer a define or start on
//! this node, pick a migration's destination and an HA VM's survivor.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;

use super::routes::{blocking, cluster};
use super::{unavailable, Cluster, NodeRecord};
use crate::error::{ApiError, ApiResult};
use crate::server::AppState;
use crate::vm_types::VmSpec;
use crate::vms::now;

/// How long an HA VM's start waits for the feeder to arm the watchdog.
const ARM_WAIT: Duration = Duration::from_secs(3);

/// What the feeder last did with the watchdog.
#[derive(Clone, Debug, Default)]
pub struct WatchdogState {
    pub armed: bool,
    /// The last arm or feed failure, until one succeeds.
    pub error: Option<String>,
}

/// The pools a VM's disks are in (`POOL/VOLUME`; a plain path has none).
fn pools_of(spec: &VmSpec) -> BTreeSet<&str> {
    spec.disks
        .iter()
        .filter(|d| !d.volume.starts_with('/'))
        .filter_map(|d| d.volume.split_once('/').map(|(pool, _)| pool))
        .collect()
}

fn networks_of(spec: &VmSpec) -> BTreeSet<&str> {
    spec.nics
        .iter()
        .filter_map(|n| n.network.as_deref())
        .collect()
}

impl Cluster {
    /// The nodes in maintenance.
    pub fn drained(&self) -> Result<BTreeSet<u32>, ApiError> {
        let entries = self.store().list("drain/").map_err(unavailable)?;
        Ok(entries
            .keys()
            .filter_map(|k| k.strip_prefix("drain/")?.parse().ok())
            .collect())
    }

    /// Why node `id` (publishing `rec`) cannot take a VM defined as `spec`,
    /// if it cannot. A record of an agent that publishes no pools or
    /// networks (an older one) is not checked for them.
    pub fn unfit(
        &self,
        id: u32,
        rec: &NodeRecord,
        spec: &VmSpec,
        drained: &BTreeSet<u32>,
    ) -> Option<String> {
        let node = &rec.name;
        if drained.contains(&id) {
            return Some(format!("node '{node}' is drained (it takes no new VMs)"));
        }
        if let Some(pool) = rec.pools.as_ref().and_then(|have| {
            pools_of(spec)
                .into_iter()
                .find(|p| !have.iter().any(|h| h == p))
        }) {
            return Some(format!("node '{node}' has no pool '{pool}'"));
        }
        if let Some(net) = rec.networks.as_ref().and_then(|have| {
            networks_of(spec)
                .into_iter()
                .find(|n| !have.iter().any(|h| h == n))
        }) {
            return Some(format!("node '{node}' has no network '{net}'"));
        }
        match (&rec.watchdog_error, spec.ha) {
            (Some(e), true) => Some(format!(
                "node '{node}' cannot arm its watchdog ({e}); an HA VM runs only fenced"
            )),
            _ => None,
        }
    }

    /// A define or start on this node: refused while it is drained.
    fn refuse_if_drained(&self) -> Result<(), ApiError> {
        match self.drained()?.contains(&self.me()) {
            true => Err(ApiError::conflict(format!(
                "node '{}' is drained (maintenance): it takes no new VMs; use another \
                 node, or `vireo node undrain {}`",
                self.inner.name, self.inner.name
            ))),
            false => Ok(()),
        }
    }

    pub fn watchdog_state(&self) -> WatchdogState {
        self.inner
            .watchdog
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default()
    }

    pub(super) fn set_watchdog_state(&self, state: WatchdogState) {
        if let Ok(mut w) = self.inner.watchdog.lock() {
            *w = state;
        }
    }

    /// An HA VM starts here only once the watchdog is armed: waits for the
    /// feeder (it arms as soon as an HA VM is defined here and the node is
    /// quorate), refuses with its error otherwise.
    async fn ensure_fenced(&self, vm: &str) -> Result<(), ApiError> {
        let deadline = Instant::now() + ARM_WAIT;
        loop {
            let state = self.watchdog_state();
            if let Some(e) = state.error {
                return Err(ApiError::conflict(format!(
                    "VM '{vm}' is HA, but this node's watchdog {} cannot be armed: {e}; an HA \
                     VM never runs unfenced (fix the watchdog, or set ha to false)",
                    self.settings().watchdog
                )));
            }
            if state.armed {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ApiError::unavailable(format!(
                    "VM '{vm}' is HA, but this node's watchdog is not armed (is the node \
                     quorate?); an HA VM never runs unfenced"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `POST /vms`: refused on a drained node.
pub async fn admit_define(s: &AppState) -> Result<(), ApiError> {
    let Some(c) = s.cluster.clone() else {
        return Ok(());
    };
    blocking(move || c.refuse_if_drained()).await
}

/// A VM's start on this node: refused while drained, and for an HA VM
/// unless the watchdog is armed.
pub async fn admit_start(s: &AppState, spec: &VmSpec) -> Result<(), ApiError> {
    let Some(c) = s.cluster.clone() else {
        return Ok(());
    };
    let checked = c.clone();
    blocking(move || checked.refuse_if_drained()).await?;
    match spec.ha {
        true => c.ensure_fenced(&spec.name).await,
        false => Ok(()),
    }
}

/// `PUT /cluster/nodes/{node}/drain`: the node takes no new VMs (its
/// running VMs stay until moved: `vireo node drain` moves them).
pub async fn drain(State(s): State<AppState>, Path(node): Path<String>) -> ApiResult<StatusCode> {
    let c = cluster(&s)?;
    blocking(move || {
        let id = c.node_id(&node)?;
        let since = json!({"since": now()}).to_string();
        c.store()
            .put(&format!("drain/{id}"), &since, None)
            .map_err(unavailable)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /cluster/nodes/{node}/drain`: the node takes VMs again.
pub async fn undrain(State(s): State<AppState>, Path(node): Path<String>) -> ApiResult<StatusCode> {
    let c = cluster(&s)?;
    blocking(move || {
        let id = c.node_id(&node)?;
        c.store()
            .write(vireo_cluster::store::Op::Delete {
                key: format!("drain/{id}"),
                expect: None,
            })
            .map_err(unavailable)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

impl Cluster {
    /// The id of node `node` (its name or id) in the nodelist.
    pub fn node_id(&self, node: &str) -> Result<u32, ApiError> {
        self.nodelist()
            .into_iter()
            .find(|n| n.name.as_deref() == Some(node) || n.nodeid.to_string() == node)
            .map(|n| n.nodeid)
            .ok_or_else(|| ApiError::not_found(format!("no node named '{node}' in the cluster")))
    }
}
