//! The cluster routes (docs/api/agent.yaml, "cluster"): the node table and
//! every VM of the cluster.

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

async fn nodes(State(s): State<AppState>) -> ApiResult<Json<Vec<ClusterNode>>> {
    let c = cluster(&s)?;
    blocking(move || c.nodes()).await.map(Json)
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
