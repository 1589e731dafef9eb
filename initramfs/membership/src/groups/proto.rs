//! What travels over the group socket (client ⇄ daemon) and inside totem
//! (daemon ⇄ daemon). Headers are JSON (see [`super::frame`]); message
//! bodies are the frame's data.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// One group member: a client connection of one daemon run. `inc` (the
/// daemon's start time in µs) keeps a restarted daemon's new connections
/// apart from the old run's, which the cluster may not have forgotten yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberId {
    pub node: u32,
    pub inc: u64,
    pub conn: u32,
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{:x}/{}", self.node, self.inc, self.conn)
    }
}

/// A view's identity: the ring it belongs to and how many view changes that
/// ring has seen since its group sync. Every member of a ring computes the
/// same id at the same place of the message order; ids only grow.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct ViewId {
    pub ring_seq: u64,
    pub n: u64,
}

impl std::fmt::Display for ViewId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}.{}", self.ring_seq, self.n)
    }
}

/// A change of the cluster's nodelist, ordered through the ring so every
/// node applies it at the same place (and rewrites its corosync.conf).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NodelistOp {
    /// Adds a node (a new id: the highest so far + 1). The same name and
    /// address again is a rejoin and answers the node's existing id.
    Add {
        name: String,
        addr: Ipv4Addr,
    },
    Remove {
        nodeid: u32,
    },
}

/// Client → daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Request {
    /// Join a group; the answer carries this connection's [`MemberId`]. It
    /// is a member once a [`Event::View`] lists it.
    Join {
        req: u64,
        group: String,
    },
    Leave {
        req: u64,
        group: String,
    },
    /// The frame's data to every member of `group`, in the one agreed order.
    /// With `require_quorum` (the default of the client library) it is
    /// refused while this node's view is not quorate.
    Send {
        req: u64,
        group: String,
        #[serde(default = "yes")]
        require_quorum: bool,
    },
    /// Changes the nodelist; answered once applied on this node.
    Nodelist {
        req: u64,
        change: NodelistOp,
    },
}

fn yes() -> bool {
    true
}

impl Request {
    pub fn req(&self) -> u64 {
        match self {
            Request::Join { req, .. }
            | Request::Leave { req, .. }
            | Request::Send { req, .. }
            | Request::Nodelist { req, .. } => *req,
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub enum GroupError {
    #[error("this node's configuration is not quorate: sending is refused")]
    NotQuorate,
    #[error("not a member of group {0:?}: join it first")]
    NotMember(String),
    #[error("the send queue is full; try again")]
    TryAgain,
    #[error("message of {0} bytes is larger than the {max} allowed", max = super::frame::DATA_MAX)]
    TooLarge(usize),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("nodelist change refused: {0}")]
    Nodelist(String),
}

/// What a successful request answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ok", rename_all = "snake_case")]
pub enum Answer {
    Joined {
        member: MemberId,
    },
    Done,
    /// A nodelist change applied here: the node it concerns and this node's
    /// corosync.conf after it.
    Nodelist {
        nodeid: u32,
        conf: String,
    },
}

/// Daemon → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Event {
    Reply {
        req: u64,
        result: Result<Answer, GroupError>,
    },
    /// The group's membership from here on (and whether it may write).
    View {
        group: String,
        view: ViewId,
        members: Vec<MemberId>,
        joined: Vec<MemberId>,
        left: Vec<MemberId>,
        /// The nodes of the ring and the quorum of the view (a strict
        /// majority of the nodelist's votes, see docs/membership.md).
        nodes: Vec<u32>,
        quorate: bool,
    },
    /// A message of the group; the frame's data is its body.
    Message { group: String, from: MemberId },
    /// The ring broke: until the next view only these nodes remain, and
    /// what is delivered now may differ from what other partitions deliver.
    Transitional { nodes: Vec<u32>, quorate: bool },
}

/// Daemon ⇄ daemon, inside totempg group `vireo.cpg`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Envelope {
    Join {
        group: String,
        member: MemberId,
    },
    Leave {
        group: String,
        member: MemberId,
    },
    Msg {
        group: String,
        from: MemberId,
    },
    /// After a new ring: the sender's local members, for the group sync.
    JoinList {
        ring_seq: u64,
        members: Vec<(String, MemberId)>,
    },
    Nodelist {
        change: NodelistOp,
        /// The requesting connection (and its request id) on the sender.
        conn: u32,
        req: u64,
    },
}
