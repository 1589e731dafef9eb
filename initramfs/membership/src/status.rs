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
}
