//! Five Vireo nodes whose clients offer traffic from their first moment, far
//! more than the ring carries (the `vireo-bench broadcast` load), must still
//! form one quorate ring: messages offered before the ring and its sync are
//! ready wait, and do not crowd out the protocol's own messages.

use std::time::Duration;

use vireo_cluster_tests::expect::wait_for_view;
use vireo_cluster_tests::{Cluster, ClusterSpec};

const NODES: usize = 5;
/// Messages each node's client offers per millisecond (10 × 5 = 50,000 msg/s).
const BURST: u32 = 10;
/// The daemons start one after another, so the first ones run loaded rings
/// of their own, with full queues, by the time the last ones come up.
const START_GAP: Duration = Duration::from_secs(1);

#[test]
fn five_loaded_nodes_form_one_ring() {
    let mut c = Cluster::new(ClusterSpec::vireo(NODES)).unwrap();
    for i in 0..NODES {
        c.nodes[i].send_every_ms = Some(1);
        c.nodes[i].send_burst = Some(BURST);
        c.restart(i).unwrap();
        if i + 1 < NODES {
            std::thread::sleep(START_GAP);
        }
    }
    let all: Vec<usize> = (0..NODES).collect();
    // token + consensus + a few seconds, from the last start.
    let limit = Duration::from_millis(u64::from(c.token_ms + c.consensus_ms) + 3000);
    let (_, took) = wait_for_view(&mut c, &all, &all, true, limit).unwrap();
    eprintln!("one ring of {NODES} {took:?} after the last start");
    // Legitimate traffic, however heavy, stays far inside the memory bounds:
    // nothing dropped, and the counters are in the status JSON.
    std::thread::sleep(Duration::from_secs(2));
    let mut held = 0;
    for i in all {
        let stats = c.status(i).unwrap().stats;
        assert_eq!(
            (stats.sort_queue_dropped, stats.foreign_packets_dropped),
            (0, 0),
            "node{}: {stats:?}",
            i + 1
        );
        held += stats.sort_queue_bytes;
    }
    assert!(held > 0, "no node holds any message under load");
}
