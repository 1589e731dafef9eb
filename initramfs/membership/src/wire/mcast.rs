//! MCAST: one ordered message of the ring, carrying totempg data (or, during
//! recovery, a whole MCAST of the old ring).

use super::header::{Header, MessageType, RingId};
use crate::codec::{Put, Reader};
use crate::WireError;

/// Header `encapsulated` value: the payload is a whole MCAST of the old ring.
pub const ENCAPSULATED: u8 = 1;
/// Header `encapsulated` value: the payload is totempg data.
pub const NOT_ENCAPSULATED: u8 = 2;
/// Fixed part of an MCAST, header included.
pub const MCAST_LEN: usize = 45;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mcast {
    pub header: Header,
    pub system_from: u32,
    /// Ring-wide sequence number, the total order.
    pub seq: u32,
    /// Per-sender counter.
    pub this_seqno: i32,
    pub ring_id: RingId,
    /// Always 0 from corosync 3.
    pub node_id: u32,
    /// Always 0 from corosync 3.
    pub guarantee: i32,
    pub payload: Vec<u8>,
}

impl Mcast {
    pub fn is_encapsulated(&self) -> bool {
        self.header.encapsulated == ENCAPSULATED
    }

    /// The old-ring MCAST a recovery message carries, if this is one.
    pub fn encapsulated_mcast(&self) -> Option<Result<Mcast, WireError>> {
        if !self.is_encapsulated() {
            return None;
        }
        let inner = match super::decode(&self.payload) {
            Ok(super::TotemMessage::Mcast(m)) => Ok(m),
            Ok(other) => Err(WireError::InvalidValue {
                what: "encapsulated message type",
                value: other.message_type() as i64,
            }),
            Err(e) => Err(e),
        };
        Some(inner)
    }

    pub(crate) fn decode_body(header: Header, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Mcast {
            header,
            system_from: r.u32()?,
            seq: r.u32()?,
            this_seqno: r.i32()?,
            ring_id: RingId::decode(r)?,
            node_id: r.u32()?,
            guarantee: r.i32()?,
            payload: r.rest().to_vec(),
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(MessageType::Mcast, out);
        out.put_u32(self.system_from);
        out.put_u32(self.seq);
        out.put_i32(self.this_seqno);
        self.ring_id.encode(out);
        out.put_u32(self.node_id);
        out.put_i32(self.guarantee);
        out.extend_from_slice(&self.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode, TotemMessage};

    fn sample(encapsulated: u8, payload: Vec<u8>) -> Mcast {
        Mcast {
            header: Header {
                encapsulated,
                nodeid: 2,
                target_nodeid: 0,
            },
            system_from: 2,
            seq: 9,
            this_seqno: 4,
            ring_id: RingId { rep: 1, seq: 0x10 },
            node_id: 0,
            guarantee: 0,
            payload,
        }
    }

    #[test]
    fn layout_matches_spec_offsets() {
        let m = sample(NOT_ENCAPSULATED, vec![0xaa, 0xbb]);
        let bytes = encode(&TotemMessage::Mcast(m.clone()));
        assert_eq!(bytes.len(), MCAST_LEN + 2);
        assert_eq!(bytes[3], 1);
        assert_eq!(bytes[4], NOT_ENCAPSULATED);
        assert_eq!(&bytes[13..17], &2u32.to_le_bytes());
        assert_eq!(&bytes[17..21], &9u32.to_le_bytes());
        assert_eq!(&bytes[25..29], &1u32.to_le_bytes());
        assert_eq!(&bytes[29..37], &0x10u64.to_le_bytes());
        assert_eq!(&bytes[45..], &[0xaa, 0xbb]);
        assert_eq!(decode(&bytes), Ok(TotemMessage::Mcast(m)));
    }

    #[test]
    fn encapsulated_payload_is_a_whole_mcast() {
        let inner = sample(NOT_ENCAPSULATED, vec![1, 2, 3]);
        let outer = sample(ENCAPSULATED, encode(&TotemMessage::Mcast(inner.clone())));
        assert_eq!(outer.encapsulated_mcast(), Some(Ok(inner)));
        assert_eq!(sample(NOT_ENCAPSULATED, vec![]).encapsulated_mcast(), None);
        let garbage = sample(ENCAPSULATED, vec![0x70, 0xc0, 3]);
        assert!(matches!(garbage.encapsulated_mcast(), Some(Err(_))));
    }
}
