//! The HTTP server: routes, JSON errors, graceful stop.

use std::future::Future;
use std::sync::Arc;

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::node;
use crate::selftest::{self, SelftestConfig};
use crate::types::{ErrorBody, Health, NodeInfo};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub selftest: Arc<SelftestConfig>,
    pub selftest_lock: Arc<tokio::sync::Mutex<()>>,
}

impl AppState {
    pub fn new(selftest: SelftestConfig) -> Self {
        AppState {
            selftest: Arc::new(selftest),
            selftest_lock: Arc::default(),
        }
    }
}

/// Every route, with JSON answers for unknown paths and wrong methods.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/node", get(node_info))
        .route("/selftest/vmm", post(selftest::vmm))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves until `stop` resolves, then finishes requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(stop)
        .await
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

async fn node_info() -> Json<NodeInfo> {
    // /proc reads are fast but blocking; keep them off the async workers.
    let info = tokio::task::spawn_blocking(node::collect).await;
    Json(info.unwrap_or_else(|_| node::collect()))
}

/// An error answer: `{"error": "...", "status": N}` with that status.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.1,
            status: self.0.as_u16(),
        };
        (self.0, Json(body)).into_response()
    }
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no such resource: {}", uri.path()),
    )
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed on {}", uri.path()),
    )
}
