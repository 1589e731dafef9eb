//! The network routes (docs/api/agent.yaml): thin handlers over `Networks`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{self, get};
use axum::{Json, Router};

use super::node_net;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::net_types::{Forward, Lease, NetworkInfo, NetworkSpec, NodeNetwork};
use crate::server::AppState;
use crate::vms::routes::QueryArgs;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(list).post(create))
        .route("/networks/{name}", get(show).delete(remove))
        .route("/networks/{name}/leases", get(leases))
        .route("/networks/{name}/forwards", get(forwards).post(add_forward))
        .route(
            "/networks/{name}/forwards/{node_port}",
            routing::delete(remove_forward),
        )
        .route(
            "/node/network",
            get(node_network)
                .put(set_node_network)
                .delete(clear_node_network),
        )
}

/// GET /node/network: the stored settings (empty if none).
async fn node_network(State(s): State<AppState>) -> ApiResult<Json<NodeNetwork>> {
    let path = node_net::path(&s.paths.state);
    let stored = crate::store::read_json(&path)
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    Ok(Json(stored.unwrap_or_default()))
}

/// PUT /node/network: checked, then kept for the next boot.
async fn set_node_network(
    State(s): State<AppState>,
    JsonBody(net): JsonBody<NodeNetwork>,
) -> ApiResult<Json<NodeNetwork>> {
    node_net::validate(&net, super::link::exists).map_err(ApiError::bad_request)?;
    let path = node_net::path(&s.paths.state);
    crate::store::write_json(&path, &net)
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    Ok(Json(net))
}

/// DELETE /node/network: back to the kernel command line alone.
async fn clear_node_network(State(s): State<AppState>) -> ApiResult<StatusCode> {
    let path = node_net::path(&s.paths.state);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StatusCode::NO_CONTENT),
        Err(e) => Err(ApiError::internal(format!("{}: {e}", path.display()))),
    }
}

/// Every network; a tenant sees only its own VMs' ports on them.
async fn list(State(s): State<AppState>, caller: Caller) -> Json<Vec<NetworkInfo>> {
    let mut nets = s.networks.list();
    for net in &mut nets {
        net.ports.retain(|p| caller.may_see(p.tenant.as_deref()));
    }
    Json(nets)
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

/// The VMs whose definitions name network `name`.
pub fn users(vms: &crate::vms::Vms, name: &str) -> Vec<String> {
    vms.list()
        .into_iter()
        .filter(|vm| {
            vm.spec
                .nics
                .iter()
                .any(|n| n.network.as_deref() == Some(name))
        })
        .map(|vm| vm.spec.name)
        .collect()
}

async fn remove(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let users = users(&s.vms, &name);
    s.networks.delete(&name, users).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn leases(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<Lease>>> {
    s.networks.leases(&name).map(Json)
}

#[derive(serde::Deserialize)]
struct TenantFilter {
    tenant: Option<String>,
}

/// The forwards, of one tenant with `?tenant=`; a tenant's are its own only.
async fn forwards(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    QueryArgs(q): QueryArgs<TenantFilter>,
) -> ApiResult<Json<Vec<Forward>>> {
    let tenant = caller.only_tenant().or(q.tenant.as_deref());
    s.networks.forwards(&name, tenant).map(Json)
}

async fn add_forward(
    State(s): State<AppState>,
    Path(name): Path<String>,
    JsonBody(fwd): JsonBody<Forward>,
) -> ApiResult<(StatusCode, Json<Forward>)> {
    let fwd = s.networks.add_forward(&name, fwd, &s.vms.list()).await?;
    Ok((StatusCode::CREATED, Json(fwd)))
}

async fn remove_forward(
    State(s): State<AppState>,
    Path((name, node_port)): Path<(String, u16)>,
) -> ApiResult<StatusCode> {
    s.networks.remove_forward(&name, node_port).await?;
    Ok(StatusCode::NO_CONTENT)
}
