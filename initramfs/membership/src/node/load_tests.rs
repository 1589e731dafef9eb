//! Forming under offered load: clients that send from a node's first moment,
//! far faster than the ring carries, must not keep the ring from forming (the
//! `vireo-bench broadcast` row: 5 daemons, 10 messages per ms each).

use super::sim::{Event, Sim};
use crate::totemsrp::MembState;

const NODES: u32 = 5;
/// Messages each running node's client offers per simulated millisecond: the
/// five of them offer 100/ms, ten times what a 5-node ring delivers here.
const OFFERED_PER_MS: u32 = 20;
/// Nodes come up one after another, as the bench starts its daemons: the
/// first ones already have full queues when the last ones join.
const START_GAP_MS: u64 = 300;
/// 5 nodes at token 1000: token 2950 ms + consensus 3540 ms + 3 s.
const FORM_LIMIT_MS: u64 = 2950 + 3540 + 3000;

/// Each running node's client sends until its node refuses (a full queue),
/// as the daemon's test traffic does, then the network runs for 1 ms.
fn run_loaded(sim: &mut Sim, ms: u64, counter: &mut u64) {
    for _ in 0..ms {
        for id in sim.running() {
            for _ in 0..OFFERED_PER_MS {
                *counter += 1;
                if !sim.broadcast(id, format!("{id}:{counter}").as_bytes()) {
                    break;
                }
            }
        }
        sim.run(1);
    }
}

/// Every node's status shows all five, quorate, on one ring.
fn formed(sim: &Sim) -> bool {
    let statuses: Vec<_> = sim.nodes.values().map(|n| n.status()).collect();
    statuses.len() == NODES as usize
        && statuses.iter().all(|s| {
            s.quorate && s.members.len() == NODES as usize && s.ring_id == statuses[0].ring_id
        })
        && sim
            .nodes
            .values()
            .all(|n| n.srp_state() == MembState::Operational)
}

#[test]
fn five_nodes_offering_traffic_from_the_start_form_one_ring() {
    let mut sim = Sim::stopped(NODES, 17, "");
    let mut counter = 0;
    for id in 1..=NODES {
        sim.start(id);
        run_loaded(&mut sim, START_GAP_MS, &mut counter);
    }
    let mut waited = START_GAP_MS;
    while !formed(&sim) {
        let views: Vec<_> = sim.nodes.values().map(|n| n.status()).collect();
        assert!(
            waited <= FORM_LIMIT_MS,
            "no ring of 5 within {FORM_LIMIT_MS} ms of the last start: {:?}",
            views
                .iter()
                .map(|s| (s.node_id, s.ring_id, s.members.len(), s.quorate))
                .collect::<Vec<_>>()
        );
        run_loaded(&mut sim, 100, &mut counter);
        waited += 100;
    }
    eprintln!("formed {waited} ms after the last start");
    // The ring carries the offered traffic once formed: node 1 delivers
    // messages of every sender after the last configuration.
    sim.logs.values_mut().for_each(Vec::clear);
    run_loaded(&mut sim, 1000, &mut counter);
    let log = &sim.logs[&1];
    assert!(
        !log.iter().any(|e| matches!(e, Event::Config(..))),
        "reformed"
    );
    for sender in 1..=NODES {
        let n = log
            .iter()
            .filter(|e| matches!(e, Event::Deliver(s, _) if *s == sender))
            .count();
        assert!(n > 100, "node 1 delivered {n} messages of node {sender}");
    }
}
