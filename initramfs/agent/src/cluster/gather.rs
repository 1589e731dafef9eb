//! Lists of the whole cluster that only each node knows in full: its tasks
//! (a task runs on the node that does the work: a migration on the VM's
//! owner, a backup where the volume is) and its VMs' definitions and
//! states. Each online node's agent is asked for its own list, in
//! parallel, as the caller (auth/vouch.rs), so each node filters what a
//! tenant may see; a node that does not answer is named, not hidden.
//!
//! `GET /cluster/tasks` (the web UI's task list, `vireo task list --all`)
//! and `GET /vms?all=true` (the web UI's VM list) are built on it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use super::routes::{blocking, cluster};
use crate::auth::Caller;
use crate::cluster_types::{ClusterTasks, OnNode};
use crate::error::ApiResult;
use crate::server::AppState;
use crate::vm_types::VmInfo;

/// How long a node has to answer with its list: the web UI polls these
/// lists, and a node that hangs is named among those that did not answer.
const ASK_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The header of `GET /vms?all=true` naming the nodes that did not answer.
pub const UNANSWERED: &str = "x-vireo-unanswered";

/// Every online node's answer to `GET path`: this node's is `here`.
pub struct Gathered<T> {
    pub items: Vec<OnNode<T>>,
    pub unanswered: Vec<String>,
}

pub async fn from_every_node<T: DeserializeOwned + Send + 'static>(
    s: &AppState,
    caller: &Caller,
    authorization: Option<&HeaderValue>,
    path: &'static str,
    here: impl FnOnce() -> Vec<T>,
) -> ApiResult<Gathered<T>> {
    let c = cluster(s)?;
    let me = c.me();
    let nodes = blocking(move || c.nodes()).await?;
    let credentials = super::peer::vouched_headers(Some(caller), authorization);
    let mut out = Gathered {
        items: Vec::new(),
        unanswered: Vec::new(),
    };
    let mut asked = Vec::new();
    let mut here = Some(here);
    for node in nodes.into_iter().filter(|n| n.state == "online") {
        let name = node.name.clone();
        if node.id == me {
            let mine = here.take().map(|f| f()).unwrap_or_default();
            out.items.extend(on(&name, mine));
            continue;
        }
        let Some(api) = node.api else {
            out.unanswered.push(name);
            continue;
        };
        let (credentials, url) = (credentials.clone(), super::peer::node_url(&api, path));
        let ask = tokio::task::spawn_blocking(move || {
            let (status, _, body) =
                super::peer::send(ASK_WITHIN, "GET", &url, &credentials, Bytes::new(), me)?;
            match status {
                200 => serde_json::from_slice::<Vec<T>>(&body).map_err(|e| e.to_string()),
                _ => Err(format!("HTTP {status}")),
            }
        });
        asked.push((name, ask));
    }
    for (name, ask) in asked {
        match ask.await {
            Ok(Ok(items)) => out.items.extend(on(&name, items)),
            _ => out.unanswered.push(name),
        }
    }
    Ok(out)
}

fn on<T>(node: &str, items: Vec<T>) -> Vec<OnNode<T>> {
    let located = |item| OnNode {
        node: node.to_string(),
        item,
    };
    items.into_iter().map(located).collect()
}

/// `GET /cluster/tasks`, newest first.
pub(super) async fn tasks(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<Json<ClusterTasks>> {
    let local = s.tasks.clone();
    let auth = headers.get("authorization");
    let mut all = from_every_node(&s, &caller, auth, "/tasks", move || local.list()).await?;
    all.items.sort_by_key(|t| std::cmp::Reverse(t.item.started));
    Ok(Json(ClusterTasks {
        tasks: all.items,
        unanswered: all.unanswered,
    }))
}

/// `GET /vms?all=true`: every node's VMs the caller may see, by name; the
/// nodes that did not answer in `x-vireo-unanswered`.
pub async fn vms(
    s: &AppState,
    caller: &Caller,
    authorization: Option<&HeaderValue>,
) -> ApiResult<Response> {
    let (state, who) = (s.clone(), caller.clone());
    let here = move || crate::vms::routes::visible_vms(&state, &who);
    let mut all = from_every_node::<VmInfo>(s, caller, authorization, "/vms", here).await?;
    all.items
        .sort_by(|a, b| a.item.spec.name.cmp(&b.item.spec.name));
    let mut resp = Json(all.items).into_response();
    if let Ok(v) = HeaderValue::from_str(&all.unanswered.join(",")) {
        if !all.unanswered.is_empty() {
            resp.headers_mut().insert(UNANSWERED, v);
        }
    }
    Ok(resp)
}
