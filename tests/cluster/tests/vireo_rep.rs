//! A Vireo node as the ring's representative (lowest node id) among real
//! corosync nodes: it creates the commit token, originates the first ORF token,
//! holds the idle token and sends merge detection; the real nodes must follow it.

use std::time::Duration;

use vireo_cluster_tests::expect::wait_for_view;
use vireo_cluster_tests::{Cluster, ClusterSpec, Kind};

const FORM: Duration = Duration::from_secs(30);
const C: Kind = Kind::Corosync;
const V: Kind = Kind::Vireo;

#[test]
fn vireo_leads_a_ring_of_real_nodes() {
    let mut c = Cluster::start(ClusterSpec::new(&[V, C, C, C])).unwrap();
    let all = [0, 1, 2, 3];
    let (statuses, took) = wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
    assert_eq!(
        statuses[0].ring_id.rep, 1,
        "node 1 (Vireo) represents the ring"
    );
    eprintln!("Vireo-led ring {} formed in {took:?}", statuses[0].ring_id);
    // An idle ring for a while: the representative holds and re-sends the token
    // (seqno_unchanged_const rotations), nobody may lose it.
    std::thread::sleep(Duration::from_secs(4));
    let (again, _) = wait_for_view(&mut c, &all, &all, true, Duration::from_secs(1)).unwrap();
    assert_eq!(
        again[0].ring_id, statuses[0].ring_id,
        "the idle ring stayed"
    );
    // A real node fails and comes back under a Vireo representative.
    let deadline = c.failure_deadline();
    c.kill9(3).unwrap();
    wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, deadline).unwrap();
    c.restart(3).unwrap();
    wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
    // The representative itself fails: the real nodes elect node 2.
    c.kill9(0).unwrap();
    let (rest, _) = wait_for_view(&mut c, &[1, 2, 3], &[1, 2, 3], true, deadline).unwrap();
    assert_eq!(rest[0].ring_id.rep, 2);
    c.restart(0).unwrap();
    let (back, _) = wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
    assert_eq!(back[0].ring_id.rep, 1);
}

/// Two Vireo nodes broadcasting through a ring they share with two real nodes:
/// their messages ride corosync's ring (real nodes sequence, retransmit and
/// ignore the "vireo" group), both Vireo nodes deliver one order, and a real
/// node's failure and return keep it so.
#[test]
fn vireo_traffic_through_a_mixed_ring_keeps_one_order() {
    use vireo_cluster_tests::delivery::{self, Log};
    let mut c = Cluster::new(ClusterSpec::new(&[V, C, V, C])).unwrap();
    for i in 0..4 {
        if c.kind(i) == V {
            c.nodes[i].send_every_ms = Some(10);
        }
        c.restart(i).unwrap();
    }
    let all = [0, 1, 2, 3];
    wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let deadline = c.failure_deadline();
    c.kill9(3).unwrap();
    wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, deadline).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    c.restart(3).unwrap();
    wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let logs: Vec<Log> = [0usize, 2]
        .iter()
        .map(|&i| Log {
            node_id: ClusterSpec::node_id(i),
            incarnation: 1,
            events: delivery::read(&c.nodes[i].delivery_log(1)).unwrap(),
        })
        .collect();
    let summary = delivery::check(&logs).unwrap();
    eprintln!(
        "mixed ring: {} configurations, {} deliveries checked",
        summary.configurations, summary.deliveries
    );
    assert!(summary.deliveries > 1000, "{summary:?}");
}
