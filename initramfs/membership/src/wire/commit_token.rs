//! MEMB_COMMIT_TOKEN: circulates once consensus on a new membership is reached; each
//! member fills in its entry (old ring, aru, what it delivered) on the way round.

use super::header::{Header, MessageType, RingId};
use super::memb_join::{read_nodeids, PROCESSOR_COUNT_MAX};
use crate::codec::{check_count, Put, Reader};
use crate::WireError;

pub const COMMIT_TOKEN_LEN: usize = 41;
/// Bytes per member: a 4-byte address plus a 24-byte [`MembEntry`].
pub const COMMIT_TOKEN_MEMBER_LEN: usize = 28;

/// One member's report of its old ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MembEntry {
    pub ring_id: RingId,
    pub aru: u32,
    pub high_delivered: u32,
    pub received_flg: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembCommitToken {
    pub header: Header,
    pub token_seq: u32,
    /// The new ring: rep is the lowest nodeid.
    pub ring_id: RingId,
    pub retrans_flg: u32,
    /// Index of the member the token was last sent to.
    pub memb_index: i32,
    /// Members, sorted by nodeid, each with its entry (same index).
    pub members: Vec<(u32, MembEntry)>,
}

impl MembCommitToken {
    pub(crate) fn decode_body(header: Header, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let token_seq = r.u32()?;
        let ring_id = RingId::decode(r)?;
        let retrans_flg = r.u32()?;
        let memb_index = r.i32()?;
        let n = check_count(
            r.i32()?.into(),
            PROCESSOR_COUNT_MAX,
            "memb_commit_token addr",
        )?;
        // Wire order is all addresses, then all entries.
        let addrs = read_nodeids(r, n)?;
        let members = addrs
            .into_iter()
            .map(|a| Ok((a, decode_entry(r)?)))
            .collect::<Result<_, WireError>>()?;
        Ok(MembCommitToken {
            header,
            token_seq,
            ring_id,
            retrans_flg,
            memb_index,
            members,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(MessageType::MembCommitToken, out);
        out.put_u32(self.token_seq);
        self.ring_id.encode(out);
        out.put_u32(self.retrans_flg);
        out.put_i32(self.memb_index);
        out.put_i32(self.members.len() as i32);
        for (addr, _) in &self.members {
            out.put_u32(*addr);
        }
        for (_, e) in &self.members {
            e.ring_id.encode(out);
            out.put_u32(e.aru);
            out.put_u32(e.high_delivered);
            out.put_u32(e.received_flg);
        }
    }
}

fn decode_entry(r: &mut Reader<'_>) -> Result<MembEntry, WireError> {
    Ok(MembEntry {
        ring_id: RingId::decode(r)?,
        aru: r.u32()?,
        high_delivered: r.u32()?,
        received_flg: r.u32()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode, TotemMessage};

    #[test]
    fn three_members_are_125_bytes() {
        let old = RingId { rep: 1, seq: 4 };
        let entry = |aru| MembEntry {
            ring_id: old,
            aru,
            high_delivered: aru,
            received_flg: 1,
        };
        let c = MembCommitToken {
            header: Header::new(1),
            token_seq: 0,
            ring_id: RingId { rep: 1, seq: 8 },
            retrans_flg: 0,
            memb_index: 1,
            members: vec![(1, entry(5)), (2, entry(6)), (3, MembEntry::default())],
        };
        let bytes = encode(&TotemMessage::MembCommitToken(c.clone()));
        assert_eq!(bytes.len(), 125);
        assert_eq!(&bytes[37..41], &3i32.to_le_bytes());
        assert_eq!(&bytes[41..53], &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
        // The second entry's aru sits after the addresses and one 24-byte entry.
        assert_eq!(&bytes[53 + 24 + 12..53 + 24 + 16], &6u32.to_le_bytes());
        assert_eq!(decode(&bytes), Ok(TotemMessage::MembCommitToken(c)));
    }

    #[test]
    fn rejects_negative_count() {
        let c = MembCommitToken {
            header: Header::new(1),
            token_seq: 0,
            ring_id: RingId::default(),
            retrans_flg: 0,
            memb_index: 0,
            members: vec![],
        };
        let mut bytes = encode(&TotemMessage::MembCommitToken(c));
        bytes[37..41].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(matches!(
            decode(&bytes),
            Err(WireError::TooManyEntries { .. })
        ));
    }
}
