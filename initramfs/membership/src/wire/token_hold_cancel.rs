//! TOKEN_HOLD_CANCEL: asks the representative to stop holding the token of an idle
//! ring because a node has something to send.

use super::header::{Header, MessageType, RingId};
use crate::codec::Reader;
use crate::WireError;

pub const TOKEN_HOLD_CANCEL_LEN: usize = 25;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHoldCancel {
    pub header: Header,
    pub ring_id: RingId,
}

impl TokenHoldCancel {
    pub(crate) fn decode_body(header: Header, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(TokenHoldCancel {
            header,
            ring_id: RingId::decode(r)?,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(MessageType::TokenHoldCancel, out);
        self.ring_id.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode, TotemMessage};

    #[test]
    fn layout_and_round_trip() {
        let m = TokenHoldCancel {
            header: Header::new(2),
            ring_id: RingId { rep: 1, seq: 0x14 },
        };
        let bytes = encode(&TotemMessage::TokenHoldCancel(m.clone()));
        assert_eq!(bytes.len(), TOKEN_HOLD_CANCEL_LEN);
        assert_eq!(&bytes[13..17], &1u32.to_le_bytes());
        assert_eq!(&bytes[17..25], &0x14u64.to_le_bytes());
        assert_eq!(decode(&bytes), Ok(TotemMessage::TokenHoldCancel(m)));
    }
}
