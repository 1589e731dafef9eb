//! Untrusted input against a whole node: every datagram of the real capture,
//! then the same datagrams with random bytes changed, then random garbage, fed
//! to a running node. Nothing may panic, and the node must still be able to
//! form its ring afterwards.

mod support;

use support::{totem_datagrams, Prng};
use vireo_membership::config;
use vireo_membership::node::{Node, NodeAction, NodeTimer};
use vireo_membership::wire;

const CONF: &str = "totem {\n version: 2\n cluster_name: t\n transport: udpu\n token: 1000\n}\n\
nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n }\n node {\n  ring0_addr: 10.0.0.2\n  nodeid: 2\n }\n\
 node {\n  ring0_addr: 10.0.0.3\n  nodeid: 3\n }\n node {\n  ring0_addr: 10.0.0.4\n  nodeid: 4\n }\n}\n\
quorum {\n provider: corosync_votequorum\n}\n";

/// Drives a node nobody else answers: what it sends to itself (a one-node
/// ring's commit token and token) comes back to it, and the timers it arms
/// fire in turn, until its ring is operational or `steps` run out.
fn run_alone(node: &mut Node, steps: usize) {
    use std::collections::VecDeque;
    use vireo_membership::totemsrp::{Destination, MembState};
    let me = node.node_id();
    let mut armed: VecDeque<NodeTimer> = VecDeque::new();
    let mut actions = node.timer_fired(NodeTimer::Totem(vireo_membership::totemsrp::Timer::Join));
    for _ in 0..steps {
        let mut next = Vec::new();
        for action in actions.drain(..) {
            match action {
                NodeAction::Send(Destination::Node(to), msg) if to == me => {
                    next.extend(node.receive(msg))
                }
                NodeAction::Arm(t, _) => armed.push_back(t),
                NodeAction::Cancel(t) => armed.retain(|a| *a != t),
                _ => {}
            }
        }
        if node.srp_state() == MembState::Operational {
            return;
        }
        if next.is_empty() {
            match armed.pop_front() {
                Some(t) => next = node.timer_fired(t),
                None => return,
            }
        }
        actions = next;
    }
}

#[test]
fn a_fresh_node_alone_forms_its_own_ring() {
    // The driver itself, on a node that saw nothing: what the test below
    // asks of a node after the garbage.
    let cfg = config::parse(CONF).unwrap();
    let mut node = Node::new(&cfg, 4, 0);
    node.start();
    run_alone(&mut node, 1_000);
    assert_eq!(
        node.srp_state(),
        vireo_membership::totemsrp::MembState::Operational
    );
}

fn feed(node: &mut Node, bytes: &[u8]) {
    if let Ok(msg) = wire::decode(bytes) {
        node.receive(msg);
    }
}

#[test]
fn capture_mutations_and_garbage_never_panic() {
    let cfg = config::parse(CONF).unwrap();
    // Node 4 is not in the capture's ring: it sees a foreign cluster forming.
    let mut node = Node::new(&cfg, 4, 0);
    node.start();
    let datagrams = totem_datagrams();
    assert!(datagrams.len() > 100);
    for d in &datagrams {
        feed(&mut node, &d.payload);
    }
    let mut rng = Prng(0x5eed);
    for round in 0..5_000 {
        let d = &datagrams[rng.below(datagrams.len())];
        let mut bytes = d.payload.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        feed(&mut node, &bytes);
        if round % 100 == 0 {
            let len = rng.below(200);
            let garbage: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            feed(&mut node, &garbage);
            // Timers fire now and then, as they would in the daemon.
            node.timer_fired(NodeTimer::Totem(
                vireo_membership::totemsrp::Timer::TokenLoss,
            ));
            node.timer_fired(NodeTimer::Totem(
                vireo_membership::totemsrp::Timer::Consensus,
            ));
        }
    }
    // Left alone, the node still forms a ring of its own.
    run_alone(&mut node, 1_000);
    // Operational on a ring of its own: the garbage left nothing half-done.
    assert_eq!(
        node.srp_state(),
        vireo_membership::totemsrp::MembState::Operational
    );
    let status = node.status();
    assert_eq!(status.node_id, 4);
    let ids: Vec<u32> = status.members.iter().map(|m| m.node_id).collect();
    assert_eq!(ids, [4]);
}
