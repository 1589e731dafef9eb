//! Any node's API acts on any VM: a request under `/vms/NAME` for a VM this
//! node does not have, which the store says another node owns, is sent on
//! to that node's agent and its answer returned as it is. A forwarded
//! request carries `x-vireo-forwarded`, and one that does is never
//! forwarded again (no loops while the store changes owner). A VM defined
//! here may not take a name another node's VM has. A request for another
//! node's own things (its tasks: a migration forwarded to a VM's owner runs
//! there) names that node in `x-vireo-node` and is sent on to it; every
//! forwarded answer names the node that gave it in the same header. A VM's
//! console WebSocket is piped through to its owner (`console`).
//! When the node serves with its cluster certificate, node-to-node calls
//! are mutual TLS: a forwarded request or a migration's `/cluster/incoming`
//! without a peer node's certificate is refused (403), and this node's
//! calls present its own and trust only the cluster CA.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Cluster;
use vireo_membership::join::pki::TlsDir;

use crate::auth::tls::PeerNode;
use crate::error::ApiError;
use crate::server::AppState;

pub const FORWARDED: &str = "x-vireo-forwarded";
/// The node (name or id) a request is for; the node (id) an answer is from.
pub const NODE: &str = "x-vireo-node";
/// Largest request body forwarded (VM definitions, not uploads).
const MAX_BODY: usize = 1 << 20;
/// A forwarded shutdown waits for the guest; give it as long as a local one.
const TIMEOUT: Duration = Duration::from_secs(600);

pub async fn forward(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(refused) = refuse_non_node(&req) {
        return refused;
    }
    let Some(cluster) = s.cluster.clone() else {
        return next.run(req).await;
    };
    if let Some(node) = asked_node(&req) {
        return to_node(cluster, node, req, next).await;
    }
    if req.method() == axum::http::Method::POST && req.uri().path() == "/vms" {
        return define_once(cluster, req, next).await;
    }
    let Some(name) = vm_name(req.uri().path()) else {
        return next.run(req).await;
    };
    if s.vms.get(&name).is_ok() || req.headers().contains_key(FORWARDED) {
        return next.run(req).await;
    }
    let me = cluster.me();
    let owner = tokio::task::spawn_blocking(move || cluster.owner_api(&name)).await;
    match owner {
        Ok(Some((owner, api))) => send_on(&api, me, owner, req).await,
        _ => next.run(req).await,
    }
}

/// The node a request names in `x-vireo-node`, unless it was forwarded already.
fn asked_node(req: &Request) -> Option<String> {
    if req.headers().contains_key(FORWARDED) {
        return None;
    }
    req.headers().get(NODE)?.to_str().ok().map(str::to_string)
}

/// A request for node `node`'s agent: sent on to it, or answered here when
/// it names this node.
async fn to_node(cluster: Cluster, node: String, req: Request, next: Next) -> Response {
    let me = cluster.me();
    let found = tokio::task::spawn_blocking(move || -> Result<Option<(u32, String)>, ApiError> {
        let id = cluster.node_id(&node)?;
        if id == me {
            return Ok(None);
        }
        let api = cluster.api_of(id).ok_or_else(|| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("node '{node}' has no agent that published its address"),
            )
        })?;
        Ok(Some((id, api)))
    })
    .await;
    match found {
        Ok(Ok(None)) => next.run(req).await,
        Ok(Ok(Some((id, api)))) => send_on(&api, me, id, req).await,
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

/// POST /vms: a name another node's VM has in the cluster is refused (409)
/// before the node defines anything; the request goes on unchanged otherwise.
async fn define_once(cluster: Cluster, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(format!("request body: {e}")).into_response(),
    };
    let name = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("name")?.as_str().map(str::to_string));
    if let Some(name) = name {
        let owner =
            tokio::task::spawn_blocking(move || cluster.other_owner(&name).map(|id| (name, id)))
                .await;
        if let Ok(Some((name, id))) = owner {
            return ApiError::conflict(format!(
                "a VM named '{name}' already exists in the cluster (on node {id})"
            ))
            .into_response();
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A node-to-node request from a client without a peer node's
/// certificate, when this node serves mutual TLS: its refusal.
fn refuse_non_node(req: &Request) -> Option<Response> {
    let node_route =
        req.headers().contains_key(FORWARDED) || req.uri().path().starts_with("/cluster/incoming");
    let from_peer = req.extensions().get::<PeerNode>().is_some();
    (NODE_TLS.get().is_some() && node_route && !from_peer).then(|| {
        ApiError(
            StatusCode::FORBIDDEN,
            "a node-to-node route: it needs a client certificate from the cluster CA".into(),
        )
        .into_response()
    })
}

/// `NAME` of `/vms/NAME` and `/vms/NAME/...`.
fn vm_name(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/vms/")?;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// What this node presents to other nodes' agents on its own behalf (a
/// migration's destination): the admin token every node of the cluster is
/// given (`--admin-token-file`, `vireo.admin_token=`), until node-to-node
/// mutual TLS replaces it (docs/security.md).
static NODE_CREDENTIAL: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();

pub fn set_node_credential(token: String) {
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        let _ = NODE_CREDENTIAL.set(value);
    }
}

/// The `authorization` header of this node's own calls, when it has one.
pub(super) fn node_authorization() -> Option<(&'static str, HeaderValue)> {
    NODE_CREDENTIAL.get().map(|v| ("authorization", v.clone()))
}

/// This node's TLS towards its peers, when it serves its cluster
/// certificate (auth/startup.rs).
static NODE_TLS: std::sync::OnceLock<ureq::tls::TlsConfig> = std::sync::OnceLock::new();

/// The same for WebSockets (consoles), as a rustls configuration.
static NODE_WS_TLS: std::sync::OnceLock<std::sync::Arc<tokio_rustls::rustls::ClientConfig>> =
    std::sync::OnceLock::new();

pub fn set_node_tls(
    config: ureq::tls::TlsConfig,
    websockets: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
) {
    let _ = NODE_TLS.set(config);
    let _ = NODE_WS_TLS.set(websockets);
}

/// The rustls configuration of this node's WebSockets to its peers, when
/// node-to-node calls are mutual TLS.
pub(super) fn node_ws_tls() -> Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>> {
    NODE_WS_TLS.get().cloned()
}

/// The node's TLS files, for its VMMs' migration channels (`tls://`,
/// mutual with the cluster CA); unset: migrations go over plain TCP.
static MIGRATION_TLS: std::sync::OnceLock<TlsDir> = std::sync::OnceLock::new();

/// Migrations over TLS with `dir`'s files: set when the agent serves its
/// cluster certificate and its VMMs are unjailed (a jailed VMM does not
/// see the node's TLS files; docs/security.md).
pub fn set_migration_tls(dir: TlsDir) {
    let _ = MIGRATION_TLS.set(dir);
}

/// `SCHEME://host:port` of a migration channel.
pub fn migration_url(hostport: &str) -> String {
    match MIGRATION_TLS.get() {
        Some(_) => format!("tls://{hostport}"),
        None => format!("tcp://{hostport}"),
    }
}

/// The VMM flags of the node's migration TLS files, if any.
pub fn migration_tls_args() -> Vec<String> {
    let Some(dir) = MIGRATION_TLS.get() else {
        return Vec::new();
    };
    let path = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    vec![
        "--tls-cert".into(),
        path(dir.node_cert()),
        "--tls-key".into(),
        path(dir.node_key()),
        "--tls-ca".into(),
        path(dir.ca_cert()),
    ]
}

/// Whether this node's calls to its peers are mutual TLS.
pub fn node_tls_on() -> bool {
    NODE_TLS.get().is_some()
}

/// The URL of `path` on the agent at `api` (`ADDR:PORT`).
pub(super) fn node_url(api: &str, path: &str) -> String {
    let scheme = if NODE_TLS.get().is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{api}{path}")
}

/// Sends `req` on to node `node`'s agent at `api`: a console WebSocket is
/// piped through, any other request proxied.
async fn send_on(api: &str, me: u32, node: u32, req: Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/vms/") && path.ends_with("/console") {
        return super::console::forward(api, me, node, req).await;
    }
    proxy(api, me, node, req).await
}

/// Request headers a forwarded request keeps.
const PASSED_HEADERS: [&str; 2] = ["content-type", "authorization"];

/// Sends `req` to node `node`'s agent at `api`; its answer, marked as `node`'s.
async fn proxy(api: &str, me: u32, node: u32, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.to_string());
    // The caller's own credentials go along: the owner checks them again.
    let headers: Vec<(&'static str, HeaderValue)> = PASSED_HEADERS
        .iter()
        .filter_map(|&h| Some((h, req.headers().get(h)?.clone())))
        .collect();
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(format!("request body: {e}")).into_response(),
    };
    let url = node_url(api, &target);
    let sent = tokio::task::spawn_blocking(move || send(&method, &url, &headers, body, me)).await;
    match sent {
        Ok(Ok((status, ct, bytes))) => {
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            if let Some(ct) = ct.and_then(|c| HeaderValue::from_str(&c).ok()) {
                resp.headers_mut().insert("content-type", ct);
            }
            resp.headers_mut().insert(NODE, HeaderValue::from(node));
            resp
        }
        Ok(Err(e)) => ApiError(
            StatusCode::BAD_GATEWAY,
            format!("the VM's node ({api}) did not answer: {e}"),
        )
        .into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

pub(super) type Answer = (u16, Option<String>, Vec<u8>);

pub(super) fn send(
    method: &str,
    url: &str,
    headers: &[(&'static str, HeaderValue)],
    body: Bytes,
    me: u32,
) -> Result<Answer, String> {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT));
    if let Some(tls) = NODE_TLS.get() {
        config = config.tls_config(tls.clone());
    }
    let agent: ureq::Agent = config.build().into();
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header(FORWARDED, me.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, value.as_bytes());
    }
    let request = builder.body(body.to_vec()).map_err(|e| e.to_string())?;
    let mut resp = agent.run(request).map_err(|e| e.to_string())?;
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|c| c.to_str().ok())
        .map(str::to_string);
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok((resp.status().as_u16(), ct, bytes))
}

#[cfg(test)]
mod tests {
    use super::{asked_node, vm_name, FORWARDED, NODE};
    use axum::body::Body;
    use axum::extract::Request;

    #[test]
    fn the_node_a_request_names_unless_forwarded_already() {
        let req = |headers: &[(&str, &str)]| {
            let mut b = Request::builder().uri("/tasks/task-3");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(Body::empty()).unwrap()
        };
        assert_eq!(
            asked_node(&req(&[(NODE, "node2")])).as_deref(),
            Some("node2")
        );
        assert_eq!(asked_node(&req(&[])), None);
        assert_eq!(asked_node(&req(&[(NODE, "2"), (FORWARDED, "1")])), None);
    }

    #[test]
    fn vm_names_of_paths() {
        assert_eq!(vm_name("/vms/web").as_deref(), Some("web"));
        assert_eq!(vm_name("/vms/web/start").as_deref(), Some("web"));
        assert_eq!(vm_name("/vms"), None);
        assert_eq!(vm_name("/vms/"), None);
        assert_eq!(vm_name("/pools/x"), None);
        assert_eq!(vm_name("/vms/web/console").as_deref(), Some("web"));
    }
}
