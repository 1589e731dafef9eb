//! ORF_TOKEN: the token that circulates the ring, carrying ordering state and the
//! retransmission requests.

use super::header::{Header, MessageType, RingId};
use crate::codec::{check_count, Put, Reader};
use crate::WireError;

/// corosync's RETRANSMIT_ENTRIES_MAX: a token never carries more requests.
pub const RTR_ENTRIES_MAX: usize = 30;
pub const ORF_TOKEN_LEN: usize = 57;
pub const RTR_ITEM_LEN: usize = 16;

/// A request to retransmit message `seq` of ring `ring_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtrItem {
    pub ring_id: RingId,
    pub seq: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrfToken {
    pub header: Header,
    /// Highest sequence number assigned on the ring.
    pub seq: u32,
    /// Counts token passes; lets a receiver drop a duplicate token.
    pub token_seq: u32,
    /// All-received-up-to: 0xffffffff on a new ring's first token.
    pub aru: u32,
    pub aru_addr: u32,
    pub ring_id: RingId,
    pub backlog: u32,
    /// Flow control count.
    pub fcc: u32,
    pub retrans_flg: i32,
    pub rtr_list: Vec<RtrItem>,
}

impl OrfToken {
    pub(crate) fn decode_body(header: Header, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let seq = r.u32()?;
        let token_seq = r.u32()?;
        let aru = r.u32()?;
        let aru_addr = r.u32()?;
        let ring_id = RingId::decode(r)?;
        let backlog = r.u32()?;
        let fcc = r.u32()?;
        let retrans_flg = r.i32()?;
        let n = check_count(r.i32()?.into(), RTR_ENTRIES_MAX, "orf_token rtr_list")?;
        let rtr_list = (0..n)
            .map(|_| {
                Ok(RtrItem {
                    ring_id: RingId::decode(r)?,
                    seq: r.u32()?,
                })
            })
            .collect::<Result<_, WireError>>()?;
        Ok(OrfToken {
            header,
            seq,
            token_seq,
            aru,
            aru_addr,
            ring_id,
            backlog,
            fcc,
            retrans_flg,
            rtr_list,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(MessageType::OrfToken, out);
        out.put_u32(self.seq);
        out.put_u32(self.token_seq);
        out.put_u32(self.aru);
        out.put_u32(self.aru_addr);
        self.ring_id.encode(out);
        out.put_u32(self.backlog);
        out.put_u32(self.fcc);
        out.put_i32(self.retrans_flg);
        // The list length is bounded by RTR_ENTRIES_MAX when decoded; a longer
        // hand-built list still encodes its true count.
        out.put_i32(self.rtr_list.len() as i32);
        for item in &self.rtr_list {
            item.ring_id.encode(out);
            out.put_u32(item.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode, TotemMessage};

    fn first_token() -> OrfToken {
        OrfToken {
            header: Header::new(1),
            seq: 0,
            token_seq: 0,
            aru: u32::MAX,
            aru_addr: 1,
            ring_id: RingId { rep: 1, seq: 8 },
            backlog: 0,
            fcc: 0,
            retrans_flg: 0,
            rtr_list: vec![],
        }
    }

    #[test]
    fn layout_and_round_trip() {
        let mut t = first_token();
        t.rtr_list = vec![RtrItem {
            ring_id: RingId { rep: 1, seq: 4 },
            seq: 77,
        }];
        let bytes = encode(&TotemMessage::OrfToken(t.clone()));
        assert_eq!(bytes.len(), ORF_TOKEN_LEN + RTR_ITEM_LEN);
        assert_eq!(&bytes[21..25], &[0xff; 4]);
        assert_eq!(&bytes[53..57], &1i32.to_le_bytes());
        assert_eq!(&bytes[69..73], &77u32.to_le_bytes());
        assert_eq!(decode(&bytes), Ok(TotemMessage::OrfToken(t)));
    }

    #[test]
    fn rejects_hostile_rtr_counts() {
        let mut bytes = encode(&TotemMessage::OrfToken(first_token()));
        for bad in [-1i32, 31, i32::MAX] {
            bytes[53..57].copy_from_slice(&bad.to_le_bytes());
            assert!(matches!(
                decode(&bytes),
                Err(WireError::TooManyEntries { .. })
            ));
        }
        bytes[53..57].copy_from_slice(&2i32.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(WireError::Truncated { .. })));
    }
}
