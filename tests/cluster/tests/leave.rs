//! Clean shutdowns: a SIGTERMed node sends LEAVE, so the others reform without
//! waiting for token loss and consensus. Both directions between corosync 3.1.7
//! and vireo-membershipd.

use std::time::{Duration, Instant};

use vireo_cluster_tests::expect::wait_for_view;
use vireo_cluster_tests::{Cluster, ClusterSpec, Kind};

const FORM: Duration = Duration::from_secs(30);
const C: Kind = Kind::Corosync;
const V: Kind = Kind::Vireo;

/// Well under token (1650 ms for four nodes): the leave, not a timeout, did it.
const LEAVE_LIMIT: Duration = Duration::from_millis(1500);

#[test]
fn terminated_vireo_node_leaves_at_once() {
    let mut c = Cluster::start(ClusterSpec::new(&[C, C, C, V])).unwrap();
    wait_for_view(&mut c, &[0, 1, 2, 3], &[0, 1, 2, 3], true, FORM).unwrap();
    let start = Instant::now();
    c.terminate(3).unwrap();
    let (_, _) = wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, LEAVE_LIMIT).unwrap();
    eprintln!("SIGTERM Vireo -> reals show 3 after {:?}", start.elapsed());
}

#[test]
fn terminated_real_node_leaves_at_once_for_vireo() {
    let mut c = Cluster::start(ClusterSpec::new(&[C, C, C, V])).unwrap();
    wait_for_view(&mut c, &[0, 1, 2, 3], &[0, 1, 2, 3], true, FORM).unwrap();
    let start = Instant::now();
    c.terminate(0).unwrap();
    wait_for_view(&mut c, &[1, 2, 3], &[1, 2, 3], true, LEAVE_LIMIT).unwrap();
    eprintln!(
        "SIGTERM real -> Vireo and reals show 3 after {:?}",
        start.elapsed()
    );
}
