//! totemsrp on its own: two or three instances wired back to back with every
//! datagram inspected, checking the wire facts corosync peers rely on.

use std::collections::VecDeque;

use super::*;
use crate::config;
use crate::wire::{self, Mcast, MessageType};

pub(super) fn timers() -> Timers {
    let text = crate::node::sim_config_text(3, "");
    config::parse(&text).unwrap().totem.timers
}

/// Instances with ids 1..=n and the datagrams in flight (from, to, message).
pub(super) struct Wire {
    pub(super) nodes: Vec<Srp>,
    pub(super) flight: VecDeque<(u32, u32, TotemMessage)>,
    sent: Vec<(u32, Destination, TotemMessage)>,
    delivered: Vec<Vec<(u32, Vec<u8>)>>,
}

impl Wire {
    pub(super) fn new(n: u32) -> Self {
        let mut w = Wire {
            nodes: (1..=n).map(|id| Srp::new(id, timers(), 0)).collect(),
            flight: VecDeque::new(),
            sent: Vec::new(),
            delivered: vec![Vec::new(); n as usize],
        };
        for id in 1..=n {
            let a = w.nodes[id as usize - 1].start();
            w.apply(id, a);
        }
        w
    }

    pub(super) fn apply(&mut self, id: u32, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(to, msg) => {
                    self.sent.push((id, to.clone(), msg.clone()));
                    // Every datagram must survive an encode/decode round trip.
                    let bytes = wire::encode(&msg);
                    assert_eq!(wire::decode(&bytes).unwrap(), msg);
                    let n = self.nodes.len() as u32;
                    match to {
                        Destination::All => (1..=n)
                            .filter(|t| *t != id)
                            .for_each(|t| self.flight.push_back((id, t, msg.clone()))),
                        Destination::Members(ids) => ids
                            .into_iter()
                            .filter(|t| *t != id)
                            .for_each(|t| self.flight.push_back((id, t, msg.clone()))),
                        Destination::Node(t) => self.flight.push_back((id, t, msg)),
                    }
                }
                Action::Deliver { sender, payload } => {
                    self.delivered[id as usize - 1].push((sender, payload))
                }
                _ => {}
            }
        }
    }

    /// Delivers everything in flight (and what it causes), oldest first.
    pub(super) fn settle(&mut self) {
        for _ in 0..100_000 {
            let Some((_, to, msg)) = self.flight.pop_front() else {
                return;
            };
            let a = self.nodes[to as usize - 1].receive(msg);
            self.apply(to, a);
        }
        panic!("the exchange did not settle");
    }

    fn sent_of(&self, t: MessageType) -> Vec<&(u32, Destination, TotemMessage)> {
        self.sent
            .iter()
            .filter(|(_, _, m)| m.message_type() == t)
            .collect()
    }
}

#[test]
fn start_announces_a_join_and_arms_gather_timers() {
    let mut srp = Srp::new(7, timers(), 0x10);
    let actions = srp.start();
    let join = actions.iter().find_map(|a| match a {
        Action::Send(Destination::All, TotemMessage::MembJoin(j)) => Some(j.clone()),
        _ => None,
    });
    let join = join.expect("a join to everyone");
    assert_eq!(
        (join.proc_list.clone(), join.failed_list.len()),
        (vec![7], 0)
    );
    // A restarted node never reuses a ring sequence: stored + 1.
    assert_eq!(join.ring_seq, 0x11);
    assert!(actions.contains(&Action::Arm(Timer::Join, 50)));
    assert!(actions.contains(&Action::Arm(Timer::Consensus, 1980)));
}

#[test]
fn two_nodes_form_a_ring_with_corosync_shaped_tokens() {
    let mut w = Wire::new(2);
    w.settle();
    // No timer runs here: joins, commit token and token alone install the ring.
    for n in &w.nodes {
        assert_eq!(
            (n.state(), n.members()),
            (MembState::Operational, &[1, 2][..])
        );
    }
    let commits = w.sent_of(MessageType::MembCommitToken);
    assert!(
        !commits.is_empty(),
        "the lowest node creates the commit token"
    );
    let (from, to, first) = commits[0];
    assert_eq!((*from, to.clone()), (1, Destination::Node(2)));
    assert_eq!(wire::encode(first).len(), 97, "97 bytes for 2 nodes");
    let TotemMessage::MembCommitToken(c) = first else {
        unreachable!()
    };
    // Each node first installs a ring of its own (seq 1 + 4), as corosync
    // does; the shared ring comes next.
    assert_eq!(
        c.ring_id,
        RingId {
            rep: 1,
            seq: 1 + 4 + 4
        }
    );
    assert_eq!(w.nodes[1].ring_id(), c.ring_id);
}

#[test]
fn ring_installs_and_delivers_in_one_order() {
    let mut w = Wire::new(3);
    w.settle();
    // Keep the token going: each settle round lets it circulate until held.
    for id in 1..=3u32 {
        for k in 0..5u8 {
            w.nodes[id as usize - 1].broadcast(vec![id as u8, k]);
        }
        // The idle ring's token is held by the representative until asked.
        let a = w.nodes[id as usize - 1].token_hold_cancel();
        w.apply(id, a);
    }
    w.settle();
    let ring = w.nodes[0].ring_id();
    assert_eq!(
        (ring.rep, ring.seq % 4),
        (1, 1),
        "rep is the lowest id, seq steps by 4"
    );
    for n in &w.nodes {
        assert_eq!(n.state(), MembState::Operational);
        assert_eq!(n.members(), &[1, 2, 3]);
        assert_eq!(n.ring_id(), ring);
    }
    let first_token = w.sent_of(MessageType::OrfToken)[0].2.clone();
    let TotemMessage::OrfToken(t) = first_token else {
        unreachable!()
    };
    assert_eq!((t.seq, t.token_seq, t.aru, t.aru_addr), (0, 0, u32::MAX, 1));
    assert_eq!(w.delivered[0].len(), 15);
    assert_eq!(w.delivered[1], w.delivered[0]);
    assert_eq!(w.delivered[2], w.delivered[0]);
}

#[test]
fn foreign_message_and_leave_start_a_new_gather() {
    let mut w = Wire::new(2);
    w.settle();
    assert_eq!(w.nodes[0].state(), MembState::Operational);
    let a = w.nodes[1].leave();
    let leave = a.iter().find_map(|x| match x {
        Action::Send(Destination::All, TotemMessage::MembJoin(j)) => Some(j.clone()),
        _ => None,
    });
    let leave = leave.expect("leave is a join to everyone");
    assert!(leave.is_leave());
    assert_eq!((leave.system_from, leave.failed_list.clone()), (2, vec![2]));
    assert!(!leave.proc_list.contains(&2));
    let old_ring = w.nodes[0].ring_id();
    let a = w.nodes[0].receive(TotemMessage::MembJoin(leave));
    // A leave needs no timeout: node 1 agrees with itself at once and its
    // one-node ring is installed within the call.
    assert!(a.contains(&Action::Arm(Timer::Consensus, 1980)));
    assert_eq!(w.nodes[0].state(), MembState::Operational);
    assert_eq!(w.nodes[0].members(), &[1]);
    assert_eq!(w.nodes[0].ring_id().seq, old_ring.seq + 4);
}

/// MCASTs go only to the ring's members (a partition's unreachable peers must
/// not get them, see `Destination::Members`), except one per McastToAll period.
#[test]
fn mcasts_go_to_the_ring_and_once_a_period_to_everyone() {
    let mut w = Wire::new(2);
    w.settle();
    let send_one = |w: &mut Wire, k: u8| {
        w.nodes[0].broadcast(vec![k]);
        let a = w.nodes[0].token_hold_cancel();
        w.apply(1, a);
        w.settle();
    };
    send_one(&mut w, 0);
    let to: Vec<Destination> = w
        .sent_of(MessageType::Mcast)
        .iter()
        .map(|(_, to, _)| to.clone())
        .collect();
    assert_eq!(to, vec![Destination::Members(vec![1, 2])]);
    let a = w.nodes[0].timer_fired(Timer::McastToAll);
    assert!(a.contains(&Action::Arm(Timer::McastToAll, 400)));
    w.apply(1, a);
    send_one(&mut w, 1);
    send_one(&mut w, 2);
    let to: Vec<Destination> = w
        .sent_of(MessageType::Mcast)
        .iter()
        .skip(1)
        .map(|(_, to, _)| to.clone())
        .collect();
    assert_eq!(to, vec![Destination::All, Destination::Members(vec![1, 2])]);
    assert_eq!(w.delivered[1].len(), 3);
}

/// A peer that knows the ring id (it travels in clear) sends 64 KB MCASTs far
/// ahead of the window, twice what the sort queue may hold: the queue stays
/// within its byte budget, counts what it dropped, and the ring still
/// delivers its own traffic in one order afterwards.
#[test]
fn far_ahead_flood_is_bounded_and_the_ring_still_delivers() {
    let mut w = Wire::new(2);
    w.settle();
    let ring = w.nodes[1].ring_id();
    let payload_len = 64_000;
    let offered = 2 * QUEUE_BYTES_MAX / payload_len;
    for k in 0..offered as u32 {
        let mut header = wire::Header::new(1);
        header.encapsulated = wire::NOT_ENCAPSULATED;
        let junk = Mcast {
            header,
            system_from: 1,
            // Spread over the window, well ahead of anything the ring sends.
            seq: 1000 + k * 7,
            this_seqno: 0,
            ring_id: ring,
            node_id: 0,
            guarantee: 0,
            payload: vec![0xee; payload_len],
        };
        let a = w.nodes[1].receive(TotemMessage::Mcast(junk));
        w.apply(2, a);
        assert!(w.nodes[1].queued_bytes() <= QUEUE_BYTES_MAX);
    }
    let held = QUEUE_BYTES_MAX / (payload_len + 128);
    assert!(w.nodes[1].queued_bytes() > QUEUE_BYTES_MAX - (payload_len + 128));
    assert_eq!(w.nodes[1].queue_dropped(), (offered - held) as u64);
    for id in 1..=2u32 {
        for k in 0..20u8 {
            w.nodes[id as usize - 1].broadcast(vec![id as u8, k]);
        }
        let a = w.nodes[id as usize - 1].token_hold_cancel();
        w.apply(id, a);
    }
    w.settle();
    assert_eq!(w.delivered[0].len(), 40);
    assert_eq!(w.delivered[1], w.delivered[0]);
}

/// Joins that agree with our lists but come from ids outside them (forged:
/// no crypto on udpu) must not grow the consensus set.
#[test]
fn forged_agreeing_joins_do_not_grow_consensus() {
    let mut srp = Srp::new(7, timers(), 0);
    srp.start();
    let join = |from: u32| {
        TotemMessage::MembJoin(wire::MembJoin {
            header: wire::Header::new(from),
            system_from: from,
            ring_seq: 1,
            proc_list: vec![1, 7],
            failed_list: vec![],
        })
    };
    // Node 1 shows up and stays silent afterwards: we gather with [7, 1].
    srp.receive(join(1));
    assert_eq!(srp.state(), MembState::Gather);
    for from in 1000..11_000 {
        srp.receive(join(from));
    }
    assert_eq!(srp.state(), MembState::Gather);
    assert!(
        srp.consensus.len() <= srp.proc_list.len(),
        "{}",
        srp.consensus.len()
    );
}
