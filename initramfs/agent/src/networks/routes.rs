//! The network routes (docs/api/agent.yaml): thin handlers over `Networks`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{self, get};
use axum::{Json, Router};

use crate::auth::Caller;
use crate::error::{ApiResult, JsonBody};
use crate::net_types::{Forward, Lease, NetworkInfo, NetworkSpec};
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
