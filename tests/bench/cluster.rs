//! Cluster rows: how long a node's crash goes unnoticed (kill -9 → the
//! survivors report the new ring), real corosync against Vireo on the same
//! corosync.conf and timers, and Vireo's ordered-broadcast throughput.
//!
//! Both are observed through their status (quorumtool for corosync, the socket
//! for Vireo) polled every 10 ms; a quorumtool run costs a few ms more than a
//! socket read, which the corosync figure carries.

use std::time::{Duration, Instant};

use vireo_cluster_tests::delivery::{self, Event};
use vireo_cluster_tests::expect::{ids, member_ids};
use vireo_cluster_tests::node::membershipd_binary;
use vireo_cluster_tests::{wait_until, wait_until_every, Cluster, ClusterSpec, Kind};

use crate::measure::median;

const RUNS: usize = 5;
const NODES: usize = 3;
const POLL: Duration = Duration::from_millis(10);
const FORM: Duration = Duration::from_secs(30);

/// Waits until `observers` all report `members` on one ring.
fn wait_for_members(
    c: &mut Cluster,
    observers: &[usize],
    members: &[usize],
    poll: Duration,
    timeout: Duration,
) -> Result<Duration, String> {
    let want = ids(members);
    let (_, took) = wait_until_every(poll, timeout, "survivors agree", || {
        let mut rings = Vec::new();
        for &i in observers {
            let s = c.status(i)?;
            if member_ids(&s) != want {
                return Err(format!("node{} shows {:?}", i + 1, member_ids(&s)));
            }
            rings.push(s.ring_id);
        }
        match rings.windows(2).all(|w| w[0] == w[1]) {
            true => Ok(()),
            false => Err(format!("rings differ: {rings:?}")),
        }
    })?;
    Ok(took)
}

/// Milliseconds from kill -9 of the last node to both others on the new ring.
fn failover_ms(kind: Kind) -> Result<Vec<f64>, String> {
    let mut c = Cluster::start(ClusterSpec::new(&[kind; NODES]))?;
    let all: Vec<usize> = (0..NODES).collect();
    let survivors: Vec<usize> = (0..NODES - 1).collect();
    let mut times = Vec::new();
    for _ in 0..RUNS {
        wait_for_members(&mut c, &all, &all, Duration::from_millis(100), FORM)?;
        let killed = Instant::now();
        c.kill9(NODES - 1)?;
        wait_for_members(&mut c, &survivors, &survivors, POLL, FORM)?;
        times.push(killed.elapsed().as_secs_f64() * 1000.0);
        c.restart(NODES - 1)?;
    }
    Ok(times)
}

/// Messages per second delivered at node 1 while every node sends one
/// message every millisecond, over 5 s of a formed 3-node ring.
fn vireo_throughput() -> Result<f64, String> {
    let mut c = Cluster::new(ClusterSpec::vireo(NODES))?;
    for i in 0..NODES {
        c.nodes[i].send_every_ms = Some(1);
        c.restart(i)?;
    }
    let all: Vec<usize> = (0..NODES).collect();
    wait_for_members(&mut c, &all, &all, Duration::from_millis(100), FORM)?;
    let log = c.nodes[0].delivery_log(1);
    let count = || -> Result<usize, String> {
        let events = delivery::read(&log)?;
        Ok(events
            .iter()
            .filter(|e| matches!(e, Event::Deliver { .. }))
            .count())
    };
    // Let the senders get going before the window opens.
    wait_until(FORM, "first deliveries", || match count()? {
        0 => Err("nothing delivered yet".into()),
        n => Ok(n),
    })?;
    let (before, start) = (count()?, Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let after = count()?;
    Ok((after - before) as f64 / start.elapsed().as_secs_f64())
}

pub fn bench_cluster() {
    println!("\n== cluster: {NODES} nodes, token 1000 ms + 650 ms/node above 2, median of {RUNS}");
    let real = failover_ms(Kind::Corosync);
    let vireo = match membershipd_binary() {
        Ok(_) => failover_ms(Kind::Vireo),
        Err(e) => Err(e),
    };
    match (&real, &vireo) {
        (Ok(r), Ok(v)) => {
            let (r, v) = (median(r.clone()), median(v.clone()));
            println!(
                "{:<36} {v:>10.0} ms   {r:>10.0} ms   {:>7.2}x",
                "kill -9 -> new ring on survivors",
                v / r
            );
            println!("(columns: Vireo, corosync 3.1.7, ratio; goal <= 1.0x)");
        }
        (Ok(r), Err(e)) => {
            println!(
                "{:<36} {:>10.0} ms (corosync 3.1.7)",
                "kill -9 -> new ring on survivors",
                median(r.clone())
            );
            println!("Vireo: missing ({e})");
        }
        (Err(e), _) => println!("kill -9 -> new ring: corosync run failed: {e}"),
    }
    match membershipd_binary().and_then(|_| vireo_throughput()) {
        Ok(rate) => println!(
            "{:<36} {rate:>10.0} msg/s (offered {} msg/s)",
            "Vireo ordered broadcast, 3 nodes",
            NODES * 1000
        ),
        Err(e) => println!("Vireo ordered broadcast throughput: missing ({e})"),
    }
}
