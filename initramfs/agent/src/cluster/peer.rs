//! How this node calls its peers' agents: with its cluster certificate
//! (mutual TLS) when it serves one, with the node token every node is
//! given, and naming the caller it acts for (auth/vouch.rs). `send` makes
//! a call and reads its answer whole (small JSON); `proxy` passes a
//! forwarded request through both ways as a stream (a volume's upload or
//! download may be gigabytes).

use std::io::Read;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use vireo_membership::join::pki::TlsDir;

use super::forward::{FORWARDED, NODE};
use crate::auth::{vouch, Caller};
use crate::error::ApiError;

/// A call's reads and writes each wait this long (a forwarded shutdown
/// waits for the guest: as long as a local one).
pub(super) const TIMEOUT: Duration = Duration::from_secs(600);
/// Chunks of a streamed body in flight between the async and the blocking side.
const CHUNKS_IN_FLIGHT: usize = 4;
const CHUNK: usize = 64 << 10;

/// What this node presents to other nodes' agents on its own behalf (a
/// migration's destination): the admin token every node of the cluster is
/// given (`--admin-token-file`, `vireo.admin_token=`), and, with it,
/// the caller it forwards for (`vouched_headers`).
static NODE_CREDENTIAL: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();

pub fn set_node_credential(token: String) {
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        let _ = NODE_CREDENTIAL.set(value);
    }
}

/// The `authorization` header of this node's own calls, when it has one.
pub(super) fn node_authorization() -> Option<(&'static str, HeaderValue)> {
    NODE_CREDENTIAL.get().map(|v| ("authorization", v.clone()))
}

/// This node's TLS towards its peers, when it serves its cluster
/// certificate (auth/startup.rs).
static NODE_TLS: std::sync::OnceLock<ureq::tls::TlsConfig> = std::sync::OnceLock::new();

/// The same for WebSockets (consoles), as a rustls configuration.
static NODE_WS_TLS: std::sync::OnceLock<std::sync::Arc<tokio_rustls::rustls::ClientConfig>> =
    std::sync::OnceLock::new();

pub fn set_node_tls(
    config: ureq::tls::TlsConfig,
    websockets: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
) {
    let _ = NODE_TLS.set(config);
    let _ = NODE_WS_TLS.set(websockets);
}

/// The rustls configuration of this node's WebSockets to its peers, when
/// node-to-node calls are mutual TLS.
pub(super) fn node_ws_tls() -> Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>> {
    NODE_WS_TLS.get().cloned()
}

/// The node's TLS files, for its VMMs' migration channels (`tls://`,
/// mutual with the cluster CA); unset: migrations go over plain TCP.
static MIGRATION_TLS: std::sync::OnceLock<TlsDir> = std::sync::OnceLock::new();

/// Migrations over TLS with `dir`'s files: set when the agent serves its
/// cluster certificate (a jailed VMM gets the files in its jail, the key
/// as a private copy: vms/jailed.rs, docs/security.md).
pub fn set_migration_tls(dir: TlsDir) {
    let _ = MIGRATION_TLS.set(dir);
}

/// `SCHEME://host:port` of a migration channel.
pub fn migration_url(hostport: &str) -> String {
    match MIGRATION_TLS.get() {
        Some(_) => format!("tls://{hostport}"),
        None => format!("tcp://{hostport}"),
    }
}

/// The VMM flags of the node's migration TLS files, if any.
pub fn migration_tls_args() -> Vec<String> {
    let Some(dir) = MIGRATION_TLS.get() else {
        return Vec::new();
    };
    let path = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    vec![
        "--tls-cert".into(),
        path(dir.node_cert()),
        "--tls-key".into(),
        path(dir.node_key()),
        "--tls-ca".into(),
        path(dir.ca_cert()),
    ]
}

/// Whether this node's calls to its peers are mutual TLS.
pub fn node_tls_on() -> bool {
    NODE_TLS.get().is_some()
}

/// The URL of `path` on the agent at `api` (`ADDR:PORT`).
pub(super) fn node_url(api: &str, path: &str) -> String {
    let scheme = if NODE_TLS.get().is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{api}{path}")
}

/// The headers that authenticate a call made for `caller` (none: a public
/// path): the node token, else (mutual TLS authenticates this node, or
/// there is no node token) the caller's own `authorization`, and the
/// caller vouched for.
pub(super) fn vouched_headers(
    caller: Option<&Caller>,
    own: Option<&HeaderValue>,
) -> Vec<(&'static str, HeaderValue)> {
    // The node token only vouches: never for an anonymous request (a
    // public path), which goes on as anonymous as it came.
    let authorization = match (NODE_CREDENTIAL.get(), node_tls_on(), caller) {
        (Some(token), false, Some(_)) => Some(token.clone()),
        _ => own.cloned(),
    };
    let mut headers: Vec<_> = authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    headers.extend(caller.map(|c| (vouch::CALLER, vouch::header(c))));
    headers
}

/// A client whose whole call ends within `total`, or (None, a stream of
/// any length) whose every read and write does within `TIMEOUT`.
fn agent(total: Option<Duration>) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder().http_status_as_error(false);
    config = match total {
        Some(total) => config.timeout_global(Some(total)),
        None => config
            .timeout_per_read(Some(TIMEOUT))
            .timeout_per_write(Some(TIMEOUT)),
    };
    if let Some(tls) = NODE_TLS.get() {
        config = config.tls_config(tls.clone());
    }
    config.build().into()
}

fn request_to<B>(
    method: &str,
    url: &str,
    headers: &[(&'static str, HeaderValue)],
    me: u32,
    body: B,
) -> Result<ureq::http::Request<B>, String> {
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header(FORWARDED, me.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, value.as_bytes());
    }
    builder.body(body).map_err(|e| e.to_string())
}

pub(super) type Answer = (u16, Option<String>, Vec<u8>);

/// `method url` with `headers` and `body`; the answer read whole (up to
/// 64 MiB), all within `total` (`TIMEOUT` for a call that may wait on a guest).
pub(super) fn send(
    total: Duration,
    method: &str,
    url: &str,
    headers: &[(&'static str, HeaderValue)],
    body: Bytes,
    me: u32,
) -> Result<Answer, String> {
    let request = request_to(method, url, headers, me, body.to_vec())?;
    let mut resp = agent(Some(total)).run(request).map_err(|e| e.to_string())?;
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|c| c.to_str().ok())
        .map(str::to_string);
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok((resp.status().as_u16(), ct, bytes))
}

/// Request headers a forwarded request keeps besides its credentials.
const PASSED_REQUEST: [&str; 2] = ["content-type", "content-length"];
/// Answer headers a forwarded answer keeps.
const PASSED_ANSWER: [&str; 4] = [
    "content-type",
    "content-length",
    "content-disposition",
    "x-vireo-format",
];

/// Sends `req` to node `node`'s agent at `api`, both bodies streamed; its
/// answer, marked as `node`'s.
pub(super) async fn proxy(api: &str, me: u32, node: u32, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.to_string());
    let mut headers = vouched_headers(
        req.extensions().get::<Caller>(),
        req.headers().get("authorization"),
    );
    headers.extend(
        PASSED_REQUEST
            .iter()
            .filter_map(|&h| Some((h, req.headers().get(h)?.clone()))),
    );
    let url = node_url(api, &target);
    let bodiless = matches!(method.as_str(), "GET" | "HEAD" | "DELETE")
        && !req.headers().contains_key("content-length");
    let upload = (!bodiless).then(|| ChannelReader::of(req.into_body()));
    let sent = tokio::task::spawn_blocking(move || {
        let body = match upload {
            Some(reader) => ureq::SendBody::from_owned_reader(reader),
            None => ureq::SendBody::none(),
        };
        let request = request_to(&method, &url, &headers, me, body)?;
        agent(None).run(request).map_err(|e| e.to_string())
    })
    .await;
    let answer = match sent {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            let why = format!("node {node}'s agent ({api}) did not answer: {e}");
            return ApiError(StatusCode::BAD_GATEWAY, why).into_response();
        }
        Err(e) => return ApiError::internal(e.to_string()).into_response(),
    };
    let (parts, body) = answer.into_parts();
    let mut resp = Response::new(stream_body(body.into_reader()));
    *resp.status_mut() =
        StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    copy_headers(&parts.headers, resp.headers_mut());
    resp.headers_mut().insert(NODE, HeaderValue::from(node));
    resp
}

fn copy_headers(from: &ureq::http::HeaderMap, to: &mut HeaderMap) {
    for name in PASSED_ANSWER {
        if let Some(v) = from
            .get(name)
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        {
            to.insert(name, v);
        }
    }
}

/// A blocking reader's bytes as a response body, read on a blocking
/// thread; it stops when the caller goes away.
fn stream_body(mut reader: impl Read + Send + 'static) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || loop {
        let mut buf = vec![0; CHUNK];
        let item = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                Ok(Bytes::from(buf))
            }
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// A request body read from a blocking thread: an async task feeds its
/// chunks through a channel.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    chunk: Bytes,
}

impl ChannelReader {
    fn of(body: Body) -> ChannelReader {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        tokio::spawn(async move {
            let mut stream = body.into_data_stream();
            while let Some(item) = stream.next().await {
                let item = item.map_err(std::io::Error::other);
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        ChannelReader {
            rx,
            chunk: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(item) => self.chunk = item?,
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
