//! The VM routes (docs/api/agent.yaml): thin handlers over `Vms`.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::console::LOG_HALF;
use super::Slot;
use crate::auth::{policy, Caller};
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::server::AppState;
use crate::tasks::TaskInfo;
use crate::vm_types::{VmInfo, VmSpec};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/vms", get(list).post(define))
        .route("/vms/{name}", get(show).put(edit).delete(undefine))
        .route("/vms/{name}/start", post(start))
        .route("/vms/{name}/shutdown", post(shutdown))
        .route("/vms/{name}/reboot", post(reboot))
        .route("/vms/{name}/destroy", post(destroy))
        .route("/vms/{name}/log", get(log))
        .route("/vms/{name}/console", get(console))
}

/// A query string that failed to parse becomes a JSON 400 that says why.
pub struct QueryArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| QueryArgs(q.0))
            .map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))
    }
}

#[derive(Deserialize)]
struct ListArgs {
    /// Every node's VMs, each with its node (in a cluster).
    #[serde(default)]
    all: bool,
}

/// `GET /vms[?all=true]`: the VMs the caller may see, this node's or
/// (`all`, in a cluster) every node's (cluster/gather.rs).
async fn list(
    State(s): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    QueryArgs(args): QueryArgs<ListArgs>,
) -> ApiResult<Response> {
    if args.all && s.cluster.is_some() {
        let authorization = headers.get(header::AUTHORIZATION);
        return crate::cluster::gather::vms(&s, &caller, authorization).await;
    }
    Ok(Json(visible_vms(&s, &caller)).into_response())
}

/// This node's VMs that `caller` may see.
pub fn visible_vms(s: &AppState, caller: &Caller) -> Vec<VmInfo> {
    let mut vms = s.vms.list();
    vms.retain(|vm| caller.may_see(vm.spec.tags.get("tenant").map(String::as_str)));
    vms
}

async fn define(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(mut spec): JsonBody<VmSpec>,
) -> ApiResult<(StatusCode, Json<VmInfo>)> {
    policy::tenant_spec(&caller, &mut spec, &s)?;
    crate::cluster::placement::admit_define(&s).await?;
    s.vms.define(spec).map(|i| (StatusCode::CREATED, Json(i)))
}

async fn show(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<VmInfo>> {
    Ok(Json(s.vms.get(&name)?.info()))
}

async fn edit(
    State(s): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
    JsonBody(mut spec): JsonBody<VmSpec>,
) -> ApiResult<Json<VmInfo>> {
    policy::tenant_spec(&caller, &mut spec, &s)?;
    s.vms.settled(&name).await?;
    s.vms.edit(&name, spec).await.map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UndefineArgs {
    /// `delete`: remove the VM's disk volumes too.
    #[serde(default)]
    volumes: Option<VolumesChoice>,
}

#[derive(Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum VolumesChoice {
    Keep,
    Delete,
}

async fn undefine(
    State(s): State<AppState>,
    Path(name): Path<String>,
    QueryArgs(args): QueryArgs<UndefineArgs>,
) -> ApiResult<StatusCode> {
    let delete = args.volumes == Some(VolumesChoice::Delete);
    s.vms.settled(&name).await?;
    s.vms.undefine(&name, delete).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn start(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<VmInfo>> {
    let slot = s.vms.settled(&name).await?;
    crate::cluster::placement::admit_start(&s, &slot.info().spec).await?;
    s.vms.start(&slot).await.map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShutdownArgs {
    /// Seconds the guest has before it is stopped hard.
    #[serde(default)]
    timeout: Option<u64>,
}

async fn shutdown(
    State(s): State<AppState>,
    Path(name): Path<String>,
    QueryArgs(args): QueryArgs<ShutdownArgs>,
) -> ApiResult<(StatusCode, Json<TaskInfo>)> {
    let slot = s.vms.settled(&name).await?;
    let timeout = match args.timeout {
        Some(0) | Some(86_401..) => {
            return Err(ApiError::bad_request("timeout: 1-86400 seconds"));
        }
        Some(t) => Duration::from_secs(t),
        None => s.vms.shutdown_timeout(),
    };
    let task = s.vms.shutdown(&slot, timeout, &s.tasks).await?;
    Ok((StatusCode::ACCEPTED, Json(task)))
}

async fn reboot(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<VmInfo>> {
    let slot = s.vms.settled(&name).await?;
    s.vms.reboot(&slot).await.map(Json)
}

async fn destroy(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<VmInfo>> {
    let slot = s.vms.settled(&name).await?;
    s.vms.destroy(&slot).await.map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogArgs {
    #[serde(default)]
    bytes: Option<u64>,
}

/// The console's last output, as the guest wrote it.
async fn log(
    State(s): State<AppState>,
    Path(name): Path<String>,
    QueryArgs(args): QueryArgs<LogArgs>,
) -> ApiResult<Response> {
    let slot = s.vms.get(&name)?;
    let max = args.bytes.unwrap_or(LOG_HALF).min(2 * LOG_HALF);
    let bytes = tokio::task::spawn_blocking(move || slot.console.tail(max))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("cannot read the console log: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// The serial console as a WebSocket: binary messages out (the guest's
/// output), binary or text messages in (keystrokes).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleArgs {
    /// Send the last this many bytes of the log first (at most 2 × LOG_HALF).
    #[serde(default)]
    replay: Option<u64>,
    /// The guard reads it (a browser's WebSocket cannot set headers).
    #[serde(default)]
    #[allow(dead_code)]
    token: Option<String>,
}

async fn console(
    State(s): State<AppState>,
    Path(name): Path<String>,
    QueryArgs(args): QueryArgs<ConsoleArgs>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let slot = s.vms.get(&name)?;
    let ws = ws.map_err(|e| {
        ApiError::bad_request(format!("the console is a WebSocket: {}", e.body_text()))
    })?;
    // The replay and the subscription are taken together (no byte lost or
    // repeated between them), before the upgrade so nothing is missed.
    let hub = slot.console.clone();
    let replay = args.replay.unwrap_or(0).min(2 * LOG_HALF);
    let (past, output) = tokio::task::spawn_blocking(move || hub.replay_and_subscribe(replay))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("cannot read the console log: {e}")))?;
    Ok(ws.on_upgrade(move |socket| relay(socket, slot, past, output)))
}

async fn relay(
    socket: WebSocket,
    slot: std::sync::Arc<Slot>,
    past: Vec<u8>,
    mut output: tokio::sync::broadcast::Receiver<bytes::Bytes>,
) {
    let (mut tx, mut rx) = socket.split();
    if !past.is_empty() && tx.send(Message::Binary(past.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            out = output.recv() => {
                let msg = match out {
                    Ok(bytes) => Message::Binary(bytes),
                    Err(RecvError::Lagged(n)) => Message::Binary(
                        format!("\r\n[vireo: this client fell behind; {n} chunks of output skipped]\r\n").into(),
                    ),
                    Err(RecvError::Closed) => break,
                };
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Binary(b))) => { slot.console.send_input(b); }
                Some(Ok(Message::Text(t))) => {
                    slot.console.send_input(bytes::Bytes::copy_from_slice(t.as_bytes()));
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
}
