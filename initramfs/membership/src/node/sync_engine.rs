//! The sync protocol run after every new ring (exec/sync.c): every member
//! announces its services (SERVICE_BUILD); once all have, each service in the union,
//! lowest id first, does its sync work and ends with a BARRIER; a service is
//! activated when every member's barrier for it has arrived.

use std::collections::BTreeMap;

use crate::sync::SyncMessage;
use crate::wire::RingId;

/// The services a corosync 3 node syncs: cmap, cpg, quorum, votequorum. We
/// advertise the same list so the union (and so the number of barriers) is the
/// same on every member; only votequorum has work here, the rest just barrier.
pub const ADVERTISED_SERVICES: [i32; 4] = [0, 2, 3, 5];
pub const SERVICE_VOTEQUORUM: i32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    ServiceBuild,
    Process,
}

/// What the node has to do for the sync protocol.
#[derive(Debug, PartialEq, Eq)]
pub enum SyncStep {
    /// Broadcast this sync-group message.
    Send(SyncMessage),
    /// Run the service's sync work (send its messages) before the barrier.
    Process(i32),
    /// Every member passed the barrier of this service.
    Activate(i32),
    /// All services are synchronised for this ring.
    Completed,
}

#[derive(Debug)]
pub struct SyncEngine {
    ring_id: RingId,
    phase: Phase,
    received: BTreeMap<u32, bool>,
    services: Vec<i32>,
    index: usize,
}

impl Default for SyncEngine {
    fn default() -> Self {
        SyncEngine {
            ring_id: RingId::default(),
            phase: Phase::Idle,
            received: BTreeMap::new(),
            services: Vec::new(),
            index: 0,
        }
    }
}

impl SyncEngine {
    pub fn ring_id(&self) -> RingId {
        self.ring_id
    }

    pub fn in_progress(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// A new regular configuration: start over with SERVICE_BUILD.
    pub fn start(&mut self, members: &[u32], ring_id: RingId) -> Vec<SyncStep> {
        self.ring_id = ring_id;
        self.phase = Phase::ServiceBuild;
        self.received = members.iter().map(|id| (*id, false)).collect();
        self.services = ADVERTISED_SERVICES.to_vec();
        self.index = 0;
        vec![SyncStep::Send(SyncMessage::ServiceBuild {
            ring_id,
            services: ADVERTISED_SERVICES.to_vec(),
        })]
    }

    pub fn deliver(&mut self, sender: u32, msg: SyncMessage) -> Vec<SyncStep> {
        if msg.ring_id() != self.ring_id || self.phase == Phase::Idle {
            return Vec::new();
        }
        match msg {
            SyncMessage::ServiceBuild { services, .. } => {
                if self.phase != Phase::ServiceBuild {
                    return Vec::new();
                }
                for s in services {
                    if !self.services.contains(&s) {
                        self.services.push(s);
                    }
                }
                self.services.sort_unstable();
                if self.mark(sender) {
                    return self.process_enter();
                }
                Vec::new()
            }
            SyncMessage::Barrier { .. } => {
                if self.phase != Phase::Process || !self.mark(sender) {
                    return Vec::new();
                }
                let service = self.services[self.index];
                let mut steps = vec![SyncStep::Activate(service)];
                self.index += 1;
                if self.index == self.services.len() {
                    self.phase = Phase::Idle;
                    steps.push(SyncStep::Completed);
                } else {
                    steps.extend(self.process_enter());
                }
                steps
            }
        }
    }

    /// Marks `sender` as heard; true when every member has been.
    fn mark(&mut self, sender: u32) -> bool {
        if let Some(r) = self.received.get_mut(&sender) {
            *r = true;
        }
        self.received.values().all(|r| *r)
    }

    fn process_enter(&mut self) -> Vec<SyncStep> {
        if self.services.is_empty() {
            self.phase = Phase::Idle;
            return vec![SyncStep::Completed];
        }
        self.phase = Phase::Process;
        self.received.values_mut().for_each(|r| *r = false);
        let service = self.services[self.index];
        vec![
            SyncStep::Process(service),
            SyncStep::Send(SyncMessage::Barrier {
                ring_id: self.ring_id,
            }),
        ]
    }
}
