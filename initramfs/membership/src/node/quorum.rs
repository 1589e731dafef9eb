//! votequorum's arithmetic and node table (exec/votequorum.c): who has votes, the
//! expected votes, the quorum and the options that bend it (two_node,
//! wait_for_all, last_man_standing, auto_tie_breaker).

use std::collections::BTreeMap;

use crate::config::{AutoTieBreaker, CorosyncConfig};
use crate::status::{ClusterStatus, MemberView, QuorumFlag, RingIdView};
use crate::votequorum::{flags, NodeInfo, Reconfigure, ReconfigureParam, VotequorumMessage};
use crate::wire::RingId;

/// The qdevice slot's node id.
pub const QDEVICE_NODEID: u32 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    Member,
    Dead,
    Leaving,
}

#[derive(Debug, Clone, Copy)]
struct NodeEntry {
    votes: u32,
    expected_votes: u32,
    flags: u32,
    state: NodeState,
}

#[derive(Debug)]
pub struct Votequorum {
    my_id: u32,
    nodes: BTreeMap<u32, NodeEntry>,
    quorum: u32,
    quorate: bool,
    two_node: bool,
    wait_for_all: bool,
    wait_for_all_status: bool,
    last_man_standing: bool,
    lms_window: u32,
    atb: Option<AutoTieBreaker>,
    members: Vec<u32>,
    previous_members: Vec<u32>,
    ring_id: RingId,
    sync_in_progress: bool,
    names: BTreeMap<u32, String>,
}

/// What the node must do after a quorum event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct QuorumEffects {
    /// Arm the last_man_standing timer for this many ms.
    pub arm_lms_timer: Option<u32>,
}

impl Votequorum {
    pub fn new(config: &CorosyncConfig, my_id: u32) -> Self {
        let q = &config.quorum;
        let node_votes: u32 = config.nodes.iter().map(|n| n.votes).sum();
        let my_votes = config
            .nodes
            .iter()
            .find(|n| n.nodeid == my_id)
            .map_or(1, |n| n.votes);
        let mut expected = q.expected_votes.unwrap_or(node_votes).max(1);
        if q.two_node && config.nodes.len() == 2 {
            expected = 2;
        }
        let mut me = NodeEntry {
            votes: my_votes,
            expected_votes: expected,
            flags: flags::FIRST,
            state: NodeState::Member,
        };
        if q.wait_for_all {
            me.flags |= flags::WFA_STATUS;
        }
        let names = config
            .nodes
            .iter()
            .map(|n| {
                let name = n.name.clone().unwrap_or_else(|| n.ring0_addr.to_string());
                (n.nodeid, name)
            })
            .collect();
        let mut vq = Votequorum {
            my_id,
            nodes: BTreeMap::from([(my_id, me)]),
            quorum: 0,
            quorate: false,
            two_node: q.two_node,
            wait_for_all: q.wait_for_all,
            wait_for_all_status: q.wait_for_all,
            last_man_standing: q.last_man_standing,
            lms_window: q.last_man_standing_window,
            atb: q.auto_tie_breaker.clone(),
            members: vec![my_id],
            previous_members: Vec::new(),
            ring_id: RingId::default(),
            sync_in_progress: false,
            names,
        };
        vq.recalculate(false, false);
        vq
    }

    /// A reloaded corosync.conf (votequorum_exec_reload_config): our votes and
    /// expected votes from the new nodelist, two_node as the node count now
    /// implies, the names. Returns what corosync multicasts then: our NODEINFO
    /// and the qdevice's, and a RECONFIGURE for each of votes and expected
    /// votes that changed (every node, us included, applies it on delivery).
    pub fn reload(&mut self, config: &CorosyncConfig) -> Vec<VotequorumMessage> {
        let q = &config.quorum;
        let node_votes: u32 = config.nodes.iter().map(|n| n.votes).sum();
        let my_votes = config
            .nodes
            .iter()
            .find(|n| n.nodeid == self.my_id)
            .map_or(1, |n| n.votes);
        let two_node = q.two_node && config.nodes.len() == 2;
        let mut expected = q.expected_votes.unwrap_or(node_votes).max(1);
        if two_node {
            expected = 2;
        }
        self.two_node = two_node;
        self.names = config
            .nodes
            .iter()
            .map(|n| {
                let name = n.name.clone().unwrap_or_else(|| n.ring0_addr.to_string());
                (n.nodeid, name)
            })
            .collect();
        let (old_votes, old_expected) = {
            let me = self.us();
            let old = (me.votes, me.expected_votes);
            me.votes = my_votes;
            me.expected_votes = expected;
            old
        };
        let mut out: Vec<VotequorumMessage> = self
            .nodeinfos()
            .into_iter()
            .map(VotequorumMessage::NodeInfo)
            .collect();
        let reconfigure = |param, value| {
            VotequorumMessage::Reconfigure(Reconfigure {
                nodeid: self.my_id,
                value,
                param,
            })
        };
        if my_votes != old_votes {
            out.push(reconfigure(ReconfigureParam::NodeVotes, my_votes));
        }
        if expected != old_expected {
            out.push(reconfigure(ReconfigureParam::ExpectedVotes, expected));
        }
        out
    }

    fn us(&mut self) -> &mut NodeEntry {
        self.nodes
            .get_mut(&self.my_id)
            .expect("own entry always exists")
    }

    /// Our NODEINFO and the (empty) qdevice one, as sent during sync.
    pub fn nodeinfos(&self) -> [NodeInfo; 2] {
        let me = self.nodes[&self.my_id];
        [
            NodeInfo {
                nodeid: self.my_id,
                votes: me.votes,
                expected_votes: me.expected_votes,
                flags: me.flags,
            },
            NodeInfo {
                nodeid: QDEVICE_NODEID,
                votes: 0,
                expected_votes: 0,
                flags: 0,
            },
        ]
    }

    pub fn sync_init(&mut self, members: &[u32], ring_id: RingId) -> QuorumEffects {
        self.sync_in_progress = true;
        if members.len() > 1 {
            self.us().flags &= !flags::FIRST;
        }
        let mut left = false;
        for id in self.members.clone() {
            if !members.contains(&id) {
                left = true;
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.state = NodeState::Dead;
                }
            }
        }
        let mut effects = QuorumEffects::default();
        if self.last_man_standing {
            let n = members.len() as u32;
            if (n >= self.quorum && left)
                || (n <= self.quorum && self.atb.is_some() && self.lowest_member_present())
            {
                effects.arm_lms_timer = Some(self.lms_window);
            }
        }
        self.previous_members = std::mem::replace(&mut self.members, members.to_vec());
        self.ring_id = ring_id;
        // corosync recalculates only when sync completes; a partition's minority
        // would go on reporting quorum until then. Dropping it at once (never
        // granting it) closes that window.
        let (total, _) = self.total_votes();
        if self.quorate && total < self.quorum {
            self.quorate = false;
            self.us().flags &= !flags::QUORATE;
        }
        effects
    }

    pub fn sync_activate(&mut self) {
        self.recalculate(false, false);
        self.sync_in_progress = false;
    }

    pub fn last_man_standing_timer(&mut self) {
        if self.quorate {
            self.recalculate(true, true);
        }
    }

    pub fn handle_nodeinfo(&mut self, sender: u32, info: NodeInfo) {
        if info.nodeid == QDEVICE_NODEID {
            // No qdevice support: its slot never carries votes here.
            return;
        }
        if info.nodeid != sender {
            // corosync nodes send NODEINFO only about themselves (or the
            // qdevice); one about another node id is forged, and honouring it
            // would let a peer grow our node table without end.
            return;
        }
        let old = self.nodes.get(&info.nodeid).copied();
        let mut allow_downgrade = false;
        let mut by_node = false;
        let mut state = NodeState::Member;
        if info.flags & flags::LEAVING != 0 {
            state = NodeState::Leaving;
            allow_downgrade = true;
            by_node = true;
        }
        let quorate = self.quorate;
        if !quorate && info.flags & flags::QUORATE != 0 {
            allow_downgrade = true;
            self.us().expected_votes = info.expected_votes;
        }
        let us_expected = self.nodes[&self.my_id].expected_votes;
        let expected = if info.flags & flags::QUORATE != 0 {
            info.expected_votes
        } else {
            us_expected
        };
        let entry = NodeEntry {
            votes: info.votes,
            expected_votes: expected,
            flags: info.flags,
            state,
        };
        self.nodes.insert(info.nodeid, entry);
        if self.last_man_standing && info.votes > 1 {
            self.last_man_standing = false;
        }
        let changed = old.is_none_or(|o| {
            o.votes != entry.votes
                || o.expected_votes != entry.expected_votes
                || o.flags != entry.flags
                || o.state != entry.state
        });
        if changed || info.nodeid == self.my_id || info.flags & flags::FIRST != 0 {
            self.recalculate(allow_downgrade, by_node);
        }
        if self.wait_for_all
            && info.flags & flags::WFA_STATUS == 0
            && info.flags & flags::QUORATE != 0
        {
            self.set_wait_for_all_status(false);
        }
    }

    pub fn handle_reconfigure(&mut self, r: Reconfigure) {
        match r.param {
            ReconfigureParam::ExpectedVotes => {
                for n in self.nodes.values_mut() {
                    if n.state == NodeState::Member && r.value != 0 {
                        n.expected_votes = r.value;
                    }
                }
                // corosync recalculates allowing a decrease: a node removed
                // from the nodelist lowers the quorum at once.
                self.recalculate(true, false);
            }
            ReconfigureParam::NodeVotes => {
                if let Some(n) = self.nodes.get_mut(&r.nodeid) {
                    n.votes = r.value;
                }
                self.recalculate(true, false);
            }
            ReconfigureParam::CancelWaitForAll => {
                self.set_wait_for_all_status(false);
                self.recalculate(false, false);
            }
        }
    }

    fn set_wait_for_all_status(&mut self, on: bool) {
        self.wait_for_all_status = on;
        if on {
            self.us().flags |= flags::WFA_STATUS;
        } else {
            self.us().flags &= !flags::WFA_STATUS;
        }
    }

    fn live(&self) -> impl Iterator<Item = (&u32, &NodeEntry)> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.state == NodeState::Member)
    }

    fn total_votes(&self) -> (u32, u32) {
        self.live().fold((0u32, 0u32), |(v, c), (_, n)| {
            (v.saturating_add(n.votes), c.saturating_add(1))
        })
    }

    fn recalculate(&mut self, allow_decrease: bool, by_current_nodes: bool) {
        let (total, count) = self.total_votes();
        let cluster_members = if by_current_nodes { count } else { 0 };
        if total > self.nodes[&self.my_id].expected_votes {
            self.us().expected_votes = total;
        }
        self.quorum = self.calculate_quorum(allow_decrease, cluster_members);
        if cluster_members != 0 {
            for n in self.nodes.values_mut() {
                if n.state == NodeState::Member {
                    n.expected_votes = cluster_members;
                }
            }
        }
        self.are_we_quorate(total);
    }

    fn calculate_quorum(&self, allow_decrease: bool, max_expected: u32) -> u32 {
        let (total, nodes) = self.total_votes();
        let mut highest = self
            .live()
            .map(|(_, n)| n.expected_votes)
            .max()
            .unwrap_or(0);
        if max_expected > 0 {
            highest = max_expected;
        }
        // Votes and expected votes come off the wire: no overflow on hostile values.
        let half = |v: u32| v.saturating_add(2) / 2;
        let mut q = half(highest).max(half(total));
        if !allow_decrease {
            q = q.max(self.quorum);
        }
        if self.two_node && nodes <= 2 {
            q = 1;
        }
        q
    }

    fn are_we_quorate(&mut self, total: u32) {
        if self.wait_for_all && self.wait_for_all_status {
            if total != self.nodes[&self.my_id].expected_votes {
                return;
            }
            self.set_wait_for_all_status(false);
        }
        let mut quorate = self.quorum <= total;
        let expected = self.nodes[&self.my_id].expected_votes;
        let lost = self
            .previous_members
            .len()
            .saturating_sub(self.members.len()) as u32;
        if self.atb.is_some() && total == expected / 2 && lost < self.quorum && self.atb_wins() {
            quorate = true;
        }
        self.quorate = quorate;
        if quorate {
            self.us().flags |= flags::QUORATE;
        } else {
            self.us().flags &= !flags::QUORATE;
        }
        if self.wait_for_all {
            self.set_wait_for_all_status(!quorate);
        }
    }

    fn lowest_member_present(&self) -> bool {
        let lowest = self.names.keys().min().copied();
        lowest.is_some_and(|id| self.is_live(id))
    }

    fn is_live(&self, id: u32) -> bool {
        self.nodes
            .get(&id)
            .is_some_and(|n| n.state == NodeState::Member)
    }

    fn atb_wins(&self) -> bool {
        match &self.atb {
            None => false,
            Some(AutoTieBreaker::Lowest) => self.lowest_member_present(),
            Some(AutoTieBreaker::Highest) => {
                let highest = self.names.keys().max().copied();
                highest.is_some_and(|id| self.is_live(id))
            }
            Some(AutoTieBreaker::Nodes(list)) => {
                for (i, id) in list.iter().enumerate() {
                    if self.members.contains(id) {
                        return !list[..i].iter().any(|p| self.previous_members.contains(p));
                    }
                }
                false
            }
        }
    }

    pub fn is_quorate(&self) -> bool {
        self.quorate
    }

    /// The node's report, as corosync-quorumtool -s shows it.
    pub fn status(&self, ring_id: RingId, members: &[u32]) -> ClusterStatus {
        let (total, _) = self.total_votes();
        let expected = self.nodes[&self.my_id].expected_votes;
        let highest = self
            .live()
            .map(|(_, n)| n.expected_votes)
            .max()
            .unwrap_or(expected);
        let mut flags = Vec::new();
        if self.two_node {
            flags.push(QuorumFlag::TwoNode);
        }
        if self.quorate {
            flags.push(QuorumFlag::Quorate);
        }
        if self.wait_for_all {
            flags.push(QuorumFlag::WaitForAll);
        }
        if self.last_man_standing {
            flags.push(QuorumFlag::LastManStanding);
        }
        if self.atb.is_some() {
            flags.push(QuorumFlag::AutoTieBreaker);
        }
        let mut sorted = members.to_vec();
        sorted.sort_unstable();
        ClusterStatus {
            provider: "corosync_votequorum".into(),
            node_id: self.my_id,
            ring_id: RingIdView {
                rep: ring_id.rep,
                seq: ring_id.seq,
            },
            quorate: self.quorate,
            expected_votes: expected,
            highest_expected: highest,
            total_votes: total,
            quorum: self.quorum,
            flags,
            members: sorted
                .into_iter()
                .map(|id| MemberView {
                    node_id: id,
                    votes: self.nodes.get(&id).map_or(0, |n| n.votes),
                    name: self
                        .names
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| id.to_string()),
                })
                .collect(),
            stats: Default::default(),
        }
    }
}
