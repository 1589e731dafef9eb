//! Gather must end: a node whose peers went silent fails them at the
//! consensus timeout and forms a ring of its own, whatever it was sent before.

use std::collections::VecDeque;

use super::tests::{timers, Wire};
use super::*;
use crate::wire::{Header, MembEntry, MembJoin, MembMergeDetect};

/// Runs a node nobody answers, as its caller would: fires the timers it armed
/// (from `actions` on) in turn; what it sends itself it handles within each
/// call. True once it is operational.
fn alone_until_operational(srp: &mut Srp, mut actions: Vec<Action>) -> bool {
    let mut armed: VecDeque<Timer> = VecDeque::new();
    for _ in 0..1_000 {
        for a in actions.drain(..) {
            match a {
                Action::Arm(t, _) => {
                    armed.retain(|x| *x != t);
                    armed.push_back(t);
                }
                Action::Cancel(t) => armed.retain(|x| *x != t),
                _ => {}
            }
        }
        if srp.state() == MembState::Operational {
            return true;
        }
        let Some(t) = armed.pop_front() else {
            return false;
        };
        actions = srp.timer_fired(t);
    }
    false
}

fn join(from: u32, ring_seq: u64, proc_list: Vec<u32>, failed_list: Vec<u32>) -> TotemMessage {
    TotemMessage::MembJoin(MembJoin {
        header: Header::new(from),
        system_from: from,
        ring_seq,
        proc_list,
        failed_list,
    })
}

/// The hostile test's case: the caller fires the consensus timer after the
/// ring formed. It found the consensus set emptied, failed every member, us
/// included, and with us in the failed list no commit token was ever made.
#[test]
fn a_late_consensus_timer_changes_nothing() {
    let mut w = Wire::new(2);
    w.settle();
    let ring = w.nodes[1].ring_id();
    let a = w.nodes[1].timer_fired(Timer::Consensus);
    assert!(a.is_empty(), "{a:?}");
    let node = &w.nodes[1];
    assert_eq!(
        (node.state(), node.ring_id()),
        (MembState::Operational, ring)
    );
    assert!(node.failed_list.is_empty(), "{:?}", node.failed_list);
    // Alone once the ring is lost, the node forms its own.
    let a = w.nodes[1].timer_fired(Timer::TokenLoss);
    assert!(alone_until_operational(&mut w.nodes[1], a));
    assert_eq!(w.nodes[1].members(), &[2]);
}

/// udpu has no crypto: a join claiming to come from us and listing us failed
/// must not make us fail ourselves.
#[test]
fn a_join_forged_as_ours_cannot_fail_us() {
    let mut srp = Srp::new(7, timers(), 0);
    let mut a = srp.start();
    // Node 1 shows up (then goes silent): we gather with it.
    a.extend(srp.receive(join(1, 1, vec![1], vec![])));
    a.extend(srp.receive(join(7, 1, vec![1, 7], vec![7])));
    assert!(!srp.failed_list.contains(&7), "{:?}", srp.failed_list);
    assert!(alone_until_operational(&mut srp, a));
    assert_eq!(srp.members(), &[7]);
}

/// A listed node's join naming ids outside the nodelist: they stay out of
/// our lists, so our own joins never carry them.
#[test]
fn unlisted_ids_in_a_join_stay_out_of_our_lists() {
    let mut srp = Srp::new(7, timers(), 0);
    srp.set_nodelist([1, 2, 7]);
    srp.start();
    let a = srp.receive(join(1, 1, vec![1, 999, 7], vec![2, 998]));
    assert_eq!(srp.proc_list, [7, 1]);
    assert_eq!(srp.failed_list, Vec::<u32>::new());
    let sent = a.iter().find_map(|x| match x {
        Action::Send(Destination::All, TotemMessage::MembJoin(j)) => Some(j.clone()),
        _ => None,
    });
    assert_eq!(sent.expect("we regather").proc_list, [7, 1]);
    // A join from an id outside the nodelist is no join at all.
    srp.receive(join(999, 1, vec![999, 2], vec![]));
    assert_eq!(srp.proc_list, [7, 1]);
}

/// Lists capped at 384 entries: a ring member's joins fill our failed list
/// with ids that are not in our proc list, then our proc list with ids that
/// never answer. At the consensus timeout the silent ones could no longer be
/// failed and the node gathered forever; with the nodelist they never get in.
#[test]
fn lists_flooded_with_unlisted_ids_still_let_a_survivor_form_its_ring() {
    let mut w = Wire::new(2);
    for n in &mut w.nodes {
        n.set_nodelist([1, 2]);
    }
    w.settle();
    let node = &mut w.nodes[1];
    assert_eq!(node.members(), &[1, 2]);
    let seq = node.ring_id().seq;
    let garbage = |base: u32, n: u32| (base..base + n).collect::<Vec<u32>>();
    let mut a = node.receive(join(1, seq, vec![1, 2], garbage(1000, 384)));
    let mut proc_list = vec![1, 2];
    proc_list.extend(garbage(5000, 382));
    a.extend(node.receive(join(1, seq, proc_list, vec![])));
    // Node 1 is gone from here on.
    assert!(alone_until_operational(node, a));
    assert_eq!(node.members(), &[2]);
}

/// A commit token naming an id outside the nodelist is dropped, even one that
/// matches our ring: it describes no ring we could be in.
#[test]
fn a_commit_token_naming_an_unlisted_id_is_dropped() {
    let mut w = Wire::new(2);
    for n in &mut w.nodes {
        n.set_nodelist([1, 2]);
    }
    // Run the exchange until node 2 waits in commit for the token's return.
    while w.nodes[1].state() != MembState::Commit || w.nodes[1].ring_id().seq < 9 {
        let (_, to, msg) = w.flight.pop_front().expect("node 2 reaches commit");
        let a = w.nodes[to as usize - 1].receive(msg);
        w.apply(to, a);
    }
    let ring_id = w.nodes[1].ring_id();
    let members = [1, 2, 999].map(|id| (id, MembEntry::default())).to_vec();
    let forged = MembCommitToken {
        header: Header::new(1),
        token_seq: 9,
        ring_id,
        retrans_flg: 0,
        memb_index: 3,
        members,
    };
    w.nodes[1].receive(TotemMessage::MembCommitToken(forged));
    assert_eq!(w.nodes[1].state(), MembState::Commit);
}

/// A merge detect (or MCAST) of another ring from an id outside the nodelist
/// does not make an operational node regather with it.
#[test]
fn a_foreign_ring_message_from_an_unlisted_id_is_ignored() {
    let mut srp = Srp::new(7, timers(), 0);
    srp.set_nodelist([1, 7]);
    let a = srp.start();
    assert!(alone_until_operational(&mut srp, a));
    let m = MembMergeDetect {
        header: Header::new(999),
        system_from: 999,
        ring_id: RingId { rep: 999, seq: 4 },
    };
    srp.receive(TotemMessage::MembMergeDetect(m));
    assert_eq!(srp.state(), MembState::Operational);
    assert_eq!(srp.proc_list, [7]);
}

/// A join's ring seq comes off the wire and the commit token adds 4 to the
/// highest seen: at the top of u64 that wraps, as corosync's unsigned
/// arithmetic does, instead of panicking (debug builds check overflow).
#[test]
fn a_ring_seq_at_the_top_of_u64_wraps() {
    let mut srp = Srp::new(7, timers(), 0);
    let mut a = srp.start();
    a.extend(srp.receive(join(1, u64::MAX - 1, vec![1], vec![])));
    assert!(alone_until_operational(&mut srp, a));
    assert_eq!(srp.ring_id().seq, 2);
}
