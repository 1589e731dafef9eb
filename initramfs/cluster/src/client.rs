//! A client of the daemon's group socket (`VIREO_MEMBERSHIP_GROUP_SOCKET`,
//! default /run/vireo/groups.sock): join groups, send, and receive every
//! message and view in the one agreed order. Blocking, thread-safe: any
//! thread may call [`GroupClient::send`] while another waits in
//! [`GroupClient::recv`].
//!
//! ```no_run
//! use vireo_cluster::client::GroupClient;
//! let c = GroupClient::connect("/run/vireo/groups.sock".as_ref())?;
//! let me = c.join("vms")?;
//! c.send("vms", b"hello".to_vec())?;
//! while let Some(d) = c.recv(std::time::Duration::from_secs(1))? {
//!     println!("{:?} ({} bytes)", d.event, d.data.len());
//! }
//! # Ok::<(), vireo_cluster::client::ClientError>(())
//! ```

use std::collections::HashMap;
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use vireo_membership::groups::{Answer, Event, GroupError, MemberId, NodelistOp, ViewId};
use vireo_membership::groups::{Frame, Request};

/// Where vireo-membershipd serves groups unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vireo/groups.sock";
/// How long a request waits for the daemon's answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the membership service at {path}: {why}")]
    Connect { path: String, why: String },
    #[error("the membership service closed the connection")]
    Disconnected,
    #[error("the membership service did not answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Refused(#[from] GroupError),
    #[error("unexpected answer from the membership service: {0}")]
    Unexpected(String),
}

/// An event and its data (a message's body; empty for views).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event: Event,
    pub data: Vec<u8>,
}

type Waiting = Arc<Mutex<HashMap<u64, SyncSender<Result<Answer, GroupError>>>>>;

pub struct GroupClient {
    writer: Mutex<UnixStream>,
    next: AtomicU64,
    waiting: Waiting,
    events: Mutex<Receiver<Delivery>>,
}

impl GroupClient {
    pub fn connect(path: &Path) -> Result<GroupClient, ClientError> {
        let stream = UnixStream::connect(path).map_err(|e| ClientError::Connect {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        let reader = stream.try_clone().map_err(|e| ClientError::Connect {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        let waiting: Waiting = Arc::default();
        let (tx, rx) = mpsc::channel();
        let w = waiting.clone();
        std::thread::Builder::new()
            .name("vireo-group-rx".into())
            .spawn(move || read_loop(reader, w, tx))
            .map_err(|e| ClientError::Unexpected(e.to_string()))?;
        Ok(GroupClient {
            writer: Mutex::new(stream),
            next: AtomicU64::new(1),
            waiting,
            events: Mutex::new(rx),
        })
    }

    /// Joins `group`; this connection's member id. The membership shows in
    /// the next view of the group.
    pub fn join(&self, group: &str) -> Result<MemberId, ClientError> {
        let group = group.to_string();
        match self.call(|req| Request::Join { req, group }, Vec::new())? {
            Answer::Joined { member } => Ok(member),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    pub fn leave(&self, group: &str) -> Result<(), ClientError> {
        let group = group.to_string();
        self.call(|req| Request::Leave { req, group }, Vec::new())
            .map(|_| ())
    }

    /// Sends to every member of `group`; refused while this node's view is
    /// not quorate ([`GroupError::NotQuorate`]) or the queue is full
    /// ([`GroupError::TryAgain`]).
    pub fn send(&self, group: &str, data: Vec<u8>) -> Result<(), ClientError> {
        self.send_with(group, data, true)
    }

    /// [`GroupClient::send`], also without quorum when `require_quorum` is
    /// false (state transfer, reads).
    pub fn send_with(
        &self,
        group: &str,
        data: Vec<u8>,
        require_quorum: bool,
    ) -> Result<(), ClientError> {
        let group = group.to_string();
        let make = |req| Request::Send {
            req,
            group,
            require_quorum,
        };
        self.call(make, data).map(|_| ())
    }

    /// Orders a nodelist change through the ring; this node's id and
    /// corosync.conf once it is applied here.
    pub fn nodelist(&self, change: NodelistOp) -> Result<(u32, String), ClientError> {
        match self.call(|req| Request::Nodelist { req, change }, Vec::new())? {
            Answer::Nodelist { nodeid, conf } => Ok((nodeid, conf)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The next event; None when `timeout` passes first.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Delivery>, ClientError> {
        let rx = self.events.lock().unwrap_or_else(|p| p.into_inner());
        match rx.recv_timeout(timeout) {
            Ok(d) => Ok(Some(d)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(ClientError::Disconnected),
        }
    }

    fn call(
        &self,
        make: impl FnOnce(u64) -> Request,
        data: Vec<u8>,
    ) -> Result<Answer, ClientError> {
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(1);
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(req, tx);
        let frame = Frame::new(&make(req), data);
        let sent = {
            let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            frame.write_to(&mut *w)
        };
        if sent.is_err() {
            self.forget(req);
            return Err(ClientError::Disconnected);
        }
        let answer = rx.recv_timeout(CALL_TIMEOUT);
        self.forget(req);
        match answer {
            Ok(r) => r.map_err(ClientError::Refused),
            Err(RecvTimeoutError::Timeout) => Err(ClientError::Timeout(CALL_TIMEOUT)),
            Err(RecvTimeoutError::Disconnected) => Err(ClientError::Disconnected),
        }
    }

    fn forget(&self, req: u64) {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&req);
    }
}

impl Drop for GroupClient {
    fn drop(&mut self) {
        if let Ok(w) = self.writer.lock() {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Answers go to their callers, everything else to the event queue.
fn read_loop(stream: UnixStream, waiting: Waiting, events: Sender<Delivery>) {
    let mut r = BufReader::new(stream);
    while let Ok(Some(frame)) = Frame::read_from(&mut r) {
        let Ok(event) = frame.parse::<Event>() else {
            break;
        };
        if let Event::Reply { req, result } = event {
            let tx = waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&req);
            if let Some(tx) = tx {
                let _ = tx.try_send(result);
            }
            continue;
        }
        if events
            .send(Delivery {
                event,
                data: frame.data,
            })
            .is_err()
        {
            break;
        }
    }
    // Callers still waiting see their channel close: Disconnected.
    waiting.lock().unwrap_or_else(|p| p.into_inner()).clear();
}
