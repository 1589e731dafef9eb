//! Gather must end: a node whose peers went silent fails them at the
//! consensus timeout and forms a ring of its own, whatever it was sent before.

use std::collections::VecDeque;

use super::tests::{timers, Wire};
use super::*;
use crate::wire::{Header, MembJoin};

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
