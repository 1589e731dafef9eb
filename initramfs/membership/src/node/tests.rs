//! Whole-node tests on the simulated network: forming, failures, partitions,
//! ordered delivery under loss and reordering, and votequorum's options.

use super::sim::{Event, Sim};
use crate::totemsrp::MembState;

fn views(sim: &Sim) -> Vec<(u32, String, Vec<u32>, bool, u32)> {
    sim.nodes
        .iter()
        .map(|(id, n)| {
            let s = n.status();
            let members = s.members.iter().map(|m| m.node_id).collect();
            (
                *id,
                s.ring_id.to_string(),
                members,
                s.quorate,
                s.total_votes,
            )
        })
        .collect()
}

fn assert_one_ring(sim: &Sim, ids: &[u32], quorate: bool) {
    let v = views(sim);
    let wanted: Vec<_> = v.iter().filter(|x| ids.contains(&x.0)).collect();
    assert_eq!(wanted.len(), ids.len(), "{v:?}");
    for x in &wanted {
        assert_eq!(x.2, ids, "members: {v:?}");
        assert_eq!(x.1, wanted[0].1, "ring ids: {v:?}");
        assert_eq!(x.3, quorate, "quorate: {v:?}");
        assert_eq!(x.4, ids.len() as u32, "votes: {v:?}");
    }
    for id in ids {
        assert_eq!(sim.nodes[id].srp_state(), MembState::Operational);
    }
}

#[test]
fn three_nodes_form_one_quorate_ring() {
    let mut sim = Sim::new(3, 1, "");
    sim.run(3000);
    assert_one_ring(&sim, &[1, 2, 3], true);
    let s = sim.nodes[&2].status();
    assert_eq!((s.expected_votes, s.quorum, s.ring_id.rep), (3, 2, 1));
}

#[test]
fn crash_is_detected_and_survivors_reform() {
    let mut sim = Sim::new(3, 2, "");
    sim.run(3000);
    sim.crash(1);
    // token (1000) + consensus (1200) + a margin.
    sim.run(4500);
    assert_one_ring(&sim, &[2, 3], true);
    assert_eq!(sim.nodes[&2].status().ring_id.rep, 2);
    sim.start(1);
    sim.run(3000);
    assert_one_ring(&sim, &[1, 2, 3], true);
}

#[test]
fn lone_survivor_forms_its_own_ring() {
    let mut sim = Sim::new(2, 3, " two_node: 1\n");
    sim.run(3000);
    assert_one_ring(&sim, &[1, 2], true);
    sim.crash(1);
    sim.run(4000);
    assert_one_ring(&sim, &[2], true);
}

#[test]
fn partition_leaves_only_the_majority_quorate() {
    let mut sim = Sim::new(5, 4, "");
    sim.run(3000);
    assert_one_ring(&sim, &[1, 2, 3, 4, 5], true);
    for id in [4, 5] {
        sim.island.insert(id, 1);
    }
    // 5 nodes: token 2950 ms, consensus 3540 ms.
    sim.run(9000);
    assert_one_ring(&sim, &[1, 2, 3], true);
    assert_one_ring(&sim, &[4, 5], false);
    sim.island.clear();
    sim.run(9000);
    assert_one_ring(&sim, &[1, 2, 3, 4, 5], true);
}

/// The application messages each node delivered in its last configuration.
fn deliveries(sim: &Sim, id: u32) -> Vec<(u32, Vec<u8>)> {
    let log = &sim.logs[&id];
    let start = log
        .iter()
        .rposition(|e| matches!(e, Event::Config(..)))
        .map_or(0, |i| i + 1);
    log[start..]
        .iter()
        .filter_map(|e| match e {
            Event::Deliver(s, p) => Some((*s, p.clone())),
            Event::Config(..) | Event::Transitional => None,
        })
        .collect()
}

#[test]
fn total_order_under_loss_and_reordering() {
    let mut sim = Sim::new(4, 5, "");
    sim.run(3000);
    assert_one_ring(&sim, &[1, 2, 3, 4], true);
    sim.loss = 3;
    sim.jitter = 5;
    for round in 0..60u32 {
        for id in 1..=4u32 {
            let msg = format!("{id}:{round}");
            sim.broadcast(id, msg.as_bytes());
            // Large ones go through totempg fragmentation.
            if round % 20 == 0 {
                sim.broadcast(id, &vec![id as u8; 3000]);
            }
        }
        sim.run(20);
    }
    sim.loss = 0;
    sim.run(3000);
    assert_one_ring(&sim, &[1, 2, 3, 4], true);
    let first = deliveries(&sim, 1);
    assert_eq!(first.len(), 4 * 63, "every message delivered once");
    for id in 2..=4 {
        assert_eq!(deliveries(&sim, id), first, "node {id} order");
    }
    // Each sender's messages arrive in the order it sent them.
    let from2: Vec<_> = first
        .iter()
        .filter(|(s, p)| *s == 2 && p.len() < 100)
        .collect();
    assert_eq!(from2.first().unwrap().1, b"2:0");
    assert_eq!(from2.last().unwrap().1, b"2:59");
}

#[test]
fn wait_for_all_blocks_until_everyone_was_seen() {
    let mut sim = Sim::new(3, 6, " wait_for_all: 1\n");
    sim.crash(3);
    sim.run(4000);
    assert_one_ring(&sim, &[1, 2], false);
    sim.start(3);
    sim.run(3000);
    assert_one_ring(&sim, &[1, 2, 3], true);
    sim.crash(3);
    sim.run(4000);
    assert_one_ring(&sim, &[1, 2], true);
}

#[test]
fn last_man_standing_shrinks_expected_votes() {
    let mut sim = Sim::new(
        4,
        7,
        " last_man_standing: 1\n last_man_standing_window: 1000\n",
    );
    sim.run(3000);
    sim.crash(4);
    sim.run(6000);
    assert_one_ring(&sim, &[1, 2, 3], true);
    assert_eq!(sim.nodes[&1].status().expected_votes, 3);
    sim.crash(3);
    sim.run(6000);
    assert_one_ring(&sim, &[1, 2], true);
    assert_eq!(sim.nodes[&1].status().expected_votes, 2);
}

#[test]
fn auto_tie_breaker_lowest_wins_even_split() {
    let mut sim = Sim::new(4, 8, " auto_tie_breaker: 1\n");
    sim.run(3000);
    for id in [3, 4] {
        sim.island.insert(id, 1);
    }
    sim.run(5000);
    assert_one_ring(&sim, &[1, 2], true);
    assert_one_ring(&sim, &[3, 4], false);
}

#[test]
fn chaos_replay_debug() {
    let mut sim = Sim::new(5, 9, "");
    let traffic = |sim: &mut Sim, ms: u64| {
        for _ in 0..ms / 20 {
            for id in sim.running() {
                sim.broadcast(id, b"x");
            }
            sim.run(20);
        }
    };
    traffic(&mut sim, 8000);
    sim.crash(3);
    traffic(&mut sim, 8000);
    sim.crash(1);
    traffic(&mut sim, 8000);
    sim.island.insert(2, 1);
    sim.island.insert(4, 0);
    sim.island.insert(5, 2);
    sim.island.insert(1, 0);
    sim.island.insert(3, 0);
    traffic(&mut sim, 7500);
    sim.start(3);
    for _ in 0..9 {
        traffic(&mut sim, 1000);
        eprintln!("{} {:?}", sim.now, views(&sim));
    }
}
