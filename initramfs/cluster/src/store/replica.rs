//! One replica's protocol on the group's ordered stream: the state transfer
//! at each view and the rule for applying writes. Pure: events in, messages
//! to send and results out, so every replica of a view, fed the same
//! stream, decides the same.
//!
//! At each view every member announces `(has_state, epoch, version)`. Once
//! all announcements are delivered, the donor is the member with the
//! greatest of them (lowest member id on a tie); if any member differs, the
//! donor sends its state and the others install it where it is delivered.
//! Sync ends there for everyone at once; only then are writes applied, and
//! only writes sent in this very view, while it is quorate.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vireo_membership::groups::{Frame, MemberId, ViewId};

use super::state::{Op, Refusal, State};

/// Bytes of state per snapshot message.
pub const CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Claim {
    pub has_state: bool,
    pub epoch: ViewId,
    pub version: u64,
}

/// What replicas send each other (a [`Frame`] header; snapshot bytes as its data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum StoreMsg {
    Hello { view: ViewId, claim: Claim },
    Snapshot { view: ViewId, part: u32, parts: u32 },
    Op { view: ViewId, id: u64, op: Op },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Multicast (without needing quorum: state transfer runs everywhere).
    Send(Vec<u8>),
    /// A write was ordered: applied (`Ok(version)`) or refused everywhere.
    Applied {
        from: MemberId,
        id: u64,
        op: Op,
        result: Result<u64, Refusal>,
    },
    /// Sync finished in the current view.
    Synced,
    /// Locks whose holders left (released at the view).
    Released(Vec<(String, MemberId)>),
}

#[derive(Debug, Clone)]
struct View {
    id: ViewId,
    members: Vec<MemberId>,
    quorate: bool,
}

#[derive(Debug, Default)]
pub struct Replica {
    pub me: Option<MemberId>,
    pub state: State,
    /// Holds a state from an earlier sync or from disk.
    pub has_state: bool,
    view: Option<View>,
    /// Synchronised in the current view.
    pub synced: bool,
    /// Synchronised at least once since this connection joined.
    pub ready: bool,
    /// No non-quorate transitional configuration since the last sync.
    primary_ok: bool,
    hellos: BTreeMap<MemberId, Claim>,
    donor: Option<(MemberId, Claim)>,
    parts: Vec<u8>,
}

impl Replica {
    pub fn new(state: Option<State>) -> Replica {
        Replica {
            has_state: state.is_some(),
            state: state.unwrap_or_default(),
            ..Replica::default()
        }
    }

    /// A new connection to the daemon (first, or after it restarted).
    pub fn connected(&mut self, me: MemberId) {
        self.me = Some(me);
        self.view = None;
        self.synced = false;
        self.ready = false;
    }

    pub fn quorate(&self) -> bool {
        self.view.as_ref().is_some_and(|v| v.quorate) && self.primary_ok
    }

    pub fn view(&self) -> Option<ViewId> {
        self.view.as_ref().map(|v| v.id)
    }

    pub fn members(&self) -> Vec<MemberId> {
        self.view
            .as_ref()
            .map(|v| v.members.clone())
            .unwrap_or_default()
    }

    pub fn claim(&self) -> Claim {
        Claim {
            has_state: self.has_state,
            epoch: self.state.epoch,
            version: self.state.version,
        }
    }

    pub fn on_view(&mut self, id: ViewId, members: Vec<MemberId>, quorate: bool) -> Vec<Out> {
        let mut out = Vec::new();
        let released = self.state.release_absent(&members);
        if !released.is_empty() {
            out.push(Out::Released(released));
        }
        self.view = Some(View {
            id,
            members,
            quorate,
        });
        self.synced = false;
        self.hellos.clear();
        self.donor = None;
        self.parts.clear();
        let hello = StoreMsg::Hello {
            view: id,
            claim: self.claim(),
        };
        out.push(Out::Send(Frame::new(&hello, Vec::new()).encode()));
        out
    }

    pub fn on_transitional(&mut self, quorate: bool) {
        if !quorate {
            self.primary_ok = false;
        }
    }

    pub fn on_message(&mut self, from: MemberId, bytes: &[u8]) -> Vec<Out> {
        let Ok(frame) = Frame::decode(bytes) else {
            return Vec::new();
        };
        let Ok(msg) = frame.parse::<StoreMsg>() else {
            return Vec::new();
        };
        let Some(view) = self.view.clone() else {
            return Vec::new();
        };
        match msg {
            StoreMsg::Hello { view: v, claim } if v == view.id => {
                if view.members.contains(&from) {
                    self.hellos.insert(from, claim);
                }
                if self.hellos.len() == view.members.len() && self.donor.is_none() {
                    return self.decide();
                }
                Vec::new()
            }
            StoreMsg::Snapshot {
                view: v,
                part,
                parts,
            } if v == view.id => self.snapshot_part(from, part, parts, &frame.data),
            StoreMsg::Op { view: v, id, op } => vec![self.write(from, v, id, op)],
            _ => Vec::new(),
        }
    }

    /// All announcements are in: pick the donor; transfer if needed.
    fn decide(&mut self) -> Vec<Out> {
        let best = self
            .hellos
            .iter()
            .max_by_key(|(m, c)| (**c, Reverse(**m)))
            .map(|(m, c)| (*m, *c));
        let Some((donor, claim)) = best else {
            return Vec::new();
        };
        self.donor = Some((donor, claim));
        if self.hellos.values().all(|c| *c == claim) {
            return self.complete();
        }
        if Some(donor) != self.me {
            return Vec::new();
        }
        let view = self.view.as_ref().map(|v| v.id).unwrap_or_default();
        let bytes = serde_json::to_vec(&self.state).unwrap_or_default();
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
        let parts = chunks.len().max(1) as u32;
        (0..parts as usize)
            .map(|i| {
                let msg = StoreMsg::Snapshot {
                    view,
                    part: i as u32,
                    parts,
                };
                let data = chunks.get(i).map(|c| c.to_vec()).unwrap_or_default();
                Out::Send(Frame::new(&msg, data).encode())
            })
            .collect()
    }

    fn snapshot_part(&mut self, from: MemberId, part: u32, parts: u32, data: &[u8]) -> Vec<Out> {
        let Some((donor, claim)) = self.donor else {
            return Vec::new();
        };
        if from != donor {
            return Vec::new();
        }
        self.parts.extend_from_slice(data);
        if part + 1 < parts {
            return Vec::new();
        }
        if self.claim() != claim {
            match serde_json::from_slice::<State>(&self.parts) {
                Ok(s) => self.state = s,
                // Cannot happen between replicas of one build; a replica
                // that cannot read the state must not pretend it has it.
                Err(_) => return Vec::new(),
            }
        }
        self.parts.clear();
        self.complete()
    }

    fn complete(&mut self) -> Vec<Out> {
        let Some(view) = &self.view else {
            return Vec::new();
        };
        self.synced = true;
        self.ready = true;
        self.has_state = true;
        self.primary_ok = view.quorate;
        if view.quorate {
            self.state.epoch = view.id;
        }
        vec![Out::Synced]
    }

    /// The rule for writes: sent in this view, after its sync, while it is
    /// quorate and no partition has cut it since.
    fn write(&mut self, from: MemberId, sent_in: ViewId, id: u64, op: Op) -> Out {
        let current = self.view.as_ref().map(|v| v.id);
        let result = if current != Some(sent_in) || !self.synced {
            Err(Refusal::Stale)
        } else if !self.quorate() {
            Err(Refusal::NotQuorate)
        } else {
            self.state.apply(from, &op)
        };
        Out::Applied {
            from,
            id,
            op,
            result,
        }
    }

    /// The message for a write of ours in the current view.
    pub fn op_message(&self, id: u64, op: Op) -> Option<Vec<u8>> {
        let view = self.view.as_ref()?.id;
        Some(Frame::new(&StoreMsg::Op { view, id, op }, Vec::new()).encode())
    }
}
