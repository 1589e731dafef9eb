//! The console WebSocket of a VM another node runs (`GET /vms/NAME/console`
//! on a node that does not have NAME): this agent opens the same WebSocket
//! on the owner's agent, naming the caller (auth/vouch.rs: the owner's
//! policy judges it, tenants included) and `x-vireo-forwarded`, then accepts the
//! caller's upgrade and pipes messages both ways; when either side closes,
//! the other is closed too. The owner's refusal (401, 403, 404) comes back
//! as it is, before any upgrade.

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as Upstream};
use tokio_tungstenite::WebSocketStream;

use super::forward::{FORWARDED, NODE};
use crate::error::ApiError;

/// A byte stream to the owner's agent: plain TCP or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

type Owner = WebSocketStream<Box<dyn Io>>;

/// `/vms/NAME/console` of the VM node `node` (agent at `api`) runs.
pub async fn forward(api: &str, me: u32, node: u32, req: Request) -> Response {
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.to_string());
    let credentials = super::peer::vouched_headers(
        req.extensions().get::<crate::auth::Caller>(),
        req.headers().get("authorization"),
    );
    let (mut parts, _) = req.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(e) => {
            let text = format!("the console is a WebSocket: {}", e.body_text());
            return ApiError::bad_request(text).into_response();
        }
    };
    let scheme = match super::peer::node_ws_tls() {
        Some(_) => "wss",
        None => "ws",
    };
    let owner = match connect(&format!("{scheme}://{api}{target}"), credentials, me).await {
        Ok(owner) => owner,
        Err(refused) => return refused,
    };
    let mut resp = upgrade.on_upgrade(move |caller| pipe(caller, owner));
    resp.headers_mut().insert(NODE, HeaderValue::from(node));
    resp
}

/// Opens `request`'s WebSocket: `wss` with this node's certificate and the
/// cluster CA as the only root (mutual TLS, as every node-to-node call),
/// else plain.
async fn open(request: tungstenite::handshake::client::Request) -> tungstenite::Result<Owner> {
    let uri = request.uri();
    let host = uri.host().unwrap_or_default().to_string();
    let port = uri.port_u16().unwrap_or(80);
    let io_error = |e: std::io::Error| tungstenite::Error::Io(e);
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(io_error)?;
    let stream: Box<dyn Io> = match super::peer::node_ws_tls() {
        None => Box::new(tcp),
        Some(tls) => {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| io_error(std::io::Error::other(format!("{host}: {e}"))))?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(io_error)?;
            Box::new(stream)
        }
    };
    Ok(tokio_tungstenite::client_async(request, stream).await?.0)
}

/// The owner's console WebSocket, or the answer to give the caller instead.
async fn connect(
    url: &str,
    credentials: Vec<(&'static str, HeaderValue)>,
    me: u32,
) -> Result<Owner, Response> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ApiError::internal(format!("{url}: {e}")).into_response())?;
    let headers = request.headers_mut();
    headers.insert(FORWARDED, HeaderValue::from(me));
    for (name, value) in credentials {
        headers.insert(name, value);
    }
    match open(request).await {
        Ok(owner) => Ok(owner),
        Err(tungstenite::Error::Http(answer)) => {
            let (parts, body) = answer.into_parts();
            let mut resp = Response::new(Body::from(body.unwrap_or_default()));
            *resp.status_mut() = parts.status;
            if let Some(ct) = parts.headers.get("content-type") {
                resp.headers_mut().insert("content-type", ct.clone());
            }
            Err(resp)
        }
        Err(e) => Err(ApiError(
            StatusCode::BAD_GATEWAY,
            format!("the VM's node did not open its console ({url}): {e}"),
        )
        .into_response()),
    }
}

/// Copies messages both ways until one side closes or fails, then closes
/// the other.
async fn pipe(caller: WebSocket, owner: Owner) {
    let (mut to_caller, mut from_caller) = caller.split();
    let (mut to_owner, mut from_owner) = owner.split();
    loop {
        tokio::select! {
            out = from_owner.next() => {
                let msg = match out {
                    Some(Ok(Upstream::Binary(b))) => Message::Binary(b),
                    Some(Ok(Upstream::Text(t))) => Message::Text(t.as_str().into()),
                    Some(Ok(Upstream::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                if to_caller.send(msg).await.is_err() {
                    break;
                }
            }
            input = from_caller.next() => {
                let msg = match input {
                    Some(Ok(Message::Binary(b))) => Upstream::Binary(b),
                    Some(Ok(Message::Text(t))) => Upstream::Text(t.as_str().into()),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                if to_owner.send(msg).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to_caller.send(Message::Close(None)).await;
    let _ = to_owner.send(Upstream::Close(None)).await;
}
