//! What a running membership node reports about itself: the fields of
//! `corosync-quorumtool -s`, as one value. The daemon serves it as JSON on its
//! status socket; `vireo cluster status` prints it the way corosync-quorumtool does,
//! so operators and tests can compare a Vireo node with a real corosync node field
//! by field.

use serde::{Deserialize, Serialize};

/// A totem ring: the representative's node id and the ring sequence number.
/// corosync-quorumtool prints it as `rep.seq` in lower-case hex (e.g. `1.1c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingIdView {
    pub rep: u32,
    pub seq: u64,
}

impl std::fmt::Display for RingIdView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}.{:x}", self.rep, self.seq)
    }
}

/// One row of the membership table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub node_id: u32,
    pub votes: u32,
    /// The node's `name` from the nodelist, else its ring0 address.
    pub name: String,
}

/// The quorum flags corosync-quorumtool lists on its `Flags:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuorumFlag {
    TwoNode,
    Quorate,
    WaitForAll,
    LastManStanding,
    AutoTieBreaker,
}

impl QuorumFlag {
    /// The word corosync-quorumtool prints for the flag.
    pub fn label(self) -> &'static str {
        match self {
            QuorumFlag::TwoNode => "2Node",
            QuorumFlag::Quorate => "Quorate",
            QuorumFlag::WaitForAll => "WaitForAll",
            QuorumFlag::LastManStanding => "LastManStanding",
            QuorumFlag::AutoTieBreaker => "AutoTieBreaker",
        }
    }
}

/// A node's view of its cluster, the content of `corosync-quorumtool -s`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Always `corosync_votequorum` (the only provider).
    pub provider: String,
    pub node_id: u32,
    pub ring_id: RingIdView,
    pub quorate: bool,
    pub expected_votes: u32,
    pub highest_expected: u32,
    pub total_votes: u32,
    pub quorum: u32,
    pub flags: Vec<QuorumFlag>,
    /// Current members, sorted by node id.
    pub members: Vec<MemberView>,
    /// Vireo's own counters; not part of corosync-quorumtool's output.
    #[serde(default)]
    pub stats: NodeStats,
}

/// What a node holds on behalf of its peers and what it refused to hold: the
/// memory a remote peer can make it use is bounded, and this shows how close
/// it is to the bounds and what was dropped at them (docs/membership.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Bytes held in totemsrp's two sort queues (each at most 32 MiB).
    pub sort_queue_bytes: u64,
    /// Received MCASTs dropped because a sort queue was at its byte budget.
    pub sort_queue_dropped: u64,
    /// Bytes of messages still being reassembled from their fragments.
    pub reassembly_bytes: u64,
    /// Delivered packets from a node outside the configuration, dropped
    /// before reassembly.
    pub foreign_packets_dropped: u64,
    /// Application messages waiting for the ring (see Node::broadcast).
    pub app_pending: u64,
}
