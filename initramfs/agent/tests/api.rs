//! The agent's REST API end to end: a real server on an ephemeral port,
//! raw HTTP/1.1 over TCP (so malformed requests can be sent too).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use vireo_agent::types::{ErrorBody, Health, KvmKind, NodeInfo};

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(vireo_agent::server::serve(listener, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}

impl Server {
    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Sends `raw` and returns (status, body) of the answer.
async fn request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
}

#[tokio::test]
async fn health_and_node() {
    let srv = start().await;
    let (status, body) = get(srv.addr, "/health").await;
    assert_eq!(status, 200);
    let h: Health = serde_json::from_str(&body).unwrap();
    assert_eq!(h.status, "ok");

    let (status, body) = get(srv.addr, "/node").await;
    assert_eq!(status, 200, "{body}");
    let info: NodeInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(info.arch, std::env::consts::ARCH);
    assert!(info.cpus >= 1 && info.memory_bytes > 0);
    let raw: serde_json::Value = serde_json::from_str(&body).unwrap();
    let kind = raw["kvm"]["kind"].as_str().unwrap();
    assert!(
        ["kvm_intel", "kvm_amd", "pvm", "none"].contains(&kind),
        "{kind}"
    );
    assert_eq!(kind, info.kvm.kind.as_str());
    assert!(raw["load"]["15m"].is_number());
    if info.kvm.kind != KvmKind::None {
        assert!(info.kvm.available);
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn errors_are_json() {
    let srv = start().await;
    let (status, body) = get(srv.addr, "/nope").await;
    assert_eq!(status, 404);
    let e: ErrorBody = serde_json::from_str(&body).unwrap();
    assert_eq!(e.status, 404);
    assert!(e.error.contains("/nope"));

    let post = "POST /node HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let (status, body) = request(srv.addr, post).await;
    assert_eq!(status, 405);
    let e: ErrorBody = serde_json::from_str(&body).unwrap();
    assert_eq!(e.status, 405);

    // Not HTTP at all: the server answers 400 and stays up.
    let (status, _) = request(srv.addr, "HELLO\r\n\r\n").await;
    assert_eq!(status, 400);
    assert_eq!(get(srv.addr, "/health").await.0, 200);
    srv.shutdown().await;
}
