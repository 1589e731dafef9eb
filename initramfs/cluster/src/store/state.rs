//! The replicated state itself and the operations on it. Pure and
//! deterministic: every replica applies the same operations in the same
//! order and so holds the same state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vireo_membership::groups::{MemberId, ViewId};

/// One key's value, the node that owns what it describes (a VM's host), and
/// the store version that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub value: String,
    pub owner: Option<u32>,
    pub version: u64,
}

/// A lock and the group member (one client of one node) holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub holder: MemberId,
    pub version: u64,
}

/// A write, as it travels through the ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Sets `key`. With `expect`, only if the key's version is that (0: the
    /// key must not exist): compare-and-set.
    Put {
        key: String,
        value: String,
        owner: Option<u32>,
        expect: Option<u64>,
    },
    Delete {
        key: String,
        expect: Option<u64>,
    },
    /// Takes the lock if it is free (or already ours).
    Lock {
        name: String,
    },
    Unlock {
        name: String,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
            Op::Lock { name } | Op::Unlock { name } => name,
        }
    }
}

/// Why a write was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum Refusal {
    #[error("{key}: version is {actual}, not {expected}")]
    VersionMismatch {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("{key}: no such key")]
    NoSuchKey { key: String },
    #[error("lock {name} is held by {holder}")]
    Held { name: String, holder: MemberId },
    #[error("lock {name} is not held by this client")]
    NotHolder { name: String },
    #[error("the view is not quorate: writes are refused")]
    NotQuorate,
    /// Sent in an earlier view, or before the state transfer finished:
    /// applied nowhere, safe to send again.
    #[error("the view changed before the write was ordered")]
    Stale,
}

/// What every replica holds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    /// The last quorate view this state was synchronised in: states of a
    /// later primary view win over any number of writes of an older one.
    pub epoch: ViewId,
    /// Writes applied, ever (also the version each write gets).
    pub version: u64,
    pub entries: BTreeMap<String, Entry>,
    pub locks: BTreeMap<String, Lock>,
}

impl State {
    /// Applies one ordered write from `from`; the new version.
    pub fn apply(&mut self, from: MemberId, op: &Op) -> Result<u64, Refusal> {
        let v = self.version + 1;
        match op {
            Op::Put {
                key,
                value,
                owner,
                expect,
            } => {
                self.check(key, *expect)?;
                let e = Entry {
                    value: value.clone(),
                    owner: *owner,
                    version: v,
                };
                self.entries.insert(key.clone(), e);
            }
            Op::Delete { key, expect } => {
                self.check(key, *expect)?;
                if self.entries.remove(key).is_none() {
                    return Err(Refusal::NoSuchKey { key: key.clone() });
                }
            }
            Op::Lock { name } => match self.locks.get(name) {
                Some(l) if l.holder != from => {
                    return Err(Refusal::Held {
                        name: name.clone(),
                        holder: l.holder,
                    })
                }
                _ => {
                    let l = Lock {
                        holder: from,
                        version: v,
                    };
                    self.locks.insert(name.clone(), l);
                }
            },
            Op::Unlock { name } => match self.locks.get(name) {
                Some(l) if l.holder == from => {
                    self.locks.remove(name);
                }
                _ => return Err(Refusal::NotHolder { name: name.clone() }),
            },
        }
        self.version = v;
        Ok(v)
    }

    fn check(&self, key: &str, expect: Option<u64>) -> Result<(), Refusal> {
        let Some(expected) = expect else {
            return Ok(());
        };
        let actual = self.entries.get(key).map_or(0, |e| e.version);
        if actual != expected {
            return Err(Refusal::VersionMismatch {
                key: key.into(),
                expected,
                actual,
            });
        }
        Ok(())
    }

    /// The view's rule for locks: a holder that is not a member of the new
    /// view (its client, daemon or node is gone) holds nothing any more.
    /// Every replica applies it at the same view, so no version is spent.
    pub fn release_absent(&mut self, members: &[MemberId]) -> Vec<(String, MemberId)> {
        let mut released = Vec::new();
        self.locks.retain(|name, l| {
            let keep = members.contains(&l.holder);
            if !keep {
                released.push((name.clone(), l.holder));
            }
            keep
        });
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(node: u32) -> MemberId {
        MemberId {
            node,
            inc: 1,
            conn: 1,
        }
    }

    fn put(key: &str, expect: Option<u64>) -> Op {
        Op::Put {
            key: key.into(),
            value: "v".into(),
            owner: Some(1),
            expect,
        }
    }

    #[test]
    fn versions_cas_and_locks() {
        let mut s = State::default();
        assert_eq!(s.apply(m(1), &put("a", Some(0))), Ok(1));
        assert!(matches!(
            s.apply(m(2), &put("a", Some(0))),
            Err(Refusal::VersionMismatch { actual: 1, .. })
        ));
        assert_eq!(s.apply(m(2), &put("a", Some(1))), Ok(2));
        assert_eq!(s.apply(m(1), &Op::Lock { name: "l".into() }), Ok(3));
        assert!(matches!(
            s.apply(m(2), &Op::Lock { name: "l".into() }),
            Err(Refusal::Held { .. })
        ));
        assert!(s.apply(m(2), &Op::Unlock { name: "l".into() }).is_err());
        assert_eq!(s.version, 3, "refused writes spend no version");
        assert_eq!(s.release_absent(&[m(2)]), vec![("l".to_string(), m(1))]);
        assert_eq!(s.apply(m(2), &Op::Lock { name: "l".into() }), Ok(4));
        assert!(s
            .apply(
                m(1),
                &Op::Delete {
                    key: "zz".into(),
                    expect: None
                }
            )
            .is_err());
    }
}
