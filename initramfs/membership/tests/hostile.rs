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
    for _ in 0..20 {
        for t in [
            vireo_membership::totemsrp::Timer::Consensus,
            vireo_membership::totemsrp::Timer::TokenLoss,
            vireo_membership::totemsrp::Timer::Join,
        ] {
            let actions = node.timer_fired(NodeTimer::Totem(t));
            assert!(actions
                .iter()
                .all(|a| !matches!(a, NodeAction::Deliver { .. })));
        }
    }
    let status = node.status();
    assert_eq!(status.node_id, 4);
    assert!(!status.members.is_empty());
}
