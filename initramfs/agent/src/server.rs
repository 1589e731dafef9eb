//! The HTTP server: routes, JSON errors, graceful stop.

use std::future::Future;
use std::sync::Arc;

use axum::http::{StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::auth::Auth;
pub use crate::error::ApiError;
use crate::networks::Networks;
use crate::node;
use crate::selftest::{self, SelftestConfig};
use crate::storage::Storage;
use crate::store::Paths;
use crate::tasks::{self, Tasks};
use crate::types::{Health, NodeInfo};
use crate::vms::jailed::JailedLauncher;
use crate::vms::launcher::DirectLauncher;
use crate::vms::{Vms, VmsConfig};

/// What the handlers share. Each concern (VMs, storage, networks) keeps
/// its own manager here; routes stay thin and call into it.
#[derive(Clone)]
pub struct AppState {
    pub selftest: Arc<SelftestConfig>,
    pub selftest_lock: Arc<tokio::sync::Mutex<()>>,
    /// Where state and runtime files live.
    pub paths: Arc<Paths>,
    pub tasks: Tasks,
    pub storage: Storage,
    pub vms: Vms,
    /// This node's cluster side, when it is in a cluster.
    pub cluster: Option<crate::cluster::Cluster>,
    pub networks: Networks,
    /// CPU, memory, disk and network history (the UI's graphs, /metrics).
    pub metrics: crate::metrics::Metrics,
    /// Users, tokens and sessions (`auth`).
    pub auth: Auth,
}

/// The VM manager's settings that the command line can change.
#[derive(Clone, Debug, Default)]
pub struct VmOptions {
    /// Memory VMs may use (MiB), instead of MemTotal less a reserve.
    pub memory_limit_mib: Option<u64>,
    /// Seconds a graceful shutdown waits by default (60 if None).
    pub shutdown_timeout_s: Option<u64>,
    /// Seconds between metrics samples (10 if None).
    pub metrics_interval_s: Option<f64>,
    /// Run every VMM through vireo-jailer (None: directly).
    pub jail: Option<crate::vms::jailed::JailSettings>,
}

impl AppState {
    /// A state whose files live in `paths`.
    pub fn new(selftest: SelftestConfig, paths: Paths) -> std::io::Result<Self> {
        Self::with_vm_options(selftest, paths, VmOptions::default())
    }

    /// The VMs run the selftest's VMM. Call `vms.recover()` once serving
    /// to re-adopt running VMs and autostart.
    pub fn with_vm_options(
        selftest: SelftestConfig,
        paths: Paths,
        options: VmOptions,
    ) -> std::io::Result<Self> {
        let paths = Arc::new(paths);
        let storage = Storage::load(paths.clone())?;
        let networks = Networks::load(paths.clone())?;
        let vms_config = VmsConfig {
            vmm: selftest.vmm.clone(),
            launcher: match options.jail {
                Some(j) => Arc::new(JailedLauncher::new(j)),
                None => Arc::new(DirectLauncher),
            },
            memory_limit_mib: options.memory_limit_mib,
            shutdown_timeout: std::time::Duration::from_secs(
                options.shutdown_timeout_s.unwrap_or(60),
            ),
            networks: networks.clone(),
        };
        let vms = Vms::new(paths.clone(), storage.clone(), vms_config)?;
        // Backups, restores and templates ask the VM manager (storage's VmHost).
        storage.set_vm_host(Arc::new(vms.clone()));
        let auth = Auth::load(&paths.state)?;
        Ok(AppState {
            auth,
            selftest: Arc::new(selftest),
            selftest_lock: Arc::default(),
            storage,
            vms,
            networks,
            paths,
            tasks: Tasks::default(),
            cluster: None,
            metrics: crate::metrics::Metrics::new(std::time::Duration::from_secs_f64(
                options.metrics_interval_s.unwrap_or(10.0),
            )),
        })
    }
}

/// Every route, with JSON answers for unknown paths and wrong methods.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/node", get(node_info))
        .route("/selftest/vmm", post(selftest::vmm))
        .merge(tasks::routes::routes())
        .merge(crate::storage::routes::routes())
        .merge(crate::vms::routes::routes())
        .merge(crate::metrics::routes::routes())
        .merge(crate::ui::routes())
        .merge(crate::auth::routes::routes())
        .merge(crate::networks::routes::routes())
        .merge(crate::cluster::routes::routes())
        // The role policy for what this node answers itself; what it sends
        // on is judged by the node that answers (auth/guard.rs).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::guard::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::cluster::forward::forward,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Last, so it authenticates every request (docs/security.md).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::guard::guard,
        ))
        .with_state(state)
}

/// Serves until `stop` resolves, then finishes requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.metrics.spawn_sampler(state.vms.clone());
    crate::listen::serve(
        listener,
        router(state),
        stop,
        crate::listen::Transport::default(),
    )
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
