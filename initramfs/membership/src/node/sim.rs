//! A deterministic simulated network for whole nodes: virtual time, per-link
//! delivery with seeded loss and delay (so reordering), partitions and crashes.
//! Used by the unit tests of totemsrp, sync and votequorum together.

use std::collections::{BTreeMap, BTreeSet};

use super::{Node, NodeAction, NodeTimer};
use crate::config::{self, CorosyncConfig};
use crate::totemsrp::Destination;
use crate::wire::{self, RingId};

/// One node's log: regular configurations and delivered application messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Config(RingId, Vec<u32>),
    Transitional,
    Deliver(u32, Vec<u8>),
}

struct Packet {
    at: u64,
    seq: u64,
    to: u32,
    bytes: Vec<u8>,
}

pub struct Sim {
    pub now: u64,
    pub nodes: BTreeMap<u32, Node>,
    timers: BTreeMap<u32, BTreeMap<NodeTimer, u64>>,
    in_flight: Vec<Packet>,
    next_seq: u64,
    rng: u64,
    /// Percent of datagrams dropped.
    pub loss: u64,
    /// Maximum extra delay in ms (datagrams overtake each other).
    pub jitter: u64,
    /// Island per node; nodes on different islands cannot talk.
    pub island: BTreeMap<u32, u32>,
    pub logs: BTreeMap<u32, Vec<Event>>,
    config: CorosyncConfig,
    ring_seqs: BTreeMap<u32, u64>,
}

pub fn config_text(n: u32, quorum_extra: &str) -> String {
    let mut s = String::from(
        "totem {\n version: 2\n cluster_name: sim\n transport: udpu\n token: 1000\n}\nnodelist {\n",
    );
    for id in 1..=n {
        s += &format!(
            " node {{\n  ring0_addr: 10.0.0.{id}\n  nodeid: {id}\n  name: node{id}\n }}\n"
        );
    }
    s += &format!("}}\nquorum {{\n provider: corosync_votequorum\n{quorum_extra}}}\n");
    s
}

impl Sim {
    pub fn new(n: u32, seed: u64, quorum_extra: &str) -> Self {
        let mut sim = Sim::stopped(n, seed, quorum_extra);
        for id in 1..=n {
            sim.start(id);
        }
        sim
    }

    /// A network of `n` configured nodes, none of them started yet.
    pub fn stopped(n: u32, seed: u64, quorum_extra: &str) -> Self {
        let config = config::parse(&config_text(n, quorum_extra)).expect("sim config");
        Sim {
            now: 0,
            nodes: BTreeMap::new(),
            timers: BTreeMap::new(),
            in_flight: Vec::new(),
            next_seq: 0,
            rng: seed | 1,
            loss: 0,
            jitter: 0,
            island: BTreeMap::new(),
            logs: BTreeMap::new(),
            config,
            ring_seqs: BTreeMap::new(),
        }
    }

    fn rand(&mut self, below: u64) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % below.max(1)
    }

    /// (Re)starts a node, with the ring sequence it persisted.
    pub fn start(&mut self, id: u32) {
        let seq = self.ring_seqs.get(&id).copied().unwrap_or(0);
        let mut node = Node::new(&self.config, id, seq);
        let actions = node.start();
        self.nodes.insert(id, node);
        self.timers.insert(id, BTreeMap::new());
        self.apply(id, actions);
    }

    /// kill -9: the node and everything addressed to it vanish.
    pub fn crash(&mut self, id: u32) {
        self.nodes.remove(&id);
        self.timers.remove(&id);
        self.in_flight.retain(|p| p.to != id);
    }

    /// Offers one application message; false when the node refused it (its
    /// queue is full) or does not run.
    pub fn broadcast(&mut self, id: u32, payload: &[u8]) -> bool {
        self.nodes
            .get_mut(&id)
            .is_some_and(|node| node.broadcast(payload.to_vec()))
    }

    fn reachable(&self, a: u32, b: u32) -> bool {
        self.island.get(&a).copied().unwrap_or(0) == self.island.get(&b).copied().unwrap_or(0)
    }

    fn apply(&mut self, id: u32, actions: Vec<NodeAction>) {
        for action in actions {
            match action {
                NodeAction::Send(to, msg) => {
                    let bytes = wire::encode(&msg);
                    let targets: Vec<u32> = match to {
                        Destination::All => self
                            .config
                            .nodes
                            .iter()
                            .map(|n| n.nodeid)
                            .filter(|n| *n != id)
                            .collect(),
                        Destination::Members(ids) => ids.into_iter().filter(|n| *n != id).collect(),
                        Destination::Node(n) => vec![n],
                    };
                    for t in targets {
                        self.post(id, t, bytes.clone());
                    }
                }
                NodeAction::Arm(t, ms) => {
                    let at = self.now + u64::from(ms);
                    self.timers.entry(id).or_default().insert(t, at);
                }
                NodeAction::Cancel(t) => {
                    self.timers.entry(id).or_default().remove(&t);
                }
                NodeAction::Deliver { sender, payload } => self
                    .logs
                    .entry(id)
                    .or_default()
                    .push(Event::Deliver(sender, payload)),
                NodeAction::Config { ring_id, members } => self
                    .logs
                    .entry(id)
                    .or_default()
                    .push(Event::Config(ring_id, members)),
                NodeAction::Transitional { .. } => {
                    self.logs.entry(id).or_default().push(Event::Transitional)
                }
                NodeAction::StoreRingSeq(s) => {
                    self.ring_seqs.insert(id, s);
                }
                NodeAction::GroupDeliver { .. }
                | NodeAction::ReloadConfig { .. }
                | NodeAction::SyncCompleted { .. } => {}
            }
        }
    }

    fn post(&mut self, from: u32, to: u32, bytes: Vec<u8>) {
        if !self.reachable(from, to) || self.rand(100) < self.loss {
            return;
        }
        let delay = 1 + if self.jitter > 0 {
            self.rand(self.jitter + 1)
        } else {
            0
        };
        self.next_seq += 1;
        self.in_flight.push(Packet {
            at: self.now + delay,
            seq: self.next_seq,
            to,
            bytes,
        });
    }

    /// Runs the network for `ms` of virtual time.
    pub fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while let Some(at) = self.next_event_time() {
            if at > end {
                break;
            }
            self.now = at;
            self.step();
        }
        self.now = end;
    }

    fn next_event_time(&self) -> Option<u64> {
        let p = self.in_flight.iter().map(|p| p.at).min();
        let t = self.timers.values().flat_map(|m| m.values().copied()).min();
        p.into_iter().chain(t).min()
    }

    fn step(&mut self) {
        let now = self.now;
        let mut due: Vec<Packet> = Vec::new();
        let mut rest = Vec::new();
        for p in self.in_flight.drain(..) {
            if p.at <= now {
                due.push(p);
            } else {
                rest.push(p);
            }
        }
        self.in_flight = rest;
        due.sort_by_key(|p| (p.at, p.seq));
        for p in due {
            let Ok(msg) = wire::decode(&p.bytes) else {
                continue;
            };
            if let Some(node) = self.nodes.get_mut(&p.to) {
                let actions = node.receive(msg);
                self.apply(p.to, actions);
            }
        }
        let fired: Vec<(u32, NodeTimer)> = self
            .timers
            .iter()
            .flat_map(|(id, m)| {
                m.iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(t, _)| (*id, *t))
            })
            .collect();
        for (id, t) in fired {
            if let Some(m) = self.timers.get_mut(&id) {
                m.remove(&t);
            }
            if let Some(node) = self.nodes.get_mut(&id) {
                let actions = node.timer_fired(t);
                self.apply(id, actions);
            }
        }
    }

    /// Node ids that are running.
    pub fn running(&self) -> BTreeSet<u32> {
        self.nodes.keys().copied().collect()
    }
}
