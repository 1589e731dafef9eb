//! The storage routes (docs/api/agent.yaml, "storage"): pools, volumes,
//! snapshots, clones, templates, uploads and downloads, backups. Handlers
//! are thin: file work runs on blocking threads, long work as tasks.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};

use super::backup::BackupEntry;
use super::{blocking, Storage, VolumeFormat, VolumeRef};
use crate::auth::{policy, Caller};
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::server::AppState;
use crate::storage_api::{
    BackupManifest, BackupRequest, CloneTemplate, CloneVolume, ConvertVolume, CreateSnapshot,
    CreateVolume, MakeTemplate, PoolDef, PoolInfo, ResizeVolume, RestoreRequest, SnapshotInfo,
    VolumeInfo,
};
use crate::tasks::{TaskCtx, TaskInfo};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/pools", get(list_pools).post(define_pool))
        .route("/pools/{pool}", get(show_pool).delete(remove_pool))
        .route(
            "/pools/{pool}/volumes",
            get(list_volumes).post(create_volume),
        )
        .route(
            "/pools/{pool}/volumes/{volume}",
            get(show_volume).delete(delete_volume),
        )
        .route("/pools/{pool}/volumes/{volume}/resize", post(resize))
        .route("/pools/{pool}/volumes/{volume}/convert", post(convert))
        .route("/pools/{pool}/volumes/{volume}/clone", post(clone_volume))
        .route(
            "/pools/{pool}/volumes/{volume}/template",
            put(mark_template).delete(unmark_template),
        )
        .route(
            "/pools/{pool}/volumes/{volume}/data",
            get(download).put(upload),
        )
        .route(
            "/pools/{pool}/volumes/{volume}/snapshots",
            get(list_snapshots).post(snapshot),
        )
        .route(
            "/pools/{pool}/volumes/{volume}/snapshots/{snap}",
            axum::routing::delete(delete_snapshot),
        )
        .route(
            "/pools/{pool}/volumes/{volume}/snapshots/{snap}/revert",
            post(revert),
        )
        .route("/backups", post(backup))
        .route("/pools/{pool}/backups", get(list_backups))
        .route(
            "/pools/{pool}/backups/{id}",
            get(show_backup).delete(delete_backup),
        )
        .route("/pools/{pool}/backups/{id}/restore", post(restore))
        .route("/pools/{pool}/backups/{id}/verify", post(verify))
        .route("/templates", post(make_template))
        .route("/templates/{vm}/clone", post(clone_template))
}

/// `POOL/VOLUME` from the path, with a 400 that says what is wrong.
fn volume(pool: &str, name: &str) -> ApiResult<VolumeRef> {
    format!("{pool}/{name}")
        .parse()
        .map_err(ApiError::bad_request)
}

/// Starts `run(job)` as a task on a blocking thread; answers 202.
fn start<J: Send + 'static>(
    s: &AppState,
    kind: &str,
    target: &str,
    job: J,
    run: fn(J, &TaskCtx) -> Result<serde_json::Value, String>,
) -> (StatusCode, Json<TaskInfo>) {
    let info = s.tasks.spawn(kind, target, "bytes", move |ctx| async move {
        tokio::task::spawn_blocking(move || run(job, &ctx))
            .await
            .map_err(|e| format!("the task's thread failed: {e}"))?
    });
    (StatusCode::ACCEPTED, Json(info))
}

/// How long a pool may take to say whether it is usable (a dead NFS
/// server makes stat wait for the mount's timeouts).
const POOL_PROBE: Duration = Duration::from_secs(5);

async fn probe_pool(storage: Storage, def: PoolDef) -> PoolInfo {
    let (st, d) = (storage.clone(), def.clone());
    match tokio::time::timeout(
        POOL_PROBE,
        tokio::task::spawn_blocking(move || st.pool_info(d)),
    )
    .await
    {
        Ok(Ok(info)) => info,
        _ => PoolInfo {
            dir: storage.pool_dir(&def.name).unwrap_or_default(),
            def,
            available: false,
            error: Some(format!("not answering within {} s", POOL_PROBE.as_secs())),
            total_bytes: None,
            free_bytes: None,
        },
    }
}

async fn list_pools(State(s): State<AppState>) -> Json<Vec<PoolInfo>> {
    let mut out = Vec::new();
    for def in s.storage.pools() {
        out.push(probe_pool(s.storage.clone(), def).await);
    }
    Json(out)
}

async fn show_pool(
    State(s): State<AppState>,
    Path(pool): Path<String>,
) -> ApiResult<Json<PoolInfo>> {
    let def = s.storage.pool(&pool)?;
    Ok(Json(probe_pool(s.storage.clone(), def).await))
}

async fn define_pool(
    State(s): State<AppState>,
    JsonBody(def): JsonBody<PoolDef>,
) -> ApiResult<(StatusCode, Json<PoolInfo>)> {
    let st = s.storage.clone();
    let info = blocking(move || st.define_pool(def)).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

async fn remove_pool(State(s): State<AppState>, Path(pool): Path<String>) -> ApiResult<StatusCode> {
    let st = s.storage.clone();
    blocking(move || st.remove_pool(&pool)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_volumes(
    State(s): State<AppState>,
    Path(pool): Path<String>,
    caller: Caller,
) -> ApiResult<Json<Vec<VolumeInfo>>> {
    let st = s.storage.clone();
    let mut all = blocking(move || st.list_volumes(&pool)).await?;
    all.retain(|v| caller.may_see(v.tenant.as_deref()));
    Ok(Json(all))
}

async fn create_volume(
    State(s): State<AppState>,
    Path(pool): Path<String>,
    caller: Caller,
    JsonBody(mut req): JsonBody<CreateVolume>,
) -> ApiResult<(StatusCode, Json<VolumeInfo>)> {
    if let Some(tenant) = caller.only_tenant() {
        if req.tenant.get_or_insert_with(|| tenant.into()) != tenant {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("tenant '{tenant}' creates volumes of its own only"),
            ));
        }
    }
    let st = s.storage.clone();
    let info = blocking(move || st.create_volume(&pool, req)).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

async fn show_volume(
    State(s): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
) -> ApiResult<Json<VolumeInfo>> {
    let (st, v) = (s.storage.clone(), volume(&pool, &name)?);
    blocking(move || st.volume_info(&v)).await.map(Json)
}

async fn delete_volume(
    State(s): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (st, v) = (s.storage.clone(), volume(&pool, &name)?);
    blocking(move || st.delete_volume(&v)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn resize(
    State(s): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
    JsonBody(req): JsonBody<ResizeVolume>,
) -> ApiResult<Json<VolumeInfo>> {
    let (st, v) = (s.storage.clone(), volume(&pool, &name)?);
    blocking(move || st.resize_volume(&v, req.size))
        .await
        .map(Json)
}

async fn convert(
    State(s): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
    JsonBody(req): JsonBody<ConvertVolume>,
) -> ApiResult<(StatusCode, Json<TaskInfo>)> {
    let (st, v) = (s.storage.clone(), volume(&pool, &name)?);
    let target = v.to_string();
    let job = blocking(move || st.prepare_convert(&v, req.format)).await?;
    Ok(start(&s, "volume-convert", &target, job, |j, ctx| {
        j.run(ctx)
    }))
}

async fn clone_volume(
    State(s): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
    JsonBody(req): JsonBody<CloneVolume>,
) -> ApiResult<Response> {
    use axum::response::IntoResponse;
    let (st, v) = (s.storage.clone(), volume(&pool, &name)?);
    if req.linked {
        let info = blocking(move || st.linked_clone(&v, &req)).await?;
        return Ok((StatusCode::CREATED, Json(info)).into_response());
    }
    let target = v.to_string();
    let job = blocking(move || st.prepare_full_clone(&v, &req)).await?;
    Ok(start(&s, "volume-clone", &target, job, |j, ctx| j.run(ctx)).into_response())
}

async fn mark_template(
    State(s): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
) -> ApiResult<Json<VolumeInfo>> {
    let (st, v) = (s.storage.clone(), volume(&pool, &name)?);
    blocking(move || st.set_template(&v, true)).await.map(Json)
}

async fn unmark_template(
    State(s): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
) -> ApiResult<Json<VolumeInfo>> {
    let (st, v) = (s.storage.clone(), volume(&pool, &name)?);
    blocking(move || st.set_template(&v, false)).await.map(Json)
}

/// `format=raw|qcow2` from a query string (unknown keys are errors; the
/// guard's credentials, `token=` and `ticket=`, are not this route's).
fn format_query(query: Option<String>) -> ApiResult<Option<VolumeFormat>> {
    let mut format = None;
    let credential = |p: &str| p.starts_with("token=") || p.starts_with("ticket=");
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !credential(p))
    {
        format = match pair {
            "format=raw" => Some(VolumeFormat::Raw),
            "format=qcow2" => Some(VolumeFormat::Qcow2),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query '{other}' (format=raw or format=qcow2)"
                )))
            }
        };
    }
    Ok(format)
}

async fn download(
    State(s): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let raw = match format_query(query)? {
        None => false,
        Some(VolumeFormat::Raw) => true,
        Some(VolumeFormat::Qcow2) => {
            return Err(ApiError::bad_request(
                "downloads are the stored file, or format=raw",
            ))
        }
    };
    s.storage.download(volume(&pool, &name)?, raw).await
}

async fn upload(
    State(s): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Body,
) -> ApiResult<Response> {
    let format = format_query(query)?;
    s.storage.upload(volume(&pool, &name)?, format, body).await
}

async fn list_snapshots(
    State(s): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<SnapshotInfo>>> {
    let (st, v) = (s.storage.clone(), volume(&pool, &name)?);
    blocking(move || st.volume_info(&v))
        .await
        .map(|i| Json(i.snapshots))
}

async fn snapshot(
    State(s): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
    JsonBody(req): JsonBody<CreateSnapshot>,
) -> ApiResult<(StatusCode, Json<VolumeInfo>)> {
    let (st, v) = (s.storage.clone(), volume(&pool, &name)?);
    let info = blocking(move || st.create_snapshot(&v, &req.name)).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

async fn revert(
    State(s): State<AppState>,
    Path((pool, name, snap)): Path<(String, String, String)>,
) -> ApiResult<Json<VolumeInfo>> {
    let (st, v) = (s.storage.clone(), volume(&pool, &name)?);
    blocking(move || st.revert_snapshot(&v, &snap))
        .await
        .map(Json)
}

async fn delete_snapshot(
    State(s): State<AppState>,
    Path((pool, name, snap)): Path<(String, String, String)>,
) -> ApiResult<(StatusCode, Json<TaskInfo>)> {
    let (st, v) = (s.storage.clone(), volume(&pool, &name)?);
    let target = format!("{v}@{snap}");
    let job = blocking(move || st.prepare_delete_snapshot(&v, &snap)).await?;
    Ok(start(&s, "snapshot-delete", &target, job, |j, ctx| {
        j.run(ctx)
    }))
}

async fn backup(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<BackupRequest>,
) -> ApiResult<(StatusCode, Json<TaskInfo>)> {
    if !caller.may_see(policy::vm_tenant(&s, &req.vm).as_deref()) {
        let why = format!("VM '{}' is not this tenant's", req.vm);
        return Err(ApiError(StatusCode::FORBIDDEN, why));
    }
    let st = s.storage.clone();
    let target = req.vm.clone();
    let job = blocking(move || st.prepare_backup(req)).await?;
    Ok(start(&s, "backup", &target, job, |j, ctx| j.run(ctx)))
}

/// `vm=NAME` from a query string.
fn vm_query(query: Option<String>) -> ApiResult<Option<String>> {
    match query.as_deref() {
        None | Some("") => Ok(None),
        Some(q) => match q.strip_prefix("vm=") {
            Some(vm) if super::valid_name(vm) => Ok(Some(vm.to_string())),
            _ => Err(ApiError::bad_request(format!(
                "unknown query '{q}' (vm=NAME)"
            ))),
        },
    }
}

async fn list_backups(
    State(s): State<AppState>,
    Path(pool): Path<String>,
    RawQuery(query): RawQuery,
    caller: Caller,
) -> ApiResult<Json<Vec<BackupEntry>>> {
    let (st, vm) = (s.storage.clone(), vm_query(query)?);
    let mut all = blocking(move || st.list_backups(&pool, vm.as_deref())).await?;
    all.retain(|b| {
        let tag = b
            .manifest
            .as_ref()
            .map(|m| &m.definition["spec"]["tags"]["tenant"]);
        caller.may_see(tag.and_then(|t| t.as_str()))
    });
    Ok(Json(all))
}

async fn show_backup(
    State(s): State<AppState>,
    Path((pool, id)): Path<(String, String)>,
) -> ApiResult<Json<BackupManifest>> {
    let st = s.storage.clone();
    blocking(move || {
        let dir = st.backup_dir(&pool, &id)?;
        super::backup::read_manifest(&dir)
            .map_err(|why| ApiError::bad_request(format!("backup '{id}': {why}")))
    })
    .await
    .map(Json)
}

async fn delete_backup(
    State(s): State<AppState>,
    Path((pool, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let st = s.storage.clone();
    blocking(move || st.delete_backup(&pool, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restore(
    State(s): State<AppState>,
    Path((pool, id)): Path<(String, String)>,
    JsonBody(req): JsonBody<RestoreRequest>,
) -> ApiResult<(StatusCode, Json<TaskInfo>)> {
    let st = s.storage.clone();
    let target = format!("{pool}/{id}");
    let job = blocking(move || st.prepare_restore(&pool, &id, req)).await?;
    Ok(start(&s, "restore", &target, job, |j, ctx| j.run(ctx)))
}

async fn verify(
    State(s): State<AppState>,
    Path((pool, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<TaskInfo>)> {
    let st = s.storage.clone();
    let target = format!("{pool}/{id}");
    let job = blocking(move || st.prepare_verify(&pool, &id)).await?;
    Ok(start(&s, "backup-verify", &target, job, |j, ctx| {
        j.run(ctx)
    }))
}

async fn make_template(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<MakeTemplate>,
) -> ApiResult<Json<serde_json::Value>> {
    let st = s.storage.clone();
    blocking(move || st.make_template(&req.vm)).await.map(Json)
}

async fn clone_template(
    State(s): State<AppState>,
    Path(vm): Path<String>,
    JsonBody(req): JsonBody<CloneTemplate>,
) -> ApiResult<(StatusCode, Json<TaskInfo>)> {
    let st = s.storage.clone();
    let target = vm.clone();
    let job = blocking(move || st.prepare_template_clone(&vm, req)).await?;
    Ok(start(&s, "template-clone", &target, job, |j, ctx| {
        j.run(ctx)
    }))
}
