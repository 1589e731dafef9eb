//! The group service as a pure state machine, one per daemon: client
//! requests and the ring's ordered deliveries in, broadcasts and client
//! frames out. Every daemon of a ring sees the same deliveries in the same
//! order, so every decision here that depends only on them (who is in a
//! group, view ids, the quorum of a view, nodelist changes) comes out the
//! same on every node — the virtual synchrony CPG gives its clients.
//!
//! After each new ring every daemon queues a JoinList of its local members
//! before its sync messages (`Node::set_ring_hook`), so by the time the
//! ring's sync completes — one point of the order every member agrees on,
//! corosync nodes included — every Vireo member's list is delivered; corosync
//! nodes send none and have no members. There the groups become the union of
//! the lists and each group's members get a view. What was delivered between
//! the ring and that point is held back and delivered after the view, so a
//! node that just joined the ring starts from the same view as the others.

use std::collections::{BTreeMap, BTreeSet};

use super::frame::{Frame, DATA_MAX};
use super::proto::{Answer, Envelope, Event, GroupError, MemberId, NodelistOp, ViewId};
use crate::config::{CorosyncConfig, NodeConfig};

/// Longest group name.
pub const GROUP_NAME_MAX: usize = 255;

/// What the daemon must do after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Multicast this (an encoded [`Frame`]) in totempg group `vireo.cpg`;
    /// must not be lost: retry while the queue is full.
    Broadcast(Vec<u8>),
    /// Write this frame to local connection `conn`.
    Client(u32, Frame),
    /// The nodelist changed at this point of the order: rewrite
    /// corosync.conf and reconfigure the node and transport; then answer
    /// `conn`'s request `req` if it is ours (`result` is the node id).
    Nodelist {
        nodes: Vec<NodeConfig>,
        answer: Option<(u32, u64)>,
        nodeid: u32,
    },
    /// A nodelist change was refused; answer the requester if ours.
    NodelistRefused {
        answer: Option<(u32, u64)>,
        why: String,
    },
}

#[derive(Debug)]
struct SyncRound {
    ring_seq: u64,
    members: Vec<u32>,
    lists: BTreeMap<u32, Vec<(String, MemberId)>>,
    held: Vec<(u32, Vec<u8>)>,
}

#[derive(Debug)]
pub struct Groups {
    me: u32,
    inc: u64,
    nodes: Vec<NodeConfig>,
    expected_override: Option<u32>,
    ring_members: Vec<u32>,
    view: ViewId,
    quorate: bool,
    agreed: BTreeMap<String, BTreeSet<MemberId>>,
    /// Groups each local connection joined (also before the join is agreed).
    local: BTreeMap<u32, BTreeSet<String>>,
    sync: Option<SyncRound>,
    pub(super) out: Vec<Output>,
}

impl Groups {
    pub fn new(me: u32, inc: u64, config: &CorosyncConfig) -> Groups {
        Groups {
            me,
            inc,
            nodes: config.nodes.clone(),
            expected_override: config.quorum.expected_votes,
            ring_members: Vec::new(),
            view: ViewId::default(),
            quorate: false,
            agreed: BTreeMap::new(),
            local: BTreeMap::new(),
            sync: None,
            out: Vec::new(),
        }
    }

    pub fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    pub fn member(&self, conn: u32) -> MemberId {
        MemberId {
            node: self.me,
            inc: self.inc,
            conn,
        }
    }

    /// Whether the current view may write (a strict majority of votes).
    pub fn quorate(&self) -> bool {
        self.quorate
    }

    pub fn view(&self) -> ViewId {
        self.view
    }

    /// A nodelist read from disk (SIGHUP, `corosync-cfgtool -R`): used for
    /// the quorum of the next views. Unlike an ordered change, nodes may
    /// apply it at different places.
    pub fn set_config(&mut self, config: &CorosyncConfig) {
        self.nodes = config.nodes.clone();
        self.expected_override = config.quorum.expected_votes;
    }

    pub fn join(&mut self, conn: u32, req: u64, group: &str) {
        if let Err(e) = check_name(group) {
            return self.reply(conn, req, Err(e));
        }
        self.local.entry(conn).or_default().insert(group.into());
        let member = self.member(conn);
        self.broadcast(&Envelope::Join {
            group: group.into(),
            member,
        });
        self.reply(conn, req, Ok(Answer::Joined { member }));
    }

    pub fn leave(&mut self, conn: u32, req: u64, group: &str) {
        let joined = self.local.get_mut(&conn).is_some_and(|g| g.remove(group));
        if !joined {
            return self.reply(conn, req, Err(GroupError::NotMember(group.into())));
        }
        let member = self.member(conn);
        self.broadcast(&Envelope::Leave {
            group: group.into(),
            member,
        });
        self.reply(conn, req, Ok(Answer::Done));
    }

    /// The envelope to multicast for a client's message, or why not.
    pub fn send(
        &self,
        conn: u32,
        group: &str,
        data: Vec<u8>,
        require_quorum: bool,
    ) -> Result<Vec<u8>, GroupError> {
        if !self.local.get(&conn).is_some_and(|g| g.contains(group)) {
            return Err(GroupError::NotMember(group.into()));
        }
        if data.len() > DATA_MAX {
            return Err(GroupError::TooLarge(data.len()));
        }
        if require_quorum && !self.quorate {
            return Err(GroupError::NotQuorate);
        }
        let env = Envelope::Msg {
            group: group.into(),
            from: self.member(conn),
        };
        Ok(Frame::new(&env, data).encode())
    }

    /// A nodelist change, ordered through the ring; answered on delivery.
    pub fn nodelist(&mut self, conn: u32, req: u64, change: NodelistOp) {
        if let NodelistOp::Add { name, .. } = &change {
            if let Err(e) = check_name(name) {
                return self.reply(conn, req, Err(e));
            }
        }
        self.broadcast(&Envelope::Nodelist { change, conn, req });
    }

    /// A local connection closed: it leaves every group it joined.
    pub fn gone(&mut self, conn: u32) {
        let member = self.member(conn);
        for group in self.local.remove(&conn).unwrap_or_default() {
            self.broadcast(&Envelope::Leave { group, member });
        }
    }

    /// A new regular configuration: start the group sync (the JoinList is
    /// already queued by the ring hook).
    pub fn config(&mut self, ring_seq: u64, members: &[u32]) {
        self.ring_members = members.to_vec();
        self.ring_members.sort_unstable();
        let held = self.sync.take().map(|s| s.held).unwrap_or_default();
        self.sync = Some(SyncRound {
            ring_seq,
            members: self.ring_members.clone(),
            lists: BTreeMap::new(),
            held,
        });
    }

    /// Every group each local connection joined, for the JoinList.
    pub fn local_list(&self) -> Vec<(String, MemberId)> {
        let mut mine = Vec::new();
        for (conn, groups) in &self.local {
            for g in groups {
                mine.push((g.clone(), self.member(*conn)));
            }
        }
        mine
    }

    /// The JoinList message for ring `ring_seq` from a local list.
    pub fn joinlist(ring_seq: u64, members: Vec<(String, MemberId)>) -> Vec<u8> {
        Frame::new(&Envelope::JoinList { ring_seq, members }, Vec::new()).encode()
    }

    /// The ring's sync completed: every Vireo member's JoinList is in.
    pub fn sync_completed(&mut self, ring_seq: u64) {
        if self.sync.as_ref().is_some_and(|r| r.ring_seq == ring_seq) {
            self.complete_sync();
        }
    }

    /// The transitional configuration: the ring broke and these remain.
    pub fn transitional(&mut self, members: &[u32]) {
        let quorate = self.majority(members);
        if !quorate {
            self.quorate = false;
        }
        let ev = Event::Transitional {
            nodes: members.to_vec(),
            quorate,
        };
        let conns: Vec<u32> = self.local.keys().copied().collect();
        for conn in conns {
            self.emit_to(conn, &ev, Vec::new());
        }
    }

    /// A message of group `vireo.cpg`, in agreed order.
    pub fn deliver(&mut self, sender: u32, bytes: Vec<u8>) {
        let Ok(frame) = Frame::decode(&bytes) else {
            return;
        };
        let Ok(env) = frame.parse::<Envelope>() else {
            return;
        };
        if let Envelope::JoinList { ring_seq, members } = env {
            return self.record_joinlist(sender, ring_seq, members);
        }
        match &mut self.sync {
            Some(round) => round.held.push((sender, bytes)),
            None => self.apply(sender, env, frame.data),
        }
    }

    fn record_joinlist(&mut self, sender: u32, ring_seq: u64, members: Vec<(String, MemberId)>) {
        let Some(round) = &mut self.sync else { return };
        if round.ring_seq != ring_seq || !round.members.contains(&sender) {
            return;
        }
        // A node speaks only for its own members.
        let own = members.into_iter().filter(|(_, m)| m.node == sender);
        round.lists.insert(sender, own.collect());
    }

    fn complete_sync(&mut self) {
        let Some(round) = self.sync.take() else {
            return;
        };
        let mut agreed: BTreeMap<String, BTreeSet<MemberId>> = BTreeMap::new();
        for (g, m) in round.lists.into_values().flatten() {
            agreed.entry(g).or_default().insert(m);
        }
        let old = std::mem::replace(&mut self.agreed, agreed);
        self.view = ViewId {
            ring_seq: round.ring_seq,
            n: 0,
        };
        self.quorate = self.majority(&self.ring_members);
        let mut names: BTreeSet<String> = self.agreed.keys().cloned().collect();
        names.extend(old.keys().cloned());
        for g in names {
            let before = old.get(&g).cloned().unwrap_or_default();
            self.emit_view(&g, &before);
        }
        for (sender, bytes) in round.held {
            // Held messages were decoded once already; JoinLists never are.
            if let Ok(frame) = Frame::decode(&bytes) {
                if let Ok(env) = frame.parse::<Envelope>() {
                    self.apply(sender, env, frame.data);
                }
            }
        }
    }

    fn apply(&mut self, sender: u32, env: Envelope, data: Vec<u8>) {
        match env {
            Envelope::Join { group, member } if member.node == sender => {
                let before = self.agreed.get(&group).cloned().unwrap_or_default();
                if self.agreed.entry(group.clone()).or_default().insert(member) {
                    self.view.n += 1;
                    self.emit_view(&group, &before);
                }
            }
            Envelope::Leave { group, member } if member.node == sender => {
                let before = self.agreed.get(&group).cloned().unwrap_or_default();
                let removed = self
                    .agreed
                    .get_mut(&group)
                    .is_some_and(|m| m.remove(&member));
                if removed {
                    self.view.n += 1;
                    self.emit_view(&group, &before);
                }
            }
            Envelope::Msg { group, from } if from.node == sender => {
                let ev = Event::Message { group, from };
                for conn in self.local_members(group_of(&ev)) {
                    self.emit_to(conn, &ev, data.clone());
                }
            }
            Envelope::Nodelist { change, conn, req } => {
                let answer = (sender == self.me).then_some((conn, req));
                self.apply_nodelist(change, answer);
            }
            _ => {}
        }
    }

    fn apply_nodelist(&mut self, change: NodelistOp, answer: Option<(u32, u64)>) {
        // Only a quorate view may change the nodelist: a minority that added
        // or removed nodes would come back with a nodelist the others lack.
        if !self.quorate {
            let why = "the cluster is not quorate here; nodelist changes need a majority".into();
            return self.out.push(Output::NodelistRefused { answer, why });
        }
        match nodelist_after(&self.nodes, &change) {
            Ok((nodes, nodeid)) => {
                let changed = nodes != self.nodes;
                self.nodes = nodes.clone();
                self.out.push(Output::Nodelist {
                    nodes,
                    answer,
                    nodeid,
                });
                if changed {
                    // The quorum of the current view may have moved with the
                    // expected votes: every group gets a view saying so.
                    self.view.n += 1;
                    self.quorate = self.sync.is_none() && self.majority(&self.ring_members);
                    let names: Vec<String> = self.agreed.keys().cloned().collect();
                    for g in names {
                        let same = self.agreed[&g].clone();
                        self.emit_view(&g, &same);
                    }
                }
            }
            Err(why) => self.out.push(Output::NodelistRefused { answer, why }),
        }
    }

    /// Sends the group's current view to its local members (and to local
    /// connections that were members before, so a leaver sees itself go).
    fn emit_view(&mut self, group: &str, before: &BTreeSet<MemberId>) {
        let now = self.agreed.get(group).cloned().unwrap_or_default();
        let ev = Event::View {
            group: group.into(),
            view: self.view,
            members: now.iter().copied().collect(),
            joined: now.difference(before).copied().collect(),
            left: before.difference(&now).copied().collect(),
            nodes: self.ring_members.clone(),
            quorate: self.quorate,
        };
        let mut conns: BTreeSet<u32> = BTreeSet::new();
        for m in now.iter().chain(before.iter()) {
            if m.node == self.me && m.inc == self.inc && self.local.contains_key(&m.conn) {
                conns.insert(m.conn);
            }
        }
        for conn in conns {
            self.emit_to(conn, &ev, Vec::new());
        }
    }

    fn local_members(&self, group: &str) -> Vec<u32> {
        self.agreed
            .get(group)
            .into_iter()
            .flatten()
            .filter(|m| m.node == self.me && m.inc == self.inc && self.local.contains_key(&m.conn))
            .map(|m| m.conn)
            .collect()
    }

    /// A strict majority of the nodelist's votes (or of
    /// quorum.expected_votes) among `members`.
    fn majority(&self, members: &[u32]) -> bool {
        let all: u32 = self.nodes.iter().map(|n| n.votes).sum();
        let expected = self.expected_override.unwrap_or(all).max(1);
        let present: u32 = self
            .nodes
            .iter()
            .filter(|n| members.contains(&n.nodeid))
            .map(|n| n.votes)
            .sum();
        u64::from(present) * 2 > u64::from(expected)
    }

    fn broadcast(&mut self, env: &Envelope) {
        self.out
            .push(Output::Broadcast(Frame::new(env, Vec::new()).encode()));
    }

    fn reply(&mut self, conn: u32, req: u64, result: Result<Answer, GroupError>) {
        self.emit_to(conn, &Event::Reply { req, result }, Vec::new());
    }

    fn emit_to(&mut self, conn: u32, ev: &Event, data: Vec<u8>) {
        self.out.push(Output::Client(conn, Frame::new(ev, data)));
    }
}

fn group_of(ev: &Event) -> &str {
    match ev {
        Event::Message { group, .. } | Event::View { group, .. } => group,
        _ => "",
    }
}

fn check_name(name: &str) -> Result<(), GroupError> {
    if name.is_empty() || name.len() > GROUP_NAME_MAX || name.chars().any(char::is_control) {
        return Err(GroupError::BadRequest(format!(
            "name {name:?}: 1 to {GROUP_NAME_MAX} bytes without control characters"
        )));
    }
    Ok(())
}

/// The nodelist after `change`, and the node id it concerns. Deterministic:
/// every node computes it from the same list at the same place.
pub fn nodelist_after(
    nodes: &[NodeConfig],
    change: &NodelistOp,
) -> Result<(Vec<NodeConfig>, u32), String> {
    let mut nodes = nodes.to_vec();
    match change {
        NodelistOp::Add { name, addr } => {
            let by_addr = nodes.iter().find(|n| n.ring0_addr == *addr);
            let by_name = nodes.iter().find(|n| n.name.as_deref() == Some(name));
            match (by_addr, by_name) {
                (Some(a), Some(b)) if a.nodeid == b.nodeid => {
                    let id = a.nodeid;
                    return Ok((nodes, id));
                }
                (Some(a), _) => {
                    return Err(format!(
                        "address {addr} is already node {} ({})",
                        a.nodeid,
                        a.name.as_deref().unwrap_or("no name")
                    ))
                }
                (None, Some(b)) => {
                    return Err(format!(
                        "name {name} is already node {} at {}",
                        b.nodeid, b.ring0_addr
                    ))
                }
                (None, None) => {}
            }
            let nodeid = nodes.iter().map(|n| n.nodeid).max().unwrap_or(0) + 1;
            nodes.push(NodeConfig {
                nodeid,
                ring0_addr: *addr,
                name: Some(name.clone()),
                votes: 1,
                line: 0,
            });
            Ok((nodes, nodeid))
        }
        NodelistOp::Remove { nodeid } => {
            let before = nodes.len();
            nodes.retain(|n| n.nodeid != *nodeid);
            if nodes.len() == before {
                return Err(format!("node {nodeid} is not in the nodelist"));
            }
            if nodes.is_empty() {
                return Err("the last node cannot be removed".into());
            }
            Ok((nodes, *nodeid))
        }
    }
}
