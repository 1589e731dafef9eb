//! Sixteen Vireo nodes: formed by `vireo cluster create` and fifteen joins
//! through members spread over the cluster, no daemon restarted; the time of
//! each join is printed, then store replicas on all sixteen and how long a
//! write takes to be applied everywhere.

use std::time::{Duration, Instant};

use vireo_cluster_tests::expect::wait_for_view;
use vireo_cluster_tests::replicas::{open_all, write_to_all};
use vireo_cluster_tests::{Cluster, ClusterSpec};

const N: usize = 16;
const FORM: Duration = Duration::from_secs(60);

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn sixteen_nodes_join_one_by_one_and_the_store_converges() {
    let mut c = Cluster::new(ClusterSpec::vireo(N)).unwrap();
    let token = c.create_on(0).unwrap();
    c.restart(0).unwrap();
    wait_for_view(&mut c, &[0], &[0], true, FORM).unwrap();
    eprintln!(
        "{:>5} {:>8} {:>12} {:>14}",
        "nodes", "through", "join command", "all see them"
    );
    let mut rings = Vec::new();
    for i in 1..N {
        let member = i / 2;
        let start = Instant::now();
        let cmd = c.join_on(i, member, &token).unwrap();
        c.restart(i).unwrap();
        let all: Vec<usize> = (0..=i).collect();
        wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
        let took = start.elapsed();
        rings.push(took);
        eprintln!(
            "{:>5} {:>8} {:>10.0}ms {:>12.0}ms",
            i + 1,
            format!("node{}", member + 1),
            cmd.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e3
        );
    }
    eprintln!(
        "join → all {N} see the new node: median {:?}, max {:?}",
        median(rings.clone()),
        rings.iter().max().unwrap()
    );

    let start = Instant::now();
    let stores = open_all(&c, FORM).unwrap();
    eprintln!("{N} replicas ready in {:?}", start.elapsed());
    let lat: Vec<Duration> = (0..10)
        .map(|k| write_to_all(&stores, k % N, &format!("k{k}")).unwrap())
        .collect();
    eprintln!(
        "write → applied on all {N}: median {:?}, max {:?}",
        median(lat.clone()),
        lat.iter().max().unwrap()
    );
    // Every replica holds the same state at the end.
    let snap = stores[0].snapshot().unwrap();
    for (i, s) in stores.iter().enumerate() {
        assert_eq!(s.snapshot().unwrap(), snap, "replica on node {}", i + 1);
    }
    assert_eq!(snap.entries.len(), 10);
}
