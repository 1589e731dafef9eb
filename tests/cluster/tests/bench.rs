//! `make bench` figures for the membership service (ignored by `cargo test`; run
//! with `--ignored`): the time from kill -9 of one node of three to the new ring on
//! both survivors, real corosync vs Vireo with the same corosync.conf timers, and
//! the ordered-broadcast rate three Vireo nodes sustain.

use std::time::{Duration, Instant};

use vireo_cluster_tests::delivery;
use vireo_cluster_tests::expect::wait_for_view;
use vireo_cluster_tests::{Cluster, ClusterSpec};

const ROUNDS: usize = 3;

/// Median over a few rounds of: kill node 3 of 3, wait for nodes 1 and 2 to agree
/// on a two-node ring (status polled, so the figure includes up to one poll).
fn failover(spec: fn() -> ClusterSpec) -> Duration {
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let mut c = Cluster::start(spec()).unwrap();
        wait_for_view(
            &mut c,
            &[0, 1, 2],
            &[0, 1, 2],
            true,
            Duration::from_secs(30),
        )
        .unwrap();
        std::thread::sleep(Duration::from_secs(1));
        let killed = Instant::now();
        c.kill9(2).unwrap();
        wait_for_view(&mut c, &[0, 1], &[0, 1], true, Duration::from_secs(30)).unwrap();
        times.push(killed.elapsed());
    }
    times.sort();
    times[ROUNDS / 2]
}

#[test]
#[ignore = "benchmark: make bench"]
fn kill_to_new_ring_real_vs_vireo() {
    let real = failover(|| ClusterSpec::real(3));
    let vireo = failover(|| ClusterSpec::vireo(3));
    println!(
        "membership failover (kill -9 1 of 3, token 1000 ms): corosync {:.2} s, Vireo {:.2} s ({:.2}x)",
        real.as_secs_f64(),
        vireo.as_secs_f64(),
        vireo.as_secs_f64() / real.as_secs_f64()
    );
}

#[test]
#[ignore = "benchmark: make bench"]
fn ordered_broadcast_rate() {
    let mut c = Cluster::new(ClusterSpec::vireo(3)).unwrap();
    for i in 0..3 {
        c.nodes[i].send_every_ms = Some(1);
        c.restart(i).unwrap();
    }
    wait_for_view(
        &mut c,
        &[0, 1, 2],
        &[0, 1, 2],
        true,
        Duration::from_secs(30),
    )
    .unwrap();
    let span = Duration::from_secs(5);
    let count = |c: &Cluster| {
        delivery::read(&c.nodes[0].delivery_log(1))
            .unwrap()
            .iter()
            .filter(|e| matches!(e, delivery::Event::Deliver { .. }))
            .count()
    };
    let before = count(&c);
    std::thread::sleep(span);
    let after = count(&c);
    println!(
        "ordered broadcast, 3 Vireo nodes each offering 1000 msg/s: {:.0} msg/s delivered",
        (after - before) as f64 / span.as_secs_f64()
    );
}
