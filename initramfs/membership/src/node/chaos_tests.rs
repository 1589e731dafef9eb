//! Seeded chaos on the simulated network: five nodes, random crashes, restarts,
//! partitions and heals under steady traffic with some loss. Checked throughout:
//! no node reports quorum with fewer than three members; after each settling
//! period nobody outside a majority island is quorate. Checked at the end from
//! every node's log: one member list per ring id, and within a ring every node
//! delivered a prefix of one common order up to its transitional configuration
//! (after it, extended virtual synchrony lets partitions differ).

use std::collections::BTreeMap;

use super::sim::{Event, Sim};
use crate::wire::RingId;

const NODES: u32 = 5;
const MAJORITY: usize = 3;
/// token (2950 ms for five nodes) + consensus (3540 ms) + a margin.
const SETTLE_MS: u64 = 8000;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn traffic(sim: &mut Sim, ms: u64, counter: &mut u64) {
    for _ in 0..ms / 20 {
        for id in sim.running() {
            *counter += 1;
            sim.broadcast(id, format!("{id}:{counter}").as_bytes());
        }
        sim.run(20);
        check_no_small_quorate(sim);
    }
}

fn check_no_small_quorate(sim: &Sim) {
    for (id, node) in &sim.nodes {
        let s = node.status();
        assert!(
            !s.quorate || s.members.len() >= MAJORITY,
            "node {id} quorate with {:?} at {} ms",
            s.members,
            sim.now
        );
    }
}

/// Nodes reachable from `id` (itself included) among the running ones.
fn reachable(sim: &Sim, id: u32) -> usize {
    let island = sim.island.get(&id).copied().unwrap_or(0);
    sim.running()
        .iter()
        .filter(|n| sim.island.get(n).copied().unwrap_or(0) == island)
        .count()
}

fn check_logs(sim: &Sim) -> usize {
    let mut members: BTreeMap<RingId, Vec<u32>> = BTreeMap::new();
    let mut orders: BTreeMap<RingId, Vec<(u32, Vec<u8>)>> = BTreeMap::new();
    let mut delivered = 0;
    for (id, log) in &sim.logs {
        let mut ring = None;
        let mut regular = false;
        let mut mine: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut flush = |ring: Option<RingId>, mine: &mut Vec<(u32, Vec<u8>)>| {
            if let Some(r) = ring {
                let common = orders.entry(r).or_default();
                let n = common.len().min(mine.len());
                if let Some(at) = (0..n).find(|&i| common[i] != mine[i]) {
                    let show = |v: &[(u32, Vec<u8>)]| -> Vec<String> {
                        v.iter()
                            .map(|(s, p)| format!("{s}:{}", String::from_utf8_lossy(p)))
                            .collect()
                    };
                    panic!(
                        "node {id} ring {r}: order differs at {at} of {n}: common {:?} mine {:?}",
                        show(&common[at.saturating_sub(2)..(at + 3).min(common.len())]),
                        show(&mine[at.saturating_sub(2)..(at + 3).min(mine.len())])
                    );
                }
                if mine.len() > common.len() {
                    *common = mine.clone();
                }
            }
            mine.clear();
        };
        for e in log {
            match e {
                Event::Config(r, m) => {
                    flush(ring, &mut mine);
                    let first = members.entry(*r).or_insert_with(|| m.clone());
                    assert_eq!(first, m, "ring {r} members seen by node {id}");
                    assert!(m.contains(id));
                    ring = Some(*r);
                    regular = true;
                }
                Event::Transitional => regular = false,
                Event::Deliver(s, p) if regular => {
                    delivered += 1;
                    mine.push((*s, p.clone()));
                }
                Event::Deliver(..) => {}
            }
        }
        flush(ring, &mut mine);
    }
    delivered
}

fn chaos(seed: u64) {
    let mut sim = Sim::new(NODES, seed, "");
    sim.loss = 1;
    sim.jitter = 2;
    let mut rng = Rng(seed | 1);
    let mut counter = 0;
    traffic(&mut sim, SETTLE_MS, &mut counter);
    for _ in 0..12 {
        let running: Vec<u32> = sim.running().into_iter().collect();
        let stopped: Vec<u32> = (1..=NODES).filter(|i| !running.contains(i)).collect();
        match rng.below(4) {
            0 if running.len() > 2 => sim.crash(running[rng.below(running.len() as u64) as usize]),
            1 if !stopped.is_empty() => {
                sim.start(stopped[rng.below(stopped.len() as u64) as usize])
            }
            2 => {
                for id in 1..=NODES {
                    sim.island.insert(id, rng.below(3) as u32);
                }
            }
            _ => sim.island.clear(),
        }
        traffic(&mut sim, SETTLE_MS, &mut counter);
        for id in sim.running() {
            if reachable(&sim, id) < MAJORITY {
                assert!(
                    !sim.nodes[&id].status().quorate,
                    "node {id} quorate in a minority"
                );
            }
        }
    }
    sim.island.clear();
    sim.loss = 0;
    for id in 1..=NODES {
        if !sim.nodes.contains_key(&id) {
            sim.start(id);
        }
    }
    traffic(&mut sim, 2 * SETTLE_MS, &mut counter);
    let views: Vec<_> = sim.nodes.values().map(|n| n.status()).collect();
    for v in &views {
        assert_eq!(
            (v.members.len(), v.quorate),
            (NODES as usize, true),
            "{views:?}"
        );
        assert_eq!(v.ring_id, views[0].ring_id);
    }
    assert!(check_logs(&sim) > 10_000);
}

#[test]
fn chaos_seed_1() {
    chaos(1);
}

#[test]
fn chaos_seed_2() {
    chaos(0xdead_beef);
}

#[test]
fn chaos_seed_3() {
    chaos(42);
}

/// More seeds, for a longer local run: `cargo test --release -p vireo-membership
/// chaos_many -- --ignored`. (At 5% loss and 10 ms jitter the ring spends most of
/// its time reforming and the backlog grows without bound: a known limit.)
#[test]
#[ignore = "long: more chaos seeds"]
fn chaos_many() {
    for seed in 100..112 {
        chaos(seed);
    }
}
