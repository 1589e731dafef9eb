//! totemsrp, the Totem single-ring ordering and membership protocol, as a state
//! machine with no I/O and no clock (exec/totemsrp.c is the reference).
//!
//! The caller feeds it received messages ([`Srp::receive`]) and fired timers
//! ([`Srp::timer_fired`]) and queues application payloads ([`Srp::broadcast`]); every
//! call returns the [`Action`]s to carry out: datagrams to send, timers to arm or
//! cancel, messages delivered in total order and configuration changes. Keeping time
//! and sockets outside makes the protocol testable with a simulated network.
//!
//! Files: `membership` holds gather → commit → recovery → operational; `ordering`
//! holds the token, message ordering, retransmission and flow control; `queue` the
//! sort queue and corosync's wrapping sequence comparisons.

#[cfg(test)]
mod gather_tests;
mod membership;
mod ordering;
mod queue;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, VecDeque};

use crate::config::Timers;
use crate::wire::{Mcast, MembCommitToken, RingId, TotemMessage};
use queue::SortQueue;

pub use queue::{entry_cost, seq_lt, seq_lte, QUEUE_BYTES_MAX, QUEUE_SIZE};

/// The timers totemsrp runs; each is either armed once or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// No token (or commit token) in time: the ring is lost.
    TokenLoss,
    /// Re-send the last token we sent, it may have been lost.
    TokenRetransmit,
    /// The representative holds an idle token and re-sends it at this pace.
    TokenHoldRetransmit,
    /// Re-send our join message while gathering.
    Join,
    /// Give up waiting for agreement on the membership.
    Consensus,
    /// Idle ring: the representative looks for other rings.
    MergeDetect,
    /// Operational: the next message we multicast goes to every node of the
    /// nodelist, not only to the ring, so that other rings notice us even
    /// while traffic keeps our token from going idle (corosync's udpu sends to
    /// inactive members the same way, every 2 × merge).
    McastToAll,
}

/// Where a datagram goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Every node of the nodelist (udpu: one unicast each).
    All,
    /// The members of the ring a message belongs to (udpu: one unicast each).
    /// Application messages go only there, as corosync's udpu sends them only
    /// to active members: sends to unreachable peers wait in the kernel for
    /// ARP and fill the socket's send buffer, and then the token cannot go out.
    Members(Vec<u32>),
    /// The next node on the ring (token and commit token).
    Node(u32),
}

/// Whether a configuration change is the transitional or the regular one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Transitional,
    Regular,
}

/// A membership configuration delivered to the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub kind: ConfigKind,
    pub members: Vec<u32>,
    pub left: Vec<u32>,
    pub joined: Vec<u32>,
    pub ring_id: RingId,
}

/// What the caller must do after a call into the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(Destination, TotemMessage),
    Arm(Timer, u32),
    Cancel(Timer),
    /// A message in agreed order: the sender's node id and the MCAST payload.
    Deliver {
        sender: u32,
        payload: Vec<u8>,
    },
    Config(ConfigChange),
    /// Persist the ring sequence (corosync's `ringid_<nodeid>` file).
    StoreRingSeq(u64),
}

/// Membership states (totemsrp's memb_state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembState {
    Operational,
    Gather,
    Commit,
    Recovery,
}

/// The protocol instance of one node.
#[derive(Debug)]
pub struct Srp {
    pub(crate) my_id: u32,
    pub(crate) timers: Timers,
    pub(crate) cancel_hold_on_retransmit: bool,
    pub(crate) state: MembState,
    pub(crate) ring_id: RingId,
    pub(crate) old_ring_id: RingId,
    pub(crate) token_ring_id_seq: u64,

    pub(crate) proc_list: Vec<u32>,
    pub(crate) failed_list: Vec<u32>,
    pub(crate) memb_list: Vec<u32>,
    pub(crate) new_memb_list: Vec<u32>,
    pub(crate) trans_memb_list: Vec<u32>,
    pub(crate) deliver_memb_list: Vec<u32>,
    pub(crate) leave_memb_list: Vec<u32>,
    pub(crate) consensus: BTreeSet<u32>,
    pub(crate) commit_token: Option<MembCommitToken>,
    pub(crate) originated_orf_token: bool,
    pub(crate) orf_token_discard: bool,
    pub(crate) failed_to_recv: bool,

    /// The last token (or commit token) we sent and to whom, for retransmission.
    pub(crate) last_token: Option<(u32, TotemMessage)>,
    pub(crate) next_node: u32,

    pub(crate) aru: u32,
    pub(crate) high_seq_received: u32,
    pub(crate) install_seq: u32,
    pub(crate) high_delivered: u32,
    pub(crate) last_aru: u32,
    pub(crate) aru_count: u32,
    pub(crate) seq_unchanged: u32,
    pub(crate) last_seq: u32,
    pub(crate) retrans_flg_count: u32,
    pub(crate) rotation_counter: u32,
    pub(crate) set_retrans_flg: bool,
    pub(crate) received_flg: bool,
    pub(crate) token_seq: u32,
    pub(crate) last_released: u32,
    pub(crate) token_held: bool,
    pub(crate) merge_detect_outstanding: bool,
    /// Send the next multicast to every node (see [`Timer::McastToAll`]).
    pub(crate) mcast_to_all_due: bool,
    pub(crate) global_seqno: i32,

    pub(crate) old_ring_state_saved: bool,
    pub(crate) old_ring_state_aru: u32,
    pub(crate) old_ring_state_high_seq_received: u32,

    pub(crate) regular: SortQueue,
    pub(crate) recovery: SortQueue,
    /// Messages the sort queues dropped for their byte budget, ever.
    pub(crate) queue_dropped: u64,
    pub(crate) new_messages: VecDeque<Vec<u8>>,
    pub(crate) retrans_messages: VecDeque<Mcast>,

    // Flow control: messages we sent on the last token, our previous and current backlog.
    pub(crate) trc: u32,
    pub(crate) pbl: u32,
    pub(crate) cbl: u32,

    /// The node ids of the nodelist, when known: on udpu an id outside it has
    /// no address and can never be a member, so it never enters our sets
    /// (None: any id, for instances run without a configuration).
    pub(crate) nodelist: Option<BTreeSet<u32>>,

    pub(crate) out: Vec<Action>,
    /// Messages to ourselves: our own joins and hold cancels (udpu sends them to
    /// every member, us included, and the protocol counts on seeing them) and a
    /// token whose next node is us.
    pub(crate) loopback: VecDeque<TotemMessage>,
}

/// The first message sequence number of a ring (SEQNO_START_MSG).
pub const SEQNO_START_MSG: u32 = 0;
/// The first token sequence number of a ring (SEQNO_START_TOKEN).
pub const SEQNO_START_TOKEN: u32 = 0;
/// How many unsent application messages we queue before refusing more.
pub const NEW_MESSAGE_QUEUE_MAX: usize = 10_000;

impl Srp {
    /// A node that has not joined anything yet. `stored_ring_seq` is the sequence
    /// persisted by a previous run (0 if none); like corosync we add one so a
    /// restarted node never reuses a ring id.
    pub fn new(my_id: u32, timers: Timers, stored_ring_seq: u64) -> Self {
        let ring_id = RingId {
            rep: my_id,
            seq: stored_ring_seq + 1,
        };
        Srp {
            my_id,
            timers,
            cancel_hold_on_retransmit: false,
            state: MembState::Gather,
            ring_id,
            old_ring_id: ring_id,
            token_ring_id_seq: ring_id.seq,
            proc_list: Vec::new(),
            failed_list: Vec::new(),
            memb_list: vec![my_id],
            new_memb_list: Vec::new(),
            trans_memb_list: Vec::new(),
            deliver_memb_list: Vec::new(),
            leave_memb_list: Vec::new(),
            consensus: BTreeSet::new(),
            commit_token: None,
            originated_orf_token: false,
            orf_token_discard: true,
            failed_to_recv: false,
            last_token: None,
            next_node: my_id,
            aru: SEQNO_START_MSG,
            high_seq_received: SEQNO_START_MSG,
            install_seq: SEQNO_START_MSG,
            high_delivered: SEQNO_START_MSG,
            last_aru: SEQNO_START_MSG,
            aru_count: 0,
            seq_unchanged: 0,
            last_seq: 0,
            retrans_flg_count: 0,
            rotation_counter: 0,
            set_retrans_flg: false,
            received_flg: true,
            token_seq: SEQNO_START_TOKEN.wrapping_sub(1),
            last_released: SEQNO_START_MSG,
            token_held: false,
            merge_detect_outstanding: false,
            mcast_to_all_due: false,
            global_seqno: 0,
            old_ring_state_saved: false,
            old_ring_state_aru: 0,
            old_ring_state_high_seq_received: 0,
            regular: SortQueue::new(SEQNO_START_MSG),
            recovery: SortQueue::new(SEQNO_START_MSG),
            queue_dropped: 0,
            new_messages: VecDeque::new(),
            retrans_messages: VecDeque::new(),
            trc: 0,
            pbl: 0,
            cbl: 0,
            nodelist: None,
            out: Vec::new(),
            loopback: VecDeque::new(),
        }
    }

    /// Restricts the ids a received join, commit token or foreign message may
    /// bring into our sets to these (the configured nodelist, ourselves
    /// included).
    /// New timers from a reloaded configuration: the token timeout grows
    /// with the nodelist (token_coefficient), as corosync recomputes it on
    /// a reload. Timers already armed keep their deadlines; the next arming
    /// uses the new values.
    pub fn set_timers(&mut self, timers: Timers) {
        self.timers = timers;
    }

    pub fn timers(&self) -> Timers {
        self.timers
    }

    pub fn set_nodelist(&mut self, ids: impl IntoIterator<Item = u32>) {
        let mut ids: BTreeSet<u32> = ids.into_iter().collect();
        ids.insert(self.my_id);
        self.nodelist = Some(ids);
        // A node removed at run time (a reload) must leave our own sets too:
        // peers drop it from the joins they send us, so while it stayed in
        // ours no join could ever match and gather would never end.
        self.prune_unlisted();
        let ring_has_unlisted = self.memb_list.iter().any(|id| !self.listed(*id));
        if self.state == MembState::Operational && ring_has_unlisted {
            // Its address is gone from the transport: the token cannot reach
            // it. Reform now rather than after token loss.
            self.gather_enter();
        }
    }

    /// Drops ids outside the nodelist from the gather sets.
    pub(crate) fn prune_unlisted(&mut self) {
        let keep: Vec<u32> = self
            .proc_list
            .iter()
            .copied()
            .filter(|id| self.listed(*id))
            .collect();
        self.proc_list = keep;
        let keep: Vec<u32> = self
            .failed_list
            .iter()
            .copied()
            .filter(|id| self.listed(*id))
            .collect();
        self.failed_list = keep;
    }

    /// Whether `id` could be a member: in the nodelist, or any id without one.
    pub(crate) fn listed(&self, id: u32) -> bool {
        self.nodelist.as_ref().is_none_or(|l| l.contains(&id))
    }

    /// Lets a held token go on at once when a retransmission is needed
    /// (totem.cancel_token_hold_on_retransmit).
    pub fn set_cancel_hold_on_retransmit(&mut self, on: bool) {
        self.cancel_hold_on_retransmit = on;
    }

    /// Starts the protocol: enter gather and announce ourselves.
    pub fn start(&mut self) -> Vec<Action> {
        self.gather_enter();
        self.take()
    }

    pub fn node_id(&self) -> u32 {
        self.my_id
    }

    pub fn state(&self) -> MembState {
        self.state
    }

    pub fn ring_id(&self) -> RingId {
        self.ring_id
    }

    /// Members of the current (last installed) configuration.
    pub fn members(&self) -> &[u32] {
        &self.memb_list
    }

    /// Queues an application payload for ordered delivery to every member.
    /// Returns false (and queues nothing) when the queue is full.
    pub fn broadcast(&mut self, payload: Vec<u8>) -> bool {
        if self.new_messages.len() >= NEW_MESSAGE_QUEUE_MAX {
            return false;
        }
        self.new_messages.push_back(payload);
        true
    }

    /// Number of payloads waiting for the token.
    pub fn backlog(&self) -> usize {
        self.new_messages.len()
    }

    /// Bytes the two sort queues hold (each at most [`QUEUE_BYTES_MAX`]).
    pub fn queued_bytes(&self) -> usize {
        self.regular.bytes() + self.recovery.bytes()
    }

    /// Received messages dropped because a sort queue was at its byte budget.
    pub fn queue_dropped(&self) -> u64 {
        self.queue_dropped
    }

    /// Handles one received message. Messages from ourselves are ignored (udpu
    /// never loops our own datagrams back; a simulated network might).
    pub fn receive(&mut self, msg: TotemMessage) -> Vec<Action> {
        self.dispatch(msg);
        self.take()
    }

    fn dispatch(&mut self, msg: TotemMessage) {
        match msg {
            TotemMessage::OrfToken(t) => self.handle_orf_token(t),
            TotemMessage::Mcast(m) => self.handle_mcast(m),
            TotemMessage::MembMergeDetect(m) => self.handle_merge_detect(m),
            TotemMessage::MembJoin(j) => self.handle_join(j),
            TotemMessage::MembCommitToken(c) => self.handle_commit_token(c),
            TotemMessage::TokenHoldCancel(c) => self.handle_token_hold_cancel(c),
        }
    }

    /// Handles a timer the caller armed earlier.
    pub fn timer_fired(&mut self, timer: Timer) -> Vec<Action> {
        match timer {
            Timer::TokenLoss => self.token_loss_timeout(),
            Timer::TokenRetransmit => self.token_retransmit_timeout(),
            Timer::TokenHoldRetransmit => {
                if matches!(self.state, MembState::Operational | MembState::Recovery) {
                    self.token_retransmit();
                }
            }
            Timer::Join => {
                if matches!(self.state, MembState::Gather | MembState::Commit) {
                    self.join_message_send();
                    self.arm(Timer::Join, self.timers.join);
                }
            }
            Timer::Consensus => {
                // corosync deletes this timer when it leaves gather. A late
                // one elsewhere would find the consensus set that
                // operational_enter emptied, count every member silent, us
                // included, and leave us gathering with ourselves failed.
                if self.state == MembState::Gather {
                    self.consensus_timeout_expired();
                }
            }
            Timer::McastToAll => {
                if self.state == MembState::Operational {
                    self.mcast_to_all_due = true;
                    self.arm(Timer::McastToAll, 2 * self.timers.merge);
                }
            }
            Timer::MergeDetect => {
                self.merge_detect_outstanding = false;
                if self.state == MembState::Operational && self.ring_id.rep == self.my_id {
                    self.merge_detect_transmit();
                }
            }
        }
        self.take()
    }

    /// Leaves the ring gracefully: tells the others we are going (a join with
    /// node id 0 and ourselves in the failed list) so they reform at once.
    pub fn leave(&mut self) -> Vec<Action> {
        self.leave_message_send();
        self.take()
    }

    /// Actions a setter produced ([`Srp::set_nodelist`] may start a gather).
    pub fn pending(&mut self) -> Vec<Action> {
        self.take()
    }

    /// Asks the representative to release a held token (we have messages).
    pub fn token_hold_cancel(&mut self) -> Vec<Action> {
        self.token_hold_cancel_send();
        self.take()
    }

    /// Handles what we sent ourselves, then hands over the actions.
    fn take(&mut self) -> Vec<Action> {
        // Bounded: a runaway exchange with ourselves must not hang the caller.
        for _ in 0..1000 {
            let Some(msg) = self.loopback.pop_front() else {
                break;
            };
            self.dispatch(msg);
        }
        std::mem::take(&mut self.out)
    }

    pub(crate) fn arm(&mut self, timer: Timer, ms: u32) {
        self.out.push(Action::Arm(timer, ms));
    }

    pub(crate) fn cancel(&mut self, timer: Timer) {
        self.out.push(Action::Cancel(timer));
    }

    pub(crate) fn send(&mut self, to: Destination, msg: TotemMessage) {
        match (&to, &msg) {
            (Destination::Node(id), _) if *id == self.my_id => {
                self.loopback.push_back(msg);
                return;
            }
            (Destination::All, TotemMessage::MembJoin(j)) if !j.is_leave() => {
                self.loopback.push_back(msg.clone());
            }
            // The representative must see its own hold cancel to let the token go.
            (Destination::All, TotemMessage::TokenHoldCancel(_)) => {
                self.loopback.push_back(msg.clone());
            }
            _ => {}
        }
        self.out.push(Action::Send(to, msg));
    }
}

/// Set helpers over small node-id lists (order kept, no duplicates), as totemsrp's
/// memb_set_* functions.
pub(crate) mod sets {
    pub fn contains(set: &[u32], id: u32) -> bool {
        set.contains(&id)
    }

    pub fn subset(sub: &[u32], full: &[u32]) -> bool {
        sub.iter().all(|id| full.contains(id))
    }

    pub fn equal(a: &[u32], b: &[u32]) -> bool {
        a.len() == b.len() && subset(a, b) && subset(b, a)
    }

    /// Adds what is missing, up to corosync's PROCESSOR_COUNT_MAX: joins come
    /// off the wire and must not grow our lists (and our own joins) without end.
    pub fn merge(full: &mut Vec<u32>, sub: &[u32]) {
        for id in sub {
            if full.len() >= crate::wire::PROCESSOR_COUNT_MAX {
                return;
            }
            if !full.contains(id) {
                full.push(*id);
            }
        }
    }

    pub fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
        a.iter().copied().filter(|id| !b.contains(id)).collect()
    }
}
