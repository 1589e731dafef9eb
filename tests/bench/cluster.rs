//! Cluster rows: how long a node's crash goes unnoticed (kill -9 → the
//! survivors report the new ring) and how long a 3-way split takes to settle,
//! real corosync against Vireo on the same corosync.conf and timers, and
//! Vireo's ordered-broadcast throughput.
//!
//! Both implementations are observed through their status (quorumtool for corosync, the socket
//! for Vireo) polled every 10 ms; a quorumtool run costs a few ms more than a
//! socket read, which the corosync figure carries.

use std::time::{Duration, Instant};

use vireo_cluster_tests::delivery::{self, Event};
use vireo_cluster_tests::expect::{ids, member_ids};
use vireo_cluster_tests::node::membershipd_binary;
use vireo_cluster_tests::replicas::{open_all, write_to_all};
use vireo_cluster_tests::{wait_until, wait_until_every, Cluster, ClusterSpec, Kind};

use crate::measure::median;
use crate::Failures;

const RUNS: usize = 5;
const SPLIT_RUNS: usize = 3;
const NODES: usize = 3;
/// Senders in the throughput run: each offers 1000 messages/s (1 every ms, the
/// finest VIREO_MEMBERSHIP_SEND_EVERY_MS allows), so more nodes, more load.
const SENDERS: usize = 5;
/// Test messages each sender offers per millisecond: far above what the ring
/// delivers, so the figure is the ring's ceiling, not the offered load.
const BURST: u32 = 10;
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

/// Messages per second delivered at node 1 while every node offers [`BURST`]
/// messages every millisecond, over 5 s of a formed ring of [`SENDERS`] nodes.
fn vireo_throughput() -> Result<f64, String> {
    let mut c = Cluster::new(ClusterSpec::vireo(SENDERS))?;
    for i in 0..SENDERS {
        c.nodes[i].send_every_ms = Some(1);
        c.nodes[i].send_burst = Some(BURST);
        c.restart(i)?;
    }
    let all: Vec<usize> = (0..SENDERS).collect();
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

/// Milliseconds from splitting 5 nodes {1,2}|{3,4}|{5} (node 5's port down)
/// to every node showing its own island as the ring.
fn split_ms(kind: Kind) -> Result<Vec<f64>, String> {
    let mut c = Cluster::start(ClusterSpec::new(&[kind; 5]))?;
    let all: Vec<usize> = (0..5).collect();
    let islands: [&[usize]; 3] = [&[0, 1], &[2, 3], &[4]];
    let mut times = Vec::new();
    for _ in 0..SPLIT_RUNS {
        wait_for_members(&mut c, &all, &all, Duration::from_millis(100), FORM)?;
        let split = Instant::now();
        c.partition(&islands[..2])?;
        for island in islands {
            wait_for_members(&mut c, island, island, POLL, FORM)?;
        }
        times.push(split.elapsed().as_secs_f64() * 1000.0);
        c.heal()?;
    }
    Ok(times)
}

/// One row: Vireo, corosync and their ratio, medians of the runs. A side
/// that could not measure is printed and counted as a failure.
fn compare_row(
    failures: &mut Failures,
    name: &str,
    real: Result<Vec<f64>, String>,
    vireo: Result<Vec<f64>, String>,
) {
    match (real, vireo) {
        (Ok(r), Ok(v)) => {
            let (r, v) = (median(r), median(v));
            println!("{name:<40} {v:>8.0} ms {r:>8.0} ms {:>7.2}x", v / r);
        }
        (Ok(r), Err(e)) => {
            println!("{name:<40} missing    {:>8.0} ms", median(r));
            println!("  Vireo: {e}");
            failures.add(name, &format!("Vireo missing: {e}"));
        }
        (Err(e), _) => {
            println!("{name:<40} corosync run failed: {e}");
            failures.add(name, &format!("corosync run failed: {e}"));
        }
    }
}

fn vireo_or_missing(run: impl FnOnce() -> Result<Vec<f64>, String>) -> Result<Vec<f64>, String> {
    membershipd_binary().and_then(|_| run())
}

pub fn bench_cluster(failures: &mut Failures) {
    println!("\n== cluster: token 1000 ms + 650 ms per node above 2; medians");
    println!(
        "{:<40} {:>11} {:>11} {:>8}",
        "", "Vireo", "corosync", "ratio"
    );
    compare_row(
        failures,
        &format!("kill -9 1 of {NODES} -> new ring ({RUNS} runs)"),
        failover_ms(Kind::Corosync),
        vireo_or_missing(|| failover_ms(Kind::Vireo)),
    );
    compare_row(
        failures,
        &format!("split 5 as 2|2|1 -> 3 rings ({SPLIT_RUNS} runs)"),
        split_ms(Kind::Corosync),
        vireo_or_missing(|| split_ms(Kind::Vireo)),
    );
    println!("goal: Vireo <= 1.0x corosync");
    bench_broadcast(failures);
    bench_store(failures);
    crate::ha::bench_ha(failures);
    crate::scale::bench_scale(failures);
}

/// Writes per store row.
const STORE_WRITES: usize = 20;

/// Milliseconds from `put` on one node to the write applied on all `n`
/// replicas, each write from the next node in turn (Vireo only: corosync has
/// no replicated store; pmxcfs is the nearest thing and is not packaged).
fn store_latency(n: usize) -> Result<Vec<f64>, String> {
    let mut c = Cluster::start(ClusterSpec::vireo(n))?;
    let all: Vec<usize> = (0..n).collect();
    wait_for_members(
        &mut c,
        &all,
        &all,
        Duration::from_millis(100),
        Duration::from_secs(60),
    )?;
    let stores = open_all(&c, Duration::from_secs(60))?;
    (0..STORE_WRITES)
        .map(|k| {
            write_to_all(&stores, k % n, &format!("bench/{k}")).map(|d| d.as_secs_f64() * 1000.0)
        })
        .collect()
}

/// The store rows (also alone: `vireo-bench store`).
pub fn bench_store(failures: &mut Failures) {
    for n in [3, 16] {
        let name = format!("store write -> applied on all {n}");
        match membershipd_binary().and_then(|_| store_latency(n)) {
            Ok(ms) => {
                let max = ms.iter().copied().fold(0.0, f64::max);
                println!(
                    "{name:<40} {:>8.1} ms median, {max:.1} ms max ({STORE_WRITES} writes)",
                    median(ms)
                );
            }
            Err(e) => {
                println!("{name:<40} missing ({e})");
                failures.add(&name, &format!("missing: {e}"));
            }
        }
    }
}

/// Vireo's ordered-broadcast ceiling (also alone: `vireo-bench broadcast`).
pub fn bench_broadcast(failures: &mut Failures) {
    let name = "ordered broadcast, 5 Vireo nodes";
    match membershipd_binary().and_then(|_| vireo_throughput()) {
        Ok(rate) => println!(
            "{name:<40} {rate:>8.0} msg/s (offered {} msg/s)",
            SENDERS * 1000 * BURST as usize
        ),
        Err(e) => {
            println!("{name:<40} missing ({e})");
            failures.add(name, &format!("missing: {e}"));
        }
    }
}
