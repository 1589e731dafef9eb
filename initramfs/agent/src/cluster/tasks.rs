//! `GET /cluster/tasks`: the tasks of every node in one list. A task runs
//! on the node that does the work (a migration on the VM's owner, a backup
//! where the volume is), so the web UI's task list and `vireo task list
//! --all` ask each online node's agent for its own, in parallel, as the
//! caller (auth/vouch.rs); a node that does not answer is named, not hidden.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;

use super::routes::{blocking, cluster};
use crate::auth::Caller;
use crate::cluster_types::{ClusterTask, ClusterTasks};
use crate::error::ApiResult;
use crate::server::AppState;
use crate::types::TaskInfo;

pub(super) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<Json<ClusterTasks>> {
    let c = cluster(&s)?;
    let me = c.me();
    let nodes = blocking(move || c.nodes()).await?;
    let credentials = super::peer::vouched_headers(Some(&caller), headers.get("authorization"));
    let mut asked = Vec::new();
    let mut out = ClusterTasks {
        tasks: Vec::new(),
        unanswered: Vec::new(),
    };
    for node in nodes.into_iter().filter(|n| n.state == "online") {
        if node.id == me {
            let here = s.tasks.list().into_iter();
            out.tasks.extend(here.map(|task| ClusterTask {
                node: node.name.clone(),
                task,
            }));
            continue;
        }
        let Some(api) = node.api.clone() else {
            out.unanswered.push(node.name);
            continue;
        };
        let credentials = credentials.clone();
        let url = super::peer::node_url(&api, "/tasks");
        let ask = tokio::task::spawn_blocking(move || {
            let (status, _, body) =
                super::peer::send("GET", &url, &credentials, Default::default(), me)?;
            match status {
                200 => serde_json::from_slice::<Vec<TaskInfo>>(&body).map_err(|e| e.to_string()),
                _ => Err(format!("HTTP {status}")),
            }
        });
        asked.push((node.name, ask));
    }
    for (name, ask) in asked {
        match ask.await {
            Ok(Ok(tasks)) => out.tasks.extend(tasks.into_iter().map(|task| ClusterTask {
                node: name.clone(),
                task,
            })),
            _ => out.unanswered.push(name),
        }
    }
    out.tasks.sort_by_key(|t| std::cmp::Reverse(t.task.started));
    Ok(Json(out))
}
