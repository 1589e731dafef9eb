//! `GET /metrics` (Prometheus), `GET /node/history`, `GET /vms/{name}/history`.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::History;
use crate::error::ApiResult;
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(prometheus))
        .route("/node/history", get(node_history))
        .route("/vms/{name}/history", get(vm_history))
}

async fn prometheus(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.prometheus_text(),
    )
}

async fn node_history(State(s): State<AppState>) -> Json<History> {
    Json(s.metrics.node_history())
}

async fn vm_history(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<History>> {
    let vm = s.vms.get(&name)?.info();
    Ok(Json(s.metrics.vm_history(&vm)))
}
