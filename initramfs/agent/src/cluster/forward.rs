//! Any node's API acts on any VM: a request under `/vms/NAME` for a VM this
//! node does not have, which the store says another node owns, is sent on
//! to that node's agent and its answer returned as it is. A forwarded
//! request carries `x-vireo-forwarded`, and one that does is never
//! forwarded again (no loops while the store changes owner). A VM defined
//! here may not take a name another node's VM has. A request for another
//! node's own things (its tasks: a migration forwarded to a VM's owner runs
//! there) names that node in `x-vireo-node` and is sent on to it; every
//! forwarded answer names the node that gave it in the same header. A VM's
//! console WebSocket is piped through to its owner (`console`). A download
//! ticket minted for another node's volume (auth/ticket.rs) sends its GET
//! on to that node. The node a request goes on to believes this node's
//! word on who the caller is (auth/vouch.rs; peer.rs makes the calls).
//! When the node serves with its cluster certificate, node-to-node calls
//! are mutual TLS: a forwarded request or a migration's `/cluster/incoming`
//! without a peer node's certificate is refused (403), and this node's
//! calls present its own and trust only the cluster CA.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Cluster;

use crate::auth::guard::TicketNode;
use crate::auth::tls::PeerNode;
use crate::error::ApiError;
use crate::server::AppState;

pub const FORWARDED: &str = "x-vireo-forwarded";
/// The node (name or id) a request is for; the node (id) an answer is from.
pub const NODE: &str = "x-vireo-node";
/// Largest body of a VM definition read here before it is sent on.
const MAX_BODY: usize = 1 << 20;

pub async fn forward(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(refused) = refuse_non_node(&req) {
        return refused;
    }
    let Some(cluster) = s.cluster.clone() else {
        return next.run(req).await;
    };
    if let Some(&TicketNode(node)) = req.extensions().get::<TicketNode>() {
        return to_node(cluster, node.to_string(), without_ticket(req), next).await;
    }
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

/// `req` without its spent `ticket=`: the node it goes on to knows its
/// caller from this node's word (auth/vouch.rs).
fn without_ticket(mut req: Request) -> Request {
    let uri = req.uri();
    let kept: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("ticket="))
        .collect();
    let target = match kept.is_empty() {
        true => uri.path().to_string(),
        false => format!("{}?{}", uri.path(), kept.join("&")),
    };
    if let Ok(stripped) = target.parse::<Uri>() {
        *req.uri_mut() = stripped;
    }
    req
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
    (super::peer::node_tls_on() && node_route && !from_peer).then(|| {
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

/// Sends `req` on to node `node`'s agent at `api`: a console WebSocket is
/// piped through, any other request proxied.
async fn send_on(api: &str, me: u32, node: u32, req: Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/vms/") && path.ends_with("/console") {
        return super::console::forward(api, me, node, req).await;
    }
    super::peer::proxy(api, me, node, req).await
}

#[cfg(test)]
mod tests {
    use super::{asked_node, vm_name, without_ticket, FORWARDED, NODE};
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

    #[test]
    fn a_forwarded_download_leaves_its_ticket_behind() {
        let stripped = |uri: &str| {
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            without_ticket(req).uri().to_string()
        };
        assert_eq!(
            stripped("/pools/local/volumes/a/data?format=raw&ticket=vireo-ticket-1"),
            "/pools/local/volumes/a/data?format=raw"
        );
        assert_eq!(
            stripped("/pools/local/volumes/a/data?ticket=x"),
            "/pools/local/volumes/a/data"
        );
    }
}
