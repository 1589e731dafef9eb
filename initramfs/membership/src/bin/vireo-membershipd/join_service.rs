//! The join service: a TCP listener on this node's ring0 address that lets a
//! new node in (`vireo_membership::join`). It lives in the membership daemon
//! because only a member can order the nodelist change through the ring, and
//! it must answer whenever the node is in a cluster, whatever the agent
//! does. It asks the protocol thread for the change as a group client would.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vireo_membership::groups::{Answer, Event, Frame, NodelistOp, Request};
use vireo_membership::join::pki::{self, TlsDir};
use vireo_membership::join::{self, Admit, Certs, Token};

use crate::clients::{Inbox, Input};

/// Joins served at once; more wait in the listen backlog.
const CONCURRENT: usize = 8;
/// How long a nodelist change may take to go round the ring.
const ORDER_TIMEOUT: Duration = Duration::from_secs(30);

pub struct JoinService {
    pub inbox: Inbox,
    pub cluster: Arc<Mutex<String>>,
    pub token_file: PathBuf,
}

impl Admit for JoinService {
    fn cluster(&self) -> String {
        self.cluster.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn token(&self) -> Result<Token, String> {
        Token::load(&self.token_file).map_err(|e| format!("this node has no join token ({e})"))
    }

    fn add(&self, name: &str, addr: Ipv4Addr) -> Result<(u32, String), String> {
        let change = NodelistOp::Add {
            name: name.into(),
            addr,
        };
        nodelist_change(&self.inbox, change)
    }

    /// Signed when this node holds the cluster CA (the one that created it).
    fn issue(&self, name: &str, addr: Ipv4Addr, key: &[u8]) -> Result<Option<Certs>, String> {
        let dir = self
            .token_file
            .parent()
            .unwrap_or(std::path::Path::new("."));
        pki::issue(&TlsDir::of_cluster(dir), &self.cluster(), name, addr, key)
    }
}

/// Orders a nodelist change through the protocol thread and waits until it
/// is applied on this node: the node id and our corosync.conf after it.
pub fn nodelist_change(inbox: &Inbox, change: NodelistOp) -> Result<(u32, String), String> {
    let (conn, rx) = inbox.connect();
    let req = Request::Nodelist { req: 1, change };
    inbox.send(Input::Frame {
        conn,
        frame: Frame::new(&req, Vec::new()),
    });
    let deadline = Instant::now() + ORDER_TIMEOUT;
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(bytes) = rx.recv_timeout(left) else {
            break Err("the ring did not order the change in time (is it quorate?)".into());
        };
        let Ok(ev) = Frame::decode(&bytes).and_then(|f| f.parse::<Event>()) else {
            continue;
        };
        match ev {
            Event::Reply {
                result: Ok(Answer::Nodelist { nodeid, conf }),
                ..
            } => break Ok((nodeid, conf)),
            Event::Reply { result: Err(e), .. } => break Err(e.to_string()),
            _ => continue,
        }
    };
    inbox.send(Input::Closed { conn });
    result
}

/// Listens on `at` and serves each connection on a thread of its own.
pub fn spawn(at: SocketAddrV4, service: JoinService) -> Result<(), String> {
    let listener = TcpListener::bind(at).map_err(|e| format!("join service on {at}: {e}"))?;
    let service = Arc::new(service);
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("vireo-join".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if busy.load(Ordering::Relaxed) >= CONCURRENT {
                    continue; // dropped: the joiner retries
                }
                busy.fetch_add(1, Ordering::Relaxed);
                let (service, busy) = (service.clone(), busy.clone());
                let peer = stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let _ = std::thread::Builder::new()
                    .name("vireo-join-conn".into())
                    .spawn(move || {
                        match join::serve(stream, service.as_ref()) {
                            Ok(what) => eprintln!("vireo-membershipd: join from {peer}: {what}"),
                            Err(e) => eprintln!("vireo-membershipd: join from {peer} refused: {e}"),
                        }
                        busy.fetch_sub(1, Ordering::Relaxed);
                    });
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}
