//! The network routes (docs/api/agent.yaml): thin handlers over `Networks`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use crate::error::{ApiResult, JsonBody};
use crate::net_types::{Lease, NetworkInfo, NetworkSpec};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(list).post(create))
        .route("/networks/{name}", get(show).delete(delete))
        .route("/networks/{name}/leases", get(leases))
}

async fn list(State(s): State<AppState>) -> Json<Vec<NetworkInfo>> {
    Json(s.networks.list())
}

async fn create(
    State(s): State<AppState>,
    JsonBody(spec): JsonBody<NetworkSpec>,
) -> ApiResult<(StatusCode, Json<NetworkInfo>)> {
    let info = s.networks.create(spec).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

async fn show(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<NetworkInfo>> {
    Ok(Json(s.networks.info(s.networks.spec(&name)?)))
}

async fn delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    // The VMs whose definitions name the network.
    let users: Vec<String> = s
        .vms
        .list()
        .into_iter()
        .filter(|vm| {
            vm.spec
                .nics
                .iter()
                .any(|n| n.network.as_deref() == Some(&name))
        })
        .map(|vm| vm.spec.name)
        .collect();
    s.networks.delete(&name, users).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn leases(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<Lease>>> {
    s.networks.leases(&name).map(Json)
}
