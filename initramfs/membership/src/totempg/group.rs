//! The group header every totempg application message starts with: the names of
//! the process groups it is addressed to. corosync uses group "a" for service
//! messages and "sync" for the synchronization protocol.

use crate::codec::{Put, Reader};
use crate::WireError;

/// corosync's MAX_GROUPS_PER_MSG.
pub const MAX_GROUPS_PER_MSG: usize = 32;
pub const GROUP_SERVICES: &[u8] = b"a";
pub const GROUP_SYNC: &[u8] = b"sync";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMessage {
    pub groups: Vec<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl GroupMessage {
    pub fn new(group: &[u8], payload: Vec<u8>) -> Self {
        GroupMessage {
            groups: vec![group.to_vec()],
            payload,
        }
    }

    /// Whether the message is addressed to `group` (among others).
    pub fn is_for(&self, group: &[u8]) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    pub fn decode(msg: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(msg, "totempg group header");
        let count = usize::from(r.u16()?);
        if count > MAX_GROUPS_PER_MSG {
            return Err(WireError::TooManyEntries {
                what: "totempg groups",
                count: count as i64,
                max: MAX_GROUPS_PER_MSG,
            });
        }
        let lens: Vec<u16> = (0..count).map(|_| r.u16()).collect::<Result<_, _>>()?;
        let groups = lens
            .iter()
            .map(|&l| r.take(l.into()).map(<[u8]>::to_vec))
            .collect::<Result<_, _>>()?;
        Ok(GroupMessage {
            groups,
            payload: r.rest().to_vec(),
        })
    }

    /// The pieces corosync hands to totempg as separate buffers: the length array,
    /// each name, then the payload. Buffer boundaries steer where totempg cuts
    /// fragments, so [`super::Packer`] takes them separately to cut identically.
    pub fn iovecs(&self) -> Vec<&[u8]> {
        let mut out: Vec<&[u8]> = self.groups.iter().map(Vec::as_slice).collect();
        out.push(&self.payload);
        out
    }

    pub fn header_lens(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 * (self.groups.len() + 1));
        out.put_u16(self.groups.len() as u16);
        for g in &self.groups {
            out.put_u16(g.len() as u16);
        }
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.header_lens();
        for piece in self.iovecs() {
            out.extend_from_slice(piece);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = GroupMessage::new(GROUP_SYNC, vec![9, 9]);
        let bytes = m.encode();
        assert_eq!(bytes, [1, 0, 4, 0, b's', b'y', b'n', b'c', 9, 9]);
        assert_eq!(GroupMessage::decode(&bytes), Ok(m.clone()));
        assert!(m.is_for(b"sync") && !m.is_for(b"a"));
    }

    #[test]
    fn hostile_headers() {
        assert!(matches!(
            GroupMessage::decode(&[33, 0]),
            Err(WireError::TooManyEntries { .. })
        ));
        assert!(matches!(
            GroupMessage::decode(&[1, 0, 5, 0, b'a']),
            Err(WireError::Truncated { .. })
        ));
    }
}
