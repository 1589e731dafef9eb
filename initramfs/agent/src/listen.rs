//! The agent's accept loop: hyper with a header read timeout (a client
//! that trickles its request head — slowloris — is cut off, others are
//! served meanwhile), optional TLS on the same port, graceful stop. axum's
//! own `serve` offers neither timeout nor TLS, hence this loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::Layer;

use crate::auth::tls::PeerNode;

/// How connections are served.
#[derive(Clone)]
pub struct Transport {
    /// TLS on the port; plain HTTP is then refused.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Time a client has for its TLS handshake and each request head.
    pub header_timeout: Duration,
}

impl Default for Transport {
    fn default() -> Self {
        Self {
            tls: None,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `router` until `stop` resolves, then finishes requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
    transport: Transport,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let tls = transport.tls.clone().map(TlsAcceptor::from);
    tokio::pin!(stop);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    eprintln!("vireo-agent: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let conn = Conn {
            router: router.clone(),
            watcher: graceful.watcher(),
            timeout: transport.header_timeout,
        };
        tokio::spawn(conn.run(tcp, tls.clone()));
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

struct Conn {
    router: Router,
    watcher: Watcher,
    timeout: Duration,
}

impl Conn {
    async fn run(self, tcp: TcpStream, tls: Option<TlsAcceptor>) {
        let Some(acceptor) = tls else {
            return self.http(tcp).await;
        };
        if !starts_with_tls(&tcp, self.timeout).await {
            return refuse_plain(tcp).await;
        }
        // A failed or too slow handshake just ends the connection.
        let handshake = tokio::time::timeout(self.timeout, acceptor.accept(tcp)).await;
        if let Ok(Ok(stream)) = handshake {
            // rustls accepted only a certificate the cluster CA signed.
            let peer = stream.get_ref().1.peer_certificates().is_some();
            self.http_from(stream, peer.then_some(PeerNode)).await;
        }
    }

    async fn http<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        self.http_from(stream, None).await
    }

    /// Serves HTTP on `stream`; every request from a peer node says so.
    async fn http_from<S>(self, stream: S, peer: Option<PeerNode>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = Builder::new(TokioExecutor::new()).http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.timeout);
        let router = self.router;
        let service = TowerToHyperService::new(
            tower::util::MapRequestLayer::new(
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    if let Some(p) = peer {
                        req.extensions_mut().insert(p);
                    }
                    req
                },
            )
            .layer(router),
        );
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        // Errors are the client's (gone, too slow, malformed): nothing to do.
        let _ = self.watcher.watch(conn).await;
    }
}

/// Whether the first byte is a TLS handshake record (0x16).
async fn starts_with_tls(tcp: &TcpStream, limit: Duration) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(limit, tcp.peek(&mut first)).await,
        Ok(Ok(1)) if first[0] == 0x16
    )
}

/// A plain HTTP request on the TLS port: a clear answer, then close.
async fn refuse_plain(mut tcp: TcpStream) {
    let body = r#"{"error":"this port speaks HTTPS only","status":400}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(answer.as_bytes()).await;
    let _ = tcp.shutdown().await;
}
