//! Untrusted input against a whole node: every datagram of the real capture,
//! then the same datagrams with random bytes changed, then random garbage, fed
//! to a running node. Nothing may panic, and the node must still be able to
//! form its ring afterwards.

mod support;

use support::{totem_datagrams, Prng};
use vireo_membership::config;
use vireo_membership::node::{Node, NodeAction, NodeTimer};
use vireo_membership::totemsrp::Timer;
use vireo_membership::wire;

const CONF: &str = "totem {\n version: 2\n cluster_name: t\n transport: udpu\n token: 1000\n}\n\
nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n }\n node {\n  ring0_addr: 10.0.0.2\n  nodeid: 2\n }\n\
 node {\n  ring0_addr: 10.0.0.3\n  nodeid: 3\n }\n node {\n  ring0_addr: 10.0.0.4\n  nodeid: 4\n }\n}\n\
quorum {\n provider: corosync_votequorum\n}\n";

/// The node's timers as its caller keeps them: every timer it armed and has
/// not cancelled, in the order armed (re-arming moves one to the back).
#[derive(Default)]
struct Armed(std::collections::VecDeque<NodeTimer>);

impl Armed {
    fn note(&mut self, actions: &[NodeAction]) {
        for action in actions {
            match action {
                NodeAction::Arm(t, _) => {
                    self.0.retain(|a| a != t);
                    self.0.push_back(*t);
                }
                NodeAction::Cancel(t) => self.0.retain(|a| a != t),
                _ => {}
            }
        }
    }

    /// Fires `t` as the daemon does: it is no longer armed, unless re-armed.
    fn fire(&mut self, node: &mut Node, t: NodeTimer) -> Vec<NodeAction> {
        self.0.retain(|a| *a != t);
        let actions = node.timer_fired(t);
        self.note(&actions);
        actions
    }
}

/// Drives a node nobody else answers: what it sends to itself (a one-node
/// ring's commit token and token) comes back to it, and the timers it armed —
/// before the call too: a gather's consensus timer is armed once, when the
/// gather starts — fire in turn, until its ring is operational or `steps`
/// run out.
fn run_alone(node: &mut Node, mut armed: Armed, steps: usize) {
    use vireo_membership::totemsrp::{Destination, MembState};
    let me = node.node_id();
    let mut actions = Vec::new();
    for _ in 0..steps {
        let mut next = Vec::new();
        for action in actions.drain(..) {
            if let NodeAction::Send(Destination::Node(to), msg) = action {
                if to == me {
                    next.extend(node.receive(msg));
                }
            }
        }
        armed.note(&next);
        if node.srp_state() == MembState::Operational {
            return;
        }
        if next.is_empty() {
            match armed.0.front().copied() {
                Some(t) => next = armed.fire(node, t),
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
    let mut armed = Armed::default();
    armed.note(&node.start());
    run_alone(&mut node, armed, 1_000);
    assert_eq!(
        node.srp_state(),
        vireo_membership::totemsrp::MembState::Operational
    );
}

fn feed(node: &mut Node, armed: &mut Armed, bytes: &[u8]) {
    if let Ok(msg) = wire::decode(bytes) {
        armed.note(&node.receive(msg));
    }
}

#[test]
fn capture_mutations_and_garbage_never_panic() {
    let cfg = config::parse(CONF).unwrap();
    // Node 4 is not in the capture's ring: it sees a foreign cluster forming.
    let mut node = Node::new(&cfg, 4, 0);
    let mut armed = Armed::default();
    armed.note(&node.start());
    let datagrams = totem_datagrams();
    assert!(datagrams.len() > 100);
    for d in &datagrams {
        feed(&mut node, &mut armed, &d.payload);
    }
    let mut rng = Prng(0x5eed);
    for round in 0..5_000 {
        let d = &datagrams[rng.below(datagrams.len())];
        let mut bytes = d.payload.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        feed(&mut node, &mut armed, &bytes);
        if round % 100 == 0 {
            let len = rng.below(200);
            let garbage: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            feed(&mut node, &mut armed, &garbage);
            // Timers fire now and then, armed or not: a late timer must not
            // upset the node either (a consensus timer firing outside gather
            // used to make it count itself failed and gather forever).
            for t in [Timer::TokenLoss, Timer::Consensus] {
                armed.fire(&mut node, NodeTimer::Totem(t));
            }
        }
    }
    // Left alone, the node still forms a ring of its own.
    run_alone(&mut node, armed, 1_000);
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
