//! `GET /tasks`, `GET /tasks/{id}`, `DELETE /tasks/{id}` (cancel).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use super::TaskInfo;
use crate::error::{ApiError, ApiResult};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tasks", get(list))
        .route("/tasks/{id}", get(show).delete(cancel))
}

async fn list(State(s): State<AppState>) -> Json<Vec<TaskInfo>> {
    Json(s.tasks.list())
}

async fn show(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<TaskInfo>> {
    s.tasks
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no task {id}")))
}

async fn cancel(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    match s.tasks.get(&id) {
        None => Err(ApiError::not_found(format!("no task {id}"))),
        Some(_) if s.tasks.cancel(&id) => Ok(StatusCode::ACCEPTED),
        Some(t) => Err(ApiError::conflict(format!(
            "task {id} is {:?} already",
            t.state
        ))),
    }
}
