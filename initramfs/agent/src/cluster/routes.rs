//! The cluster routes (docs/api/agent.yaml, "cluster"): the node table,
//! every VM and every task of the cluster.

use axum::extract::State;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};

use super::Cluster;
use crate::cluster_types::{ClusterNode, ClusterVm};
use crate::error::{ApiError, ApiResult};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/cluster/nodes", get(nodes))
        .route("/cluster/vms", get(vms))
        .route("/cluster/tasks", get(super::gather::tasks))
        .route(
            "/cluster/nodes/{node}/drain",
            put(super::placement::drain).delete(super::placement::undrain),
        )
        .route("/cluster/incoming", post(super::migrate::incoming))
        .route("/cluster/incoming/{name}", delete(super::migrate::abort))
        .route("/vms/{name}/migrate", post(super::migrate::migrate))
}

pub(super) fn cluster(s: &AppState) -> Result<Cluster, ApiError> {
    s.cluster
        .clone()
        .ok_or_else(|| ApiError::not_found("this node is not in a cluster"))
}

/// The node table; a node not in a cluster answers itself alone (the web
/// UI's overview reads one table either way).
async fn nodes(State(s): State<AppState>) -> ApiResult<Json<Vec<ClusterNode>>> {
    let Some(c) = s.cluster.clone() else {
        return blocking(move || Ok(vec![standalone(&s)])).await.map(Json);
    };
    blocking(move || c.nodes()).await.map(Json)
}

/// This node as a one-node table: its statistics now, the CPU shares from
/// the metrics histories' newest samples.
fn standalone(s: &AppState) -> ClusterNode {
    let vms = s.vms.list();
    let pids: Vec<i32> = vms.iter().filter_map(|v| v.pid).collect();
    let mut stats =
        super::stats::Sampler::default().sample(&s.paths.state, vms.len() as u32, &pids);
    if let Some(last) = s.metrics.node_history().points.last() {
        stats.cpu_percent = (last.cpu_pct * 10.0).round() / 10.0;
    }
    let cores = |v: &crate::vm_types::VmInfo| {
        let last = s
            .metrics
            .vm_history(v)
            .points
            .last()
            .map_or(0.0, |p| p.cpu_pct);
        last / 100.0 * f64::from(v.spec.vcpus.max(1))
    };
    let vms_cpu: f64 = vms.iter().filter(|v| v.pid.is_some()).map(cores).sum();
    stats.vms_cpu = (vms_cpu * 100.0).round() / 100.0;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ClusterNode {
        id: 0,
        name: crate::node::collect().name,
        address: String::new(),
        state: "online".into(),
        api: None,
        stats: Some(stats),
        updated: Some(now),
        drained: false,
    }
}

async fn vms(State(s): State<AppState>) -> ApiResult<Json<Vec<ClusterVm>>> {
    let c = cluster(&s)?;
    blocking(move || c.vms()).await.map(Json)
}

/// The store's reads take its lock and the nodelist is a file: off the
/// async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
}
