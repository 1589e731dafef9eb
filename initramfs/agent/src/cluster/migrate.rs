//! Live migration of a VM to another node (docs/cluster.md, "Live
//! migration"). The owner's agent asks the destination's agent for a VMM
//! waiting with `--incoming` (`POST /cluster/incoming`), has its own VMM
//! send the VM there, and on success moves the VM's owner in the store
//! (one compare-and-set write) before letting go of it; on failure it asks
//! the destination to drop its half VM (`DELETE /cluster/incoming/NAME`).

use std::net::TcpListener;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::peer::send;
use super::{Cluster, VmRecord};
use crate::error::{ApiError, ApiResult};
use crate::server::AppState;
use crate::tasks::{TaskCtx, TaskInfo};
use crate::vm_types::{VmSpec, VmState};
use crate::vms::{MigrationOut, Vms};

/// The downtime the source's VMM aims for unless told otherwise.
const DEFAULT_MAX_DOWNTIME_MS: u64 = 300;

/// `POST /vms/{name}/migrate`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateArgs {
    /// The destination: a node's name or id.
    node: String,
    /// `shared` (every node sees the disks) or `copy`.
    #[serde(default = "shared")]
    disks: String,
    #[serde(default)]
    max_downtime_ms: Option<u64>,
    /// A cap on the transfer rate in Mbit/s (none by default).
    #[serde(default)]
    bandwidth_mbps: Option<u64>,
}

fn shared() -> String {
    "shared".into()
}

/// `POST /cluster/incoming`: the VM a source is about to send.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingArgs {
    uuid: String,
    spec: VmSpec,
    /// The source node: should it leave the view before the VM arrives,
    /// the waiting VMM and the definition go.
    #[serde(default)]
    source: Option<u32>,
}

/// A node another one can migrate to.
struct Destination {
    id: u32,
    name: String,
    /// Its agent, `ADDR:PORT`.
    api: String,
}

pub async fn migrate(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(args): Json<MigrateArgs>,
) -> ApiResult<(StatusCode, Json<TaskInfo>)> {
    let cluster = super::routes::cluster(&s)?;
    let slot = s.vms.get(&name)?;
    if !matches!(args.disks.as_str(), "shared" | "copy") {
        return Err(ApiError::bad_request("disks: 'shared' or 'copy'"));
    }
    if slot.info().pid.is_none() {
        return Err(ApiError::conflict(format!(
            "VM '{name}' is not running; a stopped VM moves by defining it elsewhere"
        )));
    }
    if s.tasks.running("vm-migrate", &name) {
        return Err(ApiError::conflict(format!(
            "VM '{name}' is already being migrated"
        )));
    }
    let (c, spec) = (cluster.clone(), slot.info().spec);
    let node = args.node.clone();
    let dest = super::routes::blocking(move || c.destination(&node, &spec)).await?;
    let out = MigrationOut {
        url: String::new(),
        disks: args.disks,
        max_downtime_ms: args.max_downtime_ms.unwrap_or(DEFAULT_MAX_DOWNTIME_MS),
        bandwidth_mbps: args.bandwidth_mbps.unwrap_or(0),
    };
    let (vms, target) = (s.vms.clone(), name.clone());
    let task = s
        .tasks
        .spawn("vm-migrate", &target, "bytes", move |ctx| async move {
            run(cluster, vms, name, dest, out, ctx).await
        });
    Ok((StatusCode::ACCEPTED, Json(task)))
}

async fn run(
    cluster: Cluster,
    vms: Vms,
    name: String,
    dest: Destination,
    mut out: MigrationOut,
    ctx: TaskCtx,
) -> Result<Value, String> {
    let slot = vms.get(&name).map_err(|e| e.1)?;
    let info = slot.info();
    let asked = IncomingArgs {
        uuid: info.uuid.clone(),
        spec: info.spec.clone(),
        source: Some(cluster.me()),
    };
    let body = serde_json::to_vec(&asked).map_err(|e| e.to_string())?;
    let answer = call(&cluster, "POST", &dest.api, "/cluster/incoming", body).await;
    let port = answer
        .and_then(|v| {
            v["port"]
                .as_u64()
                .ok_or_else(|| "no port in the answer".into())
        })
        .map_err(|e| format!("node '{}' cannot take the VM: {e}", dest.name))?;
    let host = dest.api.rsplit_once(':').map_or("", |(h, _)| h);
    out.url = super::peer::migration_url(&format!("{host}:{port}"));
    let record = VmRecord {
        uuid: info.uuid,
        spec: info.spec,
    };
    let (c, to) = (cluster.clone(), dest.id);
    let handed_over = async move {
        let vm = record.spec.name.clone();
        let moved = tokio::task::spawn_blocking(move || c.move_owner(&record, to)).await;
        if let Err(e) = moved.map_err(|e| e.to_string()).and_then(|r| r) {
            // The destination runs the VM: it publishes it as its own once
            // this node has let go of it (publish.rs), so this heals.
            eprintln!("vireo-agent: '{vm}' moved, but the store says: {e}");
        }
    };
    match vms.migrate_out(&slot, out, &ctx, handed_over).await {
        Ok(status) => Ok(json!({
            "node": dest.name,
            "downtime_ms": status["downtime_ms"],
            "total_ms": status["total_ms"],
            "bytes_sent": status["bytes_sent"],
            "passes": status["pass"],
        })),
        Err(e) => {
            let path = format!("/cluster/incoming/{name}");
            if let Err(d) = call(&cluster, "DELETE", &dest.api, &path, Vec::new()).await {
                eprintln!("vireo-agent: dropping '{name}' on '{}': {d}", dest.name);
            }
            Err(e)
        }
    }
}

/// `METHOD path` on a node's agent; its JSON answer, or its error.
pub(super) async fn call(
    cluster: &Cluster,
    method: &str,
    api: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Value, String> {
    let (method, url, me) = (
        method.to_string(),
        super::peer::node_url(api, path),
        cluster.me(),
    );
    let json = axum::http::HeaderValue::from_static("application/json");
    let headers: Vec<_> = std::iter::once(("content-type", json))
        .chain(super::peer::node_authorization())
        .collect();
    let sent = tokio::task::spawn_blocking(move || {
        send(
            super::peer::TIMEOUT,
            &method,
            &url,
            &headers,
            Bytes::from(body),
            me,
        )
    })
    .await
    .map_err(|e| e.to_string())??;
    let (status, _, bytes) = sent;
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    match status {
        200..=299 => Ok(value),
        _ => Err(value["error"]
            .as_str()
            .map_or_else(|| format!("HTTP {status}"), str::to_string)),
    }
}

/// `POST /cluster/incoming` (destination): defines the VM and starts a
/// VMM waiting for it on a free port, which the answer names.
pub async fn incoming(
    State(s): State<AppState>,
    Json(args): Json<IncomingArgs>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let cluster = super::routes::cluster(&s)?;
    super::placement::admit_define(&s).await?;
    let port = free_port()?;
    let url = super::peer::migration_url(&format!("0.0.0.0:{port}"));
    let info = s.vms.incoming(args.spec, args.uuid.clone(), &url).await?;
    let (vms, name) = (s.vms.clone(), info.spec.name.clone());
    tokio::spawn(watch_incoming(cluster, vms, name, args.uuid, args.source));
    Ok((
        StatusCode::CREATED,
        Json(json!({"port": port, "vm": info.spec.name})),
    ))
}

/// Destination: until the VM runs here, a source gone from the view for
/// the fencing bound (its node died and was reset) means the VM will not
/// come: the half VM goes. A source whose agent alone went away (killed,
/// restarted) leaves the view too, but its VMM goes on sending: the
/// migration ends on its own well within the bound, either way. Once it
/// runs here, this node writes itself as the owner if the source could not
/// (it died at the hand-over): the same compare-and-set as the source's,
/// so one of the two goes through and no survivor restarts the VM.
async fn watch_incoming(
    cluster: Cluster,
    vms: Vms,
    name: String,
    uuid: String,
    source: Option<u32>,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(slot) = vms.get(&name) else { return };
        let info = slot.info();
        if info.uuid != uuid {
            return;
        }
        if info.state == VmState::Running {
            let record = VmRecord {
                uuid: info.uuid,
                spec: info.spec,
            };
            let c = cluster.clone();
            let claimed =
                tokio::task::spawn_blocking(move || c.claim_landed(&record, source)).await;
            if let Ok(Err(e)) = claimed {
                eprintln!("vireo-agent: '{name}' migrated here, but the store says: {e}");
            }
            return;
        }
        let Some(source) = source else { continue };
        let status = cluster.store().status();
        if Cluster::quorate(&status) && cluster.gone_past_bound(source) {
            eprintln!("vireo-agent: '{name}': its source node {source} is gone; dropping it here");
            if let Err(e) = vms.abort_incoming(&name).await {
                eprintln!("vireo-agent: dropping '{name}': {}", e.1);
            }
            return;
        }
    }
}

/// `DELETE /cluster/incoming/{name}` (destination): the source gave up.
pub async fn abort(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    super::routes::cluster(&s)?;
    s.vms.abort_incoming(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A port nothing listens on now; the VMM binds it a moment later (a
/// race with another process is possible and ends in a clear error).
fn free_port() -> Result<u16, ApiError> {
    TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ApiError::internal(format!("no free port: {e}")))
}

impl Cluster {
    /// The node `node` (its name or id) as a destination: another node,
    /// online, with an agent, that can take the VM (placement.rs).
    fn destination(&self, node: &str, spec: &VmSpec) -> Result<Destination, ApiError> {
        let records = self.records()?;
        let (id, rec) = records
            .into_iter()
            .find(|(id, r)| r.name == node || id.to_string() == node)
            .ok_or_else(|| ApiError::not_found(format!("no node named '{node}' in the cluster")))?;
        if id == self.me() {
            return Err(ApiError::bad_request(format!(
                "the VM already runs on '{node}'"
            )));
        }
        if !Cluster::view_nodes(&self.store().status()).contains(&id) {
            return Err(ApiError::unavailable(format!("node '{node}' is offline")));
        }
        // Its pools and networks are checked by the destination itself
        // when asked to take the VM (what it last published may lag a
        // definition made a moment ago).
        let mut known = rec.clone();
        (known.pools, known.networks) = (None, None);
        if let Some(why) = self.unfit(id, &known, spec, &self.drained()?) {
            return Err(ApiError::conflict(format!("cannot migrate there: {why}")));
        }
        Ok(Destination {
            id,
            name: rec.name,
            api: rec.api,
        })
    }

    /// Whether node `id` has been missing from the view for the fencing
    /// bound (as this node's HA step times it).
    fn gone_past_bound(&self, id: u32) -> bool {
        let since = self
            .inner
            .missing
            .lock()
            .ok()
            .and_then(|m| m.get(&id).copied());
        since.is_some_and(|t| t.elapsed() >= self.fence_bound())
    }

    /// The VM landed here: `vm/NAME` names this node unless it does
    /// already (the source wrote it) or names another node than `source`.
    fn claim_landed(&self, record: &VmRecord, source: Option<u32>) -> Result<(), String> {
        let key = format!("vm/{}", record.spec.name);
        let Some(entry) = self.store().get(&key).map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let stored: Option<VmRecord> = serde_json::from_str(&entry.value).ok();
        if entry.owner == Some(self.me())
            || source.is_some_and(|s| entry.owner != Some(s))
            || stored.is_none_or(|r| r.uuid != record.uuid)
        {
            return Ok(());
        }
        let text = serde_json::to_string(record).map_err(|e| e.to_string())?;
        match self
            .store()
            .put_if(&key, &text, Some(self.me()), entry.version)
        {
            Ok(_) => Ok(()),
            // The source's own write came first.
            Err(_) if self.other_owner(&record.spec.name).is_none() => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// `vm/NAME` now names `to` as the owner: one compare-and-set write on
    /// the version this node owns.
    fn move_owner(&self, record: &VmRecord, to: u32) -> Result<(), String> {
        let key = format!("vm/{}", record.spec.name);
        let entry = self
            .store()
            .get(&key)
            .map_err(|e| e.to_string())?
            .ok_or("the VM has no record")?;
        if entry.owner != Some(self.me()) {
            return Err(format!(
                "the record's owner is {:?}, not this node",
                entry.owner
            ));
        }
        let text = serde_json::to_string(record).map_err(|e| e.to_string())?;
        self.store()
            .put_if(&key, &text, Some(to), entry.version)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
