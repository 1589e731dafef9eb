//! A whole membership node without I/O: totemsrp, totempg packing, the sync
//! protocol and votequorum stacked the way corosync stacks them. The daemon and the
//! simulated-network tests both drive this type.

mod quorum;
mod sync_engine;

use std::collections::{BTreeMap, VecDeque};

pub use quorum::{QuorumEffects, Votequorum, QDEVICE_NODEID};
pub use sync_engine::{SyncEngine, SyncStep, ADVERTISED_SERVICES};

use crate::config::{CorosyncConfig, Timers};
use crate::service::ServiceMessage;
use crate::status::{ClusterStatus, NodeStats};
use crate::sync::SyncMessage;
use crate::totempg::{
    GroupMessage, Packer, Reassembler, TotempgPacket, GROUP_SERVICES, GROUP_SYNC,
    UDPU_MAX_PACKET_LEN,
};
use crate::totemsrp::{self, Action, ConfigChange, ConfigKind, Destination, Srp, Timer};
use crate::votequorum::VotequorumMessage;
use crate::wire::{RingId, TotemMessage};

/// The totempg group Vireo's own ordered messages travel in; corosync nodes are
/// not in it and ignore them.
pub const GROUP_VIREO: &[u8] = b"vireo";

/// The totempg group of the group messaging service (`crate::groups`):
/// client joins, leaves and messages, and ordered nodelist changes.
pub const GROUP_CPG: &[u8] = b"vireo.cpg";

/// Application packets a node holds for its client while the ring cannot take
/// them (totemsrp's own queue holds as many; see [`Node::broadcast`]).
pub const APP_QUEUE_MAX: usize = totemsrp::NEW_MESSAGE_QUEUE_MAX;

/// Every timer a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeTimer {
    Totem(Timer),
    LastManStanding,
    /// The ring was lost and no new one installed within consensus: stop
    /// claiming quorum (see `Node::ring_lost`).
    RingLost,
}

/// What the caller must do after a call into the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    Send(Destination, TotemMessage),
    Arm(NodeTimer, u32),
    Cancel(NodeTimer),
    /// An application message (group "vireo") in agreed order.
    Deliver {
        sender: u32,
        payload: Vec<u8>,
    },
    /// A regular configuration (the membership view).
    Config {
        ring_id: RingId,
        members: Vec<u32>,
    },
    /// The transitional configuration before the next regular one: deliveries
    /// after it are those extended virtual synchrony allows to differ between
    /// partitions (old-ring messages past a hole, from surviving senders only).
    Transitional {
        ring_id: RingId,
        members: Vec<u32>,
    },
    StoreRingSeq(u64),
    /// A message of group "vireo.cpg" (the group messaging service) in
    /// agreed order, in the same stream as `Deliver` and the configurations.
    GroupDeliver {
        sender: u32,
        payload: Vec<u8>,
    },
    /// The sync of ring `ring_id` completed here: every member's messages
    /// queued before its sync barriers (the ring hook's) are delivered.
    SyncCompleted {
        ring_id: RingId,
    },
    /// A node ran `corosync-cfgtool -R` (cfg's RELOAD_CONFIG reached us):
    /// re-read corosync.conf, as every corosync node of the ring does.
    ReloadConfig {
        sender: u32,
    },
}

/// Called at each regular configuration, before the sync messages are
/// queued: a payload for group [`GROUP_CPG`] that every member therefore
/// delivers before sync completes (see `NodeAction::SyncCompleted`).
pub type RingHook = Box<dyn FnMut(RingId, &[u32]) -> Option<Vec<u8>> + Send>;

pub struct Node {
    /// Not part of the Debug output: a closure.
    ring_hook: Option<RingHook>,
    srp: Srp,
    assembly: BTreeMap<u32, Reassembler>,
    sync: SyncEngine,
    quorum: Votequorum,
    /// Members of the last regular configuration.
    members: Vec<u32>,
    /// The ring and members votequorum last activated (what corosync's quorum
    /// callback, and so corosync-quorumtool, reports).
    view: (RingId, Vec<u32>),
    /// The report as of the last votequorum activation.
    activated: Option<ClusterStatus>,
    /// Out of an operational ring for token + consensus: the last ring is gone
    /// and no new one formed (a minority can cycle through gather and recovery
    /// forever). corosync keeps reporting its last quorum then; we report none,
    /// so no partition that cannot form a ring claims quorum.
    ring_lost: bool,
    was_operational: bool,
    /// We queued messages since the last token hold cancel.
    hold_cancel_due: bool,
    /// Application messages not yet handed to totemsrp, oldest first, each
    /// as its packets: a message goes in whole, so no sync message can land
    /// between its fragments (the reassembler would drop it).
    app_pending: VecDeque<Vec<Vec<u8>>>,
    /// Packets in `app_pending`.
    app_pending_packets: usize,
    /// How many application packets totemsrp's queue may hold at once.
    app_feed_limit: usize,
    /// Delivered packets whose sender is not a member, dropped.
    foreign_packets_dropped: u64,
    consensus_ms: u32,
    out: Vec<NodeAction>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("srp", &self.srp)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

/// A few join periods past consensus: a ring that is merely reforming is
/// operational again by then.
fn ring_lost_after(t: &Timers) -> u32 {
    t.consensus + 4 * t.join
}

/// How many application messages may wait in totemsrp's backlog.
fn feed_limit(t: &Timers) -> usize {
    t.window_size.max(t.max_messages) as usize
}

impl Node {
    pub fn new(config: &CorosyncConfig, my_id: u32, stored_ring_seq: u64) -> Self {
        let mut srp = Srp::new(my_id, config.totem.timers, stored_ring_seq);
        srp.set_cancel_hold_on_retransmit(config.totem.cancel_token_hold_on_retransmit);
        srp.set_nodelist(config.nodes.iter().map(|n| n.nodeid));
        let initial_ring = srp.ring_id();
        let quorum = Votequorum::new(config, my_id);
        let first_report = quorum.status(initial_ring, &[my_id]);
        Node {
            ring_hook: None,
            srp,
            assembly: BTreeMap::new(),
            sync: SyncEngine::default(),
            quorum,
            members: vec![my_id],
            view: (initial_ring, vec![my_id]),
            activated: Some(first_report),
            ring_lost: false,
            consensus_ms: ring_lost_after(&config.totem.timers),
            was_operational: false,
            hold_cancel_due: false,
            app_pending: VecDeque::new(),
            app_pending_packets: 0,
            foreign_packets_dropped: 0,
            app_feed_limit: feed_limit(&config.totem.timers),
            out: Vec::new(),
        }
    }

    pub fn node_id(&self) -> u32 {
        self.srp.node_id()
    }

    /// Installs the [`RingHook`] (the group service's JoinList).
    pub fn set_ring_hook(&mut self, hook: RingHook) {
        self.ring_hook = Some(hook);
    }

    pub fn start(&mut self) -> Vec<NodeAction> {
        let actions = self.srp.start();
        self.absorb(actions);
        self.take()
    }

    pub fn receive(&mut self, msg: TotemMessage) -> Vec<NodeAction> {
        let actions = self.srp.receive(msg);
        self.absorb(actions);
        self.take()
    }

    pub fn timer_fired(&mut self, timer: NodeTimer) -> Vec<NodeAction> {
        match timer {
            NodeTimer::Totem(t) => {
                let actions = self.srp.timer_fired(t);
                self.absorb(actions);
            }
            NodeTimer::LastManStanding => self.quorum.last_man_standing_timer(),
            NodeTimer::RingLost => {
                if self.srp.state() != totemsrp::MembState::Operational {
                    self.ring_lost = true;
                }
            }
        }
        self.take()
    }

    /// Queues an application message for ordered delivery to all members;
    /// false (nothing queued, try again later) when [`APP_QUEUE_MAX`] packets
    /// already wait.
    ///
    /// Application messages wait here until the ring is operational and sync
    /// has completed, as corosync refuses client messages during sync
    /// (EINPROGRESS) and beyond its queue's reserve (EAGAIN), and even then
    /// totemsrp gets at most one window of them at a time. Otherwise a busy
    /// client fills totemsrp's queue ahead of the sync and votequorum messages
    /// of the next ring, which then wait behind thousands of messages or are
    /// refused outright, and the new ring never completes sync.
    pub fn broadcast(&mut self, payload: Vec<u8>) -> bool {
        self.broadcast_to(GROUP_VIREO, payload)
    }

    /// [`Node::broadcast`] to another totempg group ([`GROUP_CPG`]).
    pub fn broadcast_to(&mut self, group: &[u8], payload: Vec<u8>) -> bool {
        if self.app_pending_packets >= APP_QUEUE_MAX {
            return false;
        }
        let packets = pack(group, payload);
        if self.app_pending_packets + packets.len() > APP_QUEUE_MAX {
            return false;
        }
        self.app_pending_packets += packets.len();
        self.app_pending.push_back(packets);
        self.absorb(Vec::new());
        true
    }

    /// Applies a reloaded corosync.conf, as corosync does on
    /// `corosync-cfgtool -R`: the nodelist (who may join our rings; the
    /// transport's peers are the caller's) and votequorum's votes and
    /// expected votes, announced to the ring (NODEINFO, RECONFIGURE).
    /// Timers, the cluster name and our own node id stay as they were, as in
    /// corosync, where changing them needs a restart.
    pub fn reconfigure(&mut self, config: &CorosyncConfig) -> Vec<NodeAction> {
        // Every member must run the timers the file gives now: a node that
        // kept the token timeout of the nodelist it started with (node 1 of
        // a cluster grown by joins: 1 s instead of 10.1 s at 16 nodes) sees
        // a lost node leave its view long before that node, with the longer
        // timeout, stops its VMs, and the agents' fencing bound assumes one T.
        self.srp.set_timers(config.totem.timers);
        self.consensus_ms = ring_lost_after(&config.totem.timers);
        self.app_feed_limit = feed_limit(&config.totem.timers);
        self.srp.set_nodelist(config.nodes.iter().map(|n| n.nodeid));
        let gather = self.srp.pending();
        for m in self.quorum.reload(config) {
            self.send_group(GROUP_SERVICES, m.encode());
        }
        self.absorb(gather);
        self.take()
    }

    /// Any actions produced outside a call (none today); kept for symmetry.
    pub fn leave(&mut self) -> Vec<NodeAction> {
        let actions = self.srp.leave();
        self.absorb(actions);
        self.take()
    }

    /// What the node reports. While sync runs, the report stays the one taken
    /// when votequorum last activated (so members, votes and quorate always
    /// belong together), except that losing quorum shows at once.
    pub fn status(&self) -> ClusterStatus {
        let mut s = self.report();
        if self.ring_lost && s.quorate {
            s.quorate = false;
            s.flags.retain(|f| *f != crate::status::QuorumFlag::Quorate);
        }
        s.stats = self.stats();
        s
    }

    fn stats(&self) -> NodeStats {
        let reassembly: usize = self.assembly.values().map(Reassembler::held_bytes).sum();
        NodeStats {
            sort_queue_bytes: self.srp.queued_bytes() as u64,
            sort_queue_dropped: self.srp.queue_dropped(),
            reassembly_bytes: reassembly as u64,
            foreign_packets_dropped: self.foreign_packets_dropped,
            app_pending: self.app_pending.len() as u64,
        }
    }

    fn report(&self) -> ClusterStatus {
        match &self.activated {
            Some(snapshot) if self.sync.in_progress() => {
                let mut s = snapshot.clone();
                if !self.quorum.is_quorate() && s.quorate {
                    s.quorate = false;
                    s.flags.retain(|f| *f != crate::status::QuorumFlag::Quorate);
                }
                s
            }
            _ => self.quorum.status(self.view.0, &self.view.1),
        }
    }

    pub fn members(&self) -> &[u32] {
        &self.members
    }

    pub fn srp_state(&self) -> totemsrp::MembState {
        self.srp.state()
    }

    /// Actions a call without a return value left behind ([`Node::broadcast`]
    /// may cancel a token hold).
    pub fn take_pending(&mut self) -> Vec<NodeAction> {
        self.take()
    }

    fn take(&mut self) -> Vec<NodeAction> {
        std::mem::take(&mut self.out)
    }

    /// Queues a protocol message (sync, votequorum) straight into totemsrp:
    /// it goes before every application packet that has not reached totemsrp
    /// yet, and cannot be refused, since those hold at most a window there.
    fn send_group(&mut self, group: &[u8], payload: Vec<u8>) {
        self.hold_cancel_due = true;
        for p in pack(group, payload) {
            let queued = self.srp.broadcast(p);
            debug_assert!(queued, "totemsrp refused a protocol message");
        }
    }

    /// Hands waiting application messages to totemsrp while it holds fewer
    /// than the feed limit, once the ring is operational and synchronised.
    fn feed_application(&mut self) {
        if self.srp.state() != totemsrp::MembState::Operational || self.sync.in_progress() {
            return;
        }
        while self.srp.backlog() < self.app_feed_limit {
            let Some(packets) = self.app_pending.pop_front() else {
                return;
            };
            self.app_pending_packets -= packets.len();
            for p in packets {
                self.srp.broadcast(p);
            }
            self.hold_cancel_due = true;
        }
    }

    /// Turns totemsrp's actions into node actions, running the layers above on
    /// deliveries and configuration changes.
    fn absorb(&mut self, actions: Vec<Action>) {
        let mut actions = actions;
        loop {
            self.absorb_actions(actions);
            // Sync may have completed, or the token taken what was fed.
            self.feed_application();
            // Whatever we queued (application, sync or votequorum messages)
            // must not wait for an idle representative's hold retransmit:
            // corosync's totempg signals every mcast to totemsrp, which sends a
            // token hold cancel. Done here, after the actions, so the token it
            // frees is never handled in the middle of a configuration change.
            // Ends: each round needs newly queued messages, and there are
            // finitely many (at most APP_QUEUE_MAX of them application ones).
            if !std::mem::take(&mut self.hold_cancel_due) {
                break;
            }
            actions = self.srp.token_hold_cancel();
        }
        let operational = self.srp.state() == totemsrp::MembState::Operational;
        if self.was_operational && !operational {
            // token ms have passed already (token loss) or a change is under way.
            self.out
                .push(NodeAction::Arm(NodeTimer::RingLost, self.consensus_ms));
        } else if operational && !self.was_operational {
            self.out.push(NodeAction::Cancel(NodeTimer::RingLost));
            self.ring_lost = false;
        }
        self.was_operational = operational;
    }

    fn absorb_actions(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(to, msg) => self.out.push(NodeAction::Send(to, msg)),
                Action::Arm(t, ms) => self.out.push(NodeAction::Arm(NodeTimer::Totem(t), ms)),
                Action::Cancel(t) => self.out.push(NodeAction::Cancel(NodeTimer::Totem(t))),
                Action::StoreRingSeq(s) => self.out.push(NodeAction::StoreRingSeq(s)),
                Action::Deliver { sender, payload } => self.deliver_packet(sender, &payload),
                Action::Config(change) => self.config_change(change),
            }
        }
    }

    fn deliver_packet(&mut self, sender: u32, payload: &[u8]) {
        // Reassembly state is kept per sender, and the sender id comes off
        // the wire: one per configuration member (at most MESSAGE_SIZE_MAX
        // each) is all legitimate traffic needs; anything else would let a
        // peer grow the map without end.
        if !self.members.contains(&sender) {
            self.foreign_packets_dropped += 1;
            return;
        }
        let Ok(packet) = TotempgPacket::decode(payload) else {
            return;
        };
        let assembled = self.assembly.entry(sender).or_default().feed(&packet);
        for msg in assembled.messages {
            let Ok(group) = GroupMessage::decode(&msg) else {
                continue;
            };
            if group.is_for(GROUP_SYNC) {
                if let Ok(m) = SyncMessage::decode(&group.payload) {
                    let steps = self.sync.deliver(sender, m);
                    self.run_sync(steps);
                }
            } else if group.is_for(GROUP_SERVICES) {
                self.service_message(sender, &group.payload);
            } else if group.is_for(GROUP_VIREO) {
                self.out.push(NodeAction::Deliver {
                    sender,
                    payload: group.payload,
                });
            } else if group.is_for(GROUP_CPG) {
                self.out.push(NodeAction::GroupDeliver {
                    sender,
                    payload: group.payload,
                });
            }
        }
    }

    fn service_message(&mut self, sender: u32, payload: &[u8]) {
        match ServiceMessage::decode(payload) {
            Ok(ServiceMessage::Votequorum(VotequorumMessage::NodeInfo(info))) => {
                self.quorum.handle_nodeinfo(sender, info)
            }
            Ok(ServiceMessage::Votequorum(VotequorumMessage::Reconfigure(r))) => {
                self.quorum.handle_reconfigure(r)
            }
            Ok(ServiceMessage::Other { header, .. })
                if header.service() == crate::service::SERVICE_CFG
                    && header.function() == crate::service::CFG_RELOAD_CONFIG =>
            {
                self.out.push(NodeAction::ReloadConfig { sender })
            }
            _ => {}
        }
    }

    fn config_change(&mut self, change: ConfigChange) {
        match change.kind {
            ConfigKind::Transitional => {
                self.out.push(NodeAction::Transitional {
                    ring_id: change.ring_id,
                    members: change.members.clone(),
                });
                for id in &change.left {
                    self.assembly.remove(id);
                }
            }
            ConfigKind::Regular => {
                self.members = change.members.clone();
                self.members.sort_unstable();
                let members = &self.members;
                self.assembly.retain(|id, _| members.contains(id));
                self.out.push(NodeAction::Config {
                    ring_id: change.ring_id,
                    members: self.members.clone(),
                });
                let effects = self.quorum.sync_init(&change.members, change.ring_id);
                if let Some(ms) = effects.arm_lms_timer {
                    self.out
                        .push(NodeAction::Arm(NodeTimer::LastManStanding, ms));
                }
                if let Some(hook) = self.ring_hook.as_mut() {
                    if let Some(payload) = hook(change.ring_id, &self.members) {
                        self.send_group(GROUP_CPG, payload);
                    }
                }
                let steps = self.sync.start(&change.members, change.ring_id);
                self.run_sync(steps);
            }
        }
    }

    fn run_sync(&mut self, steps: Vec<SyncStep>) {
        for step in steps {
            match step {
                SyncStep::Send(m) => {
                    self.send_group(GROUP_SYNC, m.encode());
                }
                SyncStep::Process(service) if service == sync_engine::SERVICE_VOTEQUORUM => {
                    for info in self.quorum.nodeinfos() {
                        let m = VotequorumMessage::NodeInfo(info).encode();
                        self.send_group(GROUP_SERVICES, m);
                    }
                }
                SyncStep::Process(_) => {}
                SyncStep::Activate(service) if service == sync_engine::SERVICE_VOTEQUORUM => {
                    self.quorum.sync_activate();
                    self.view = (self.sync.ring_id(), self.members.clone());
                    self.activated = Some(self.quorum.status(self.view.0, &self.view.1));
                }
                SyncStep::Completed => self.out.push(NodeAction::SyncCompleted {
                    ring_id: self.sync.ring_id(),
                }),
                SyncStep::Activate(_) => {}
            }
        }
    }
}

/// One message cut into totempg packets, each an MCAST payload.
fn pack(group: &[u8], payload: Vec<u8>) -> Vec<Vec<u8>> {
    let mut packer = Packer::new(UDPU_MAX_PACKET_LEN);
    let mut packets = packer.push_group(&GroupMessage::new(group, payload));
    packets.extend(packer.flush());
    packets.into_iter().map(|p| p.encode()).collect()
}

#[cfg(test)]
mod sim;
#[cfg(test)]
pub(crate) use sim::config_text as sim_config_text;
#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod chaos_tests;
#[cfg(test)]
mod load_tests;
#[cfg(test)]
mod partition_tests;
#[cfg(test)]
mod tests;
