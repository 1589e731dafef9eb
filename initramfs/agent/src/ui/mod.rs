//! The web UI's files (initramfs/agent/ui, docs/ui.md), compiled into the
//! agent: nothing to install on a node and no build step. `/` sends the
//! browser to `/ui/`; every `/ui/...` path that is not a file gets the
//! page itself, whose script routes by the path.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::server::AppState;

/// (path under /ui/, contents): every file of the UI.
macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../ui/", $path)))),*]
    };
}

const ASSETS: &[(&str, &str)] = assets![
    "index.html",
    "style.css",
    "js/api.js",
    "js/actions.js",
    "js/app.js",
    "js/chart.js",
    "js/dom.js",
    "js/nodes.js",
    "js/terminal.js",
    "js/pages/backups.js",
    "js/pages/login.js",
    "js/pages/networks.js",
    "js/pages/node.js",
    "js/pages/overview.js",
    "js/pages/storage.js",
    "js/pages/tasks.js",
    "js/pages/vm.js",
    "js/pages/vms.js",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(asset))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn file(path: &str) -> Option<Response> {
    let (_, body) = ASSETS.iter().find(|(p, _)| *p == path)?;
    Some(
        (
            [
                (header::CONTENT_TYPE, content_type(path)),
                // The files change with the agent binary: revalidate each load.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
    )
}

async fn index() -> Response {
    file("index.html").expect("index.html is embedded")
}

/// A file, or the page for any other path (the script's routes); a missing
/// script or style sheet is a 404, so a typo fails loudly.
async fn asset(Path(path): Path<String>) -> Response {
    if let Some(found) = file(&path) {
        return found;
    }
    if path.starts_with("js/") || path.ends_with(".css") {
        return ApiError(StatusCode::NOT_FOUND, format!("no UI file {path}")).into_response();
    }
    index().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_import_is_embedded() {
        for (path, body) in ASSETS.iter().filter(|(p, _)| p.ends_with(".js")) {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let target = line.split(['"', '\'']).nth(1).unwrap();
                let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
                for piece in target.split('/') {
                    match piece {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        p => parts.push(p),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    file(&resolved).is_some(),
                    "{path} imports {target}: not embedded"
                );
            }
        }
    }
}
