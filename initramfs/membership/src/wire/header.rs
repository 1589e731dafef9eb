//! The 13-byte header that starts every totem message, and the ring id that most
//! messages carry (include/corosync/totem/totem.h).

use std::fmt;

use crate::codec::{Put, Reader};
use crate::WireError;

pub const TOTEM_MAGIC: u16 = 0xC070;
pub const TOTEM_VERSION: u8 = 3;
pub const HEADER_LEN: usize = 13;
pub const RING_ID_LEN: usize = 12;

/// The totemsrp message types, numbered as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageType {
    OrfToken = 0,
    Mcast = 1,
    MembMergeDetect = 2,
    MembJoin = 3,
    MembCommitToken = 4,
    TokenHoldCancel = 5,
}

impl MessageType {
    pub const ALL: [MessageType; 6] = [
        MessageType::OrfToken,
        MessageType::Mcast,
        MessageType::MembMergeDetect,
        MessageType::MembJoin,
        MessageType::MembCommitToken,
        MessageType::TokenHoldCancel,
    ];
}

impl TryFrom<u8> for MessageType {
    type Error = WireError;

    fn try_from(v: u8) -> Result<Self, WireError> {
        MessageType::ALL
            .into_iter()
            .find(|t| *t as u8 == v)
            .ok_or(WireError::UnknownType(v))
    }
}

/// Header fields other than magic, version and type (which the message enum implies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Meaningful for MCAST only (1 encapsulated, 2 not); kept raw for every type so a
    /// stray value from a peer re-encodes unchanged.
    pub encapsulated: u8,
    /// Sender; 0 in a MEMB_JOIN means the sender is leaving.
    pub nodeid: u32,
    /// Used by knet only. On udpu corosync leaves whatever was in memory here, so we
    /// carry it through untouched and never interpret it.
    pub target_nodeid: u32,
}

impl Header {
    pub fn new(nodeid: u32) -> Self {
        Header {
            encapsulated: 0,
            nodeid,
            target_nodeid: 0,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<(MessageType, Header), WireError> {
        let magic = r.u16()?;
        if magic == TOTEM_MAGIC.swap_bytes() {
            return Err(WireError::ForeignEndian);
        }
        if magic != TOTEM_MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        let version = r.u8()?;
        if version != TOTEM_VERSION {
            return Err(WireError::BadVersion(version));
        }
        let msg_type = MessageType::try_from(r.u8()?)?;
        let header = Header {
            encapsulated: r.u8()?,
            nodeid: r.u32()?,
            target_nodeid: r.u32()?,
        };
        Ok((msg_type, header))
    }

    pub(crate) fn encode(&self, msg_type: MessageType, out: &mut Vec<u8>) {
        out.put_u16(TOTEM_MAGIC);
        out.put_u8(TOTEM_VERSION);
        out.put_u8(msg_type as u8);
        out.put_u8(self.encapsulated);
        out.put_u32(self.nodeid);
        out.put_u32(self.target_nodeid);
    }
}

/// A ring (membership configuration) id: the representative's nodeid and a sequence
/// number that grows by 4 per new ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RingId {
    pub rep: u32,
    pub seq: u64,
}

impl RingId {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(RingId {
            rep: r.u32()?,
            seq: r.u64()?,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.rep);
        out.put_u64(self.seq);
    }
}

/// Printed as corosync's tools print it: "rep.seq" in hex, e.g. `1.d`.
impl fmt::Display for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}.{:x}", self.rep, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<(MessageType, Header), WireError> {
        Header::decode(&mut Reader::new(bytes, "header"))
    }

    #[test]
    fn header_round_trip() {
        let h = Header {
            encapsulated: 2,
            nodeid: 7,
            target_nodeid: 0xdead_beef,
        };
        let mut out = Vec::new();
        h.encode(MessageType::Mcast, &mut out);
        assert_eq!(out.len(), HEADER_LEN);
        assert_eq!(&out[..5], &[0x70, 0xc0, 3, 1, 2]);
        assert_eq!(decode(&out), Ok((MessageType::Mcast, h)));
    }

    #[test]
    fn header_rejects_bad_magic_version_type() {
        let good = [0x70, 0xc0, 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        let mut b = good;
        b[0] = 0x71;
        assert_eq!(decode(&b), Err(WireError::BadMagic(0xc071)));
        b = good;
        b[..2].copy_from_slice(&[0xc0, 0x70]);
        assert_eq!(decode(&b), Err(WireError::ForeignEndian));
        b = good;
        b[2] = 2;
        assert_eq!(decode(&b), Err(WireError::BadVersion(2)));
        b = good;
        b[3] = 6;
        assert_eq!(decode(&b), Err(WireError::UnknownType(6)));
        assert!(matches!(
            decode(&good[..12]),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn ring_id_prints_like_corosync() {
        assert_eq!(RingId { rep: 1, seq: 0xd }.to_string(), "1.d");
    }
}
