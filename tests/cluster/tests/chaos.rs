//! Five Vireo nodes under random kills, restarts and partitions (fixed seed,
//! `VIREO_CHAOS_SEED` to try another, `VIREO_CHAOS_STEPS` for more or fewer), each broadcasting a numbered message
//! every 20 ms. Asserted throughout: no status is ever quorate with fewer than
//! three members, and past the failure deadline a node's ring holds only nodes
//! it can reach and a node without a majority around it is not quorate. Asserted at the end from every run's delivery log: all
//! nodes agree on every configuration, and within a configuration every node
//! delivered a prefix of one common message order.

use std::time::{Duration, Instant};

use vireo_cluster_tests::delivery::{self, Log};
use vireo_cluster_tests::expect::{ids, member_ids, wait_for_view};
use vireo_cluster_tests::{Cluster, ClusterSpec, Kind};

const NODES: usize = 5;
/// Actions per run (`VIREO_CHAOS_STEPS` to change).
const STEPS: usize = 12;
const MAJORITY: usize = NODES / 2 + 1;

/// xorshift64*: a seeded sequence is all the test needs.
struct Rng(u64);

impl Rng {
    /// splitmix64 of the seed, so nearby seeds give unrelated runs.
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Which island each node is on; `None` = its port is down.
struct Topology {
    island: Vec<Option<usize>>,
}

impl Topology {
    /// Node ids node `i` can reach (itself included) among the running ones.
    fn reachable(&self, i: usize, running: &[usize]) -> Vec<u32> {
        let peers: Vec<usize> = match self.island[i] {
            None => vec![i],
            Some(k) => running
                .iter()
                .copied()
                .filter(|&j| self.island[j] == Some(k))
                .collect(),
        };
        ids(&peers)
    }

    fn apply(&self, c: &mut Cluster) {
        let islands: Vec<Vec<usize>> = (0..2)
            .map(|k| (0..NODES).filter(|&i| self.island[i] == Some(k)).collect())
            .collect();
        let refs: Vec<&[usize]> = islands.iter().map(Vec::as_slice).collect();
        c.partition(&refs).unwrap();
    }
}

fn step(c: &mut Cluster, rng: &mut Rng, topo: &mut Topology) -> String {
    let running = c.running();
    let stopped: Vec<usize> = (0..NODES).filter(|i| !running.contains(i)).collect();
    match rng.below(4) {
        0 if running.len() > 2 => {
            let i = running[rng.below(running.len())];
            c.kill9(i).unwrap();
            format!("kill -9 node{}", i + 1)
        }
        1 if !stopped.is_empty() => {
            let i = stopped[rng.below(stopped.len())];
            c.restart(i).unwrap();
            format!("restart node{}", i + 1)
        }
        2 => {
            for i in 0..NODES {
                topo.island[i] = match rng.below(5) {
                    0 => None,
                    k => Some(k % 2),
                };
            }
            topo.apply(c);
            format!("partition {:?}", topo.island)
        }
        _ => {
            topo.island = vec![Some(0); NODES];
            topo.apply(c);
            "heal".to_string()
        }
    }
}

/// Polls every running node for `how_long`; after `grace` since the change, a
/// node without a majority around it must not be quorate.
fn observe(c: &mut Cluster, topo: &Topology, how_long: Duration, grace: Duration, what: &str) {
    let start = Instant::now();
    while start.elapsed() < how_long {
        let running = c.running();
        for &i in &running {
            let Ok(s) = c.status(i) else { continue };
            if s.quorate && s.members.len() < MAJORITY {
                panic!(
                    "after {what}: node{} quorate with {} members",
                    i + 1,
                    s.members.len()
                );
            }
            if start.elapsed() <= grace {
                continue;
            }
            // Past the deadline a ring holds only nodes this one can reach...
            let reachable = topo.reachable(i, &running);
            let members = member_ids(&s);
            if let Some(m) = members.iter().find(|m| !reachable.contains(m)) {
                panic!(
                    "after {what}: node{} lists node{m}, which it cannot reach, {:?} later \
                     (ring {}, members {members:?})",
                    i + 1,
                    start.elapsed(),
                    s.ring_id
                );
            }
            // ...and without a majority around it, it is not quorate.
            if s.quorate && reachable.len() < MAJORITY {
                panic!(
                    "after {what}: node{} quorate {:?} in a minority",
                    i + 1,
                    start.elapsed()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Starts five nodes of `kind`, runs the seeded steps with the checks of
/// [`observe`], heals and restarts everything, and waits for one quorate ring.
fn run_chaos(kind: Kind, steps: usize) -> Cluster {
    let seed = env_or("VIREO_CHAOS_SEED", 0x5eed_0005_u64);
    eprintln!("chaos seed {seed:#x}, {kind:?}");
    let mut rng = Rng::new(seed);
    let mut c = Cluster::new(ClusterSpec::new(&[kind; NODES])).unwrap();
    for i in 0..NODES {
        c.nodes[i].send_every_ms = Some(20);
        c.restart(i).unwrap();
    }
    let all: Vec<usize> = (0..NODES).collect();
    wait_for_view(&mut c, &all, &all, true, Duration::from_secs(30)).unwrap();
    let mut topo = Topology {
        island: vec![Some(0); NODES],
    };
    // How long a node may take to notice a change: token loss, a consensus
    // round and a margin, as for corosync (`make bench-cluster` times the
    // same 2|2|1 split against it).
    let grace = c.failure_deadline();
    for n in 0..steps {
        let what = step(&mut c, &mut rng, &mut topo);
        let how_long = grace + Duration::from_millis(500 * rng.below(4) as u64);
        eprintln!("step {n}: {what}, observing {how_long:?}");
        observe(&mut c, &topo, how_long, grace, &what);
    }
    c.heal().unwrap();
    for i in 0..NODES {
        if !c.nodes[i].is_running() {
            c.restart(i).unwrap();
        }
    }
    wait_for_view(&mut c, &all, &all, true, Duration::from_secs(60)).unwrap();
    c
}

/// The same steps on real corosync: shows the checks of [`observe`] are what
/// corosync itself does (fewer steps: it has no delivery log to add).
#[test]
fn five_real_nodes_pass_the_same_membership_checks() {
    run_chaos(Kind::Corosync, env_or("VIREO_CHAOS_STEPS", STEPS) / 2);
}

#[test]
fn five_vireo_nodes_keep_order_and_quorum_under_chaos() {
    let c = run_chaos(Kind::Vireo, env_or("VIREO_CHAOS_STEPS", STEPS));
    // Let the last messages settle before reading the logs.
    std::thread::sleep(Duration::from_secs(1));
    let mut logs = Vec::new();
    for (i, node) in c.nodes.iter().enumerate() {
        for run in 1..=node.incarnations() {
            logs.push(Log {
                node_id: ClusterSpec::node_id(i),
                incarnation: run,
                events: delivery::read(&node.delivery_log(run)).unwrap(),
            });
        }
    }
    let summary = delivery::check(&logs).unwrap();
    eprintln!(
        "{} configurations, {} deliveries checked",
        summary.configurations, summary.deliveries
    );
    assert!(
        summary.configurations > 1,
        "no membership change was logged"
    );
    assert!(summary.deliveries > 0, "no message was delivered");
}
