//! MEMB_MERGE_DETECT: the representative's periodic "this ring exists" beacon, which
//! makes a separate partition start gathering so the two can merge.

use super::header::{Header, MessageType, RingId};
use crate::codec::{Put, Reader};
use crate::WireError;

pub const MERGE_DETECT_LEN: usize = 29;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembMergeDetect {
    pub header: Header,
    pub system_from: u32,
    pub ring_id: RingId,
}

impl MembMergeDetect {
    pub(crate) fn decode_body(header: Header, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(MembMergeDetect {
            header,
            system_from: r.u32()?,
            ring_id: RingId::decode(r)?,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(MessageType::MembMergeDetect, out);
        out.put_u32(self.system_from);
        self.ring_id.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode, TotemMessage};

    #[test]
    fn layout_and_round_trip() {
        let m = MembMergeDetect {
            header: Header::new(1),
            system_from: 1,
            ring_id: RingId { rep: 1, seq: 0x14 },
        };
        let bytes = encode(&TotemMessage::MembMergeDetect(m.clone()));
        assert_eq!(bytes.len(), MERGE_DETECT_LEN);
        assert_eq!(&bytes[17..21], &1u32.to_le_bytes());
        assert_eq!(decode(&bytes), Ok(TotemMessage::MembMergeDetect(m)));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            decode(&long),
            Err(WireError::TrailingBytes {
                what: "memb_merge_detect",
                extra: 1
            })
        );
    }
}
