//! The layer in front of every route: public paths pass, bodies over the
//! limit are refused from their Content-Length (before a byte of them is
//! read), other bodies are read whole before the route runs, the caller
//! is authenticated from `Authorization: Bearer` (or
//! `?token=` for WebSockets, which browsers cannot give headers, or a
//! single-use `?ticket=` for a download link, ticket.rs, or the caller a
//! peer node vouches for on a request it forwards, vouch.rs); the caller
//! then rides in the request's extensions. The role policy decides later
//! (`authorize`), on the node that answers.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::tls::PeerNode;
use super::{policy, vouch, Caller};
use crate::error::ApiError;
use crate::server::AppState;

/// The largest body a JSON route takes. Volume uploads stream and are
/// bounded by the volume's size instead.
pub const MAX_BODY: u64 = 1 << 20;

/// How long a client has to send a JSON route's body once its headers
/// are in (the listener's header timeout bounds the headers).
const BODY_TIME: Duration = Duration::from_secs(30);

/// Paths anyone may fetch: logging in, the web UI's static files, and
/// the liveness and node facts monitoring reads (no VM or tenant data).
fn public(method: &Method, path: &str) -> bool {
    let monitoring = method == Method::GET && (path == "/health" || path == "/node");
    // `/ui...` as the web UI's contract says (its files, whatever their names).
    monitoring || path == "/" || path == "/auth/login" || path.starts_with("/ui")
}

/// A volume's data upload: the one route whose body is large.
fn streamed_upload(method: &Method, path: &str) -> bool {
    method == Method::PUT && path.starts_with("/pools/") && path.ends_with("/data")
}

fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// `name=` in the query.
fn query_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// Who a request is: the caller a peer node vouches for (vouch.rs), its
/// token, or a download ticket (GET only: ticket.rs), with the node the
/// ticket's volume is on when that is another.
fn caller_of(req: &Request, s: &AppState) -> Option<(Caller, Option<TicketNode>)> {
    let credential = token_of(req).and_then(|t| s.auth.authenticate(&t));
    let from_peer = req.extensions().get::<PeerNode>().is_some()
        || credential.as_ref().is_some_and(vouch::may_vouch);
    if let Some(vouched) = req.headers().get(vouch::CALLER).filter(|_| from_peer) {
        return vouch::caller(vouched).map(|c| (c, None));
    }
    if req.method() == Method::GET {
        if let Some(ticket) = query_param(req, "ticket") {
            let (caller, node) = s.auth.redeem_ticket(ticket, req.uri().path())?;
            return Some((caller, node.map(TicketNode)));
        }
    }
    credential.map(|c| (c, None))
}

/// On a request a download ticket opened for a volume on another node
/// (by id): the cluster's forwarding sends it there.
#[derive(Clone, Copy, Debug)]
pub struct TicketNode(pub u32);

/// The token: the Authorization header, else `token=` in the query.
fn token_of(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        return v
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_string());
    }
    query_param(req, "token").map(str::to_string)
}

/// The middleware that authenticates (server.rs puts it in front of the
/// whole router); `authorize` judges what the caller asks.
pub async fn guard(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if declared_length(&req).is_some_and(|n| n > MAX_BODY) && !streamed_upload(req.method(), &path)
    {
        let why = format!("the body is larger than {MAX_BODY} bytes");
        return ApiError(StatusCode::PAYLOAD_TOO_LARGE, why).into_response();
    }
    let caller = match public(req.method(), &path) {
        true => None,
        false => match caller_of(&req, &s) {
            Some(c) => Some(c),
            None => return unauthorized(),
        },
    };
    if !streamed_upload(req.method(), &path) {
        req = match whole_body(req).await {
            Ok(req) => req,
            Err(refusal) => return refusal.into_response(),
        };
    }
    if let Some((caller, ticket_node)) = caller {
        req.extensions_mut().insert(caller);
        if let Some(node) = ticket_node {
            req.extensions_mut().insert(node);
        }
    }
    next.run(req).await
}

/// The request with its body read to the end (at most MAX_BODY bytes,
/// within BODY_TIME). A handler that takes no body (`POST .../verify`
/// sent with `{}`) leaves it unread, and hyper closes a connection whose
/// request was not read to its end once it has answered: a client that
/// meanwhile sent its next request on that kept-alive connection saw it
/// reset. Read here, every route leaves the connection reusable, and a
/// body without a Content-Length (chunked) meets the same limit.
async fn whole_body(req: Request) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let read_all = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("the body: {e}")))?;
            if (bytes.len() + chunk.len()) as u64 > MAX_BODY {
                let why = format!("the body is larger than {MAX_BODY} bytes");
                return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, why));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_TIME, read_all).await {
        Ok(Ok(())) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ApiError(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} s", BODY_TIME.as_secs()),
        )),
    }
}

/// The role policy, for a request this node answers itself: server.rs
/// puts it inside the cluster's forwarding, so that a request sent on to
/// another node (its VM, its volume, its tasks) is judged there, by the
/// node that has the object, as the caller this node vouches for.
pub async fn authorize(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if public(req.method(), path) {
        return next.run(req).await;
    }
    let Some(caller) = req.extensions().get::<Caller>() else {
        return unauthorized();
    };
    if let Err(e) = policy::check(caller, req.method(), path, &s) {
        return e.into_response();
    }
    next.run(req).await
}

fn unauthorized() -> Response {
    let mut r = ApiError(
        StatusCode::UNAUTHORIZED,
        "authentication needed: Authorization: Bearer TOKEN (POST /auth/login, or an API token)"
            .into(),
    )
    .into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
    r
}

/// The authenticated caller, in a handler's arguments.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "not authenticated".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_paths_are_the_login_and_the_ui_only() {
        for p in [
            "/",
            "/auth/login",
            "/ui",
            "/ui/app.js",
            "/ui.css",
            "/health",
            "/node",
        ] {
            assert!(public(&Method::GET, p), "{p}");
        }
        for p in [
            "/vms",
            "/vms/ui",
            "/auth/whoami",
            "//",
            "/nodes",
            "/selftest/vmm",
        ] {
            assert!(!public(&Method::GET, p), "{p}");
        }
        assert!(!public(&Method::POST, "/node"));
    }

    #[test]
    fn only_volume_uploads_stream() {
        assert!(streamed_upload(&Method::PUT, "/pools/local/volumes/a/data"));
        assert!(!streamed_upload(
            &Method::GET,
            "/pools/local/volumes/a/data"
        ));
        assert!(!streamed_upload(&Method::PUT, "/vms/a"));
    }
}
