//! totemsrp messages: what one udpu datagram on port 5405 carries (exec/totemsrp.c).
//! udpu adds no transport header, so a datagram is exactly one totem message.

mod commit_token;
mod header;
mod mcast;
mod memb_join;
mod merge_detect;
mod orf_token;
mod token_hold_cancel;

pub use commit_token::{MembCommitToken, MembEntry, COMMIT_TOKEN_LEN, COMMIT_TOKEN_MEMBER_LEN};
pub use header::{
    Header, MessageType, RingId, HEADER_LEN, RING_ID_LEN, TOTEM_MAGIC, TOTEM_VERSION,
};
pub use mcast::{Mcast, ENCAPSULATED, MCAST_LEN, NOT_ENCAPSULATED};
pub use memb_join::{MembJoin, MEMB_JOIN_LEN, PROCESSOR_COUNT_MAX};
pub use merge_detect::{MembMergeDetect, MERGE_DETECT_LEN};
pub use orf_token::{OrfToken, RtrItem, ORF_TOKEN_LEN, RTR_ENTRIES_MAX, RTR_ITEM_LEN};
pub use token_hold_cancel::{TokenHoldCancel, TOKEN_HOLD_CANCEL_LEN};

use crate::codec::Reader;
pub use crate::WireError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TotemMessage {
    OrfToken(OrfToken),
    Mcast(Mcast),
    MembMergeDetect(MembMergeDetect),
    MembJoin(MembJoin),
    MembCommitToken(MembCommitToken),
    TokenHoldCancel(TokenHoldCancel),
}

impl TotemMessage {
    pub fn message_type(&self) -> MessageType {
        match self {
            TotemMessage::OrfToken(_) => MessageType::OrfToken,
            TotemMessage::Mcast(_) => MessageType::Mcast,
            TotemMessage::MembMergeDetect(_) => MessageType::MembMergeDetect,
            TotemMessage::MembJoin(_) => MessageType::MembJoin,
            TotemMessage::MembCommitToken(_) => MessageType::MembCommitToken,
            TotemMessage::TokenHoldCancel(_) => MessageType::TokenHoldCancel,
        }
    }

    pub fn header(&self) -> &Header {
        match self {
            TotemMessage::OrfToken(m) => &m.header,
            TotemMessage::Mcast(m) => &m.header,
            TotemMessage::MembMergeDetect(m) => &m.header,
            TotemMessage::MembJoin(m) => &m.header,
            TotemMessage::MembCommitToken(m) => &m.header,
            TotemMessage::TokenHoldCancel(m) => &m.header,
        }
    }
}

/// Decodes one datagram. Fixed-layout messages must fill it exactly; an MCAST's
/// payload is everything after its 45-byte fixed part.
pub fn decode(datagram: &[u8]) -> Result<TotemMessage, WireError> {
    let what = "totem header";
    let mut r = Reader::new(datagram, what);
    let (msg_type, header) = header::Header::decode(&mut r)?;
    let body = r.rest();
    let mut r = Reader::new(body, type_name(msg_type));
    let msg = match msg_type {
        MessageType::OrfToken => TotemMessage::OrfToken(OrfToken::decode_body(header, &mut r)?),
        MessageType::Mcast => TotemMessage::Mcast(Mcast::decode_body(header, &mut r)?),
        MessageType::MembMergeDetect => {
            TotemMessage::MembMergeDetect(MembMergeDetect::decode_body(header, &mut r)?)
        }
        MessageType::MembJoin => TotemMessage::MembJoin(MembJoin::decode_body(header, &mut r)?),
        MessageType::MembCommitToken => {
            TotemMessage::MembCommitToken(MembCommitToken::decode_body(header, &mut r)?)
        }
        MessageType::TokenHoldCancel => {
            TotemMessage::TokenHoldCancel(TokenHoldCancel::decode_body(header, &mut r)?)
        }
    };
    r.finish()?;
    Ok(msg)
}

pub fn encode(msg: &TotemMessage) -> Vec<u8> {
    let mut out = Vec::new();
    match msg {
        TotemMessage::OrfToken(m) => m.encode(&mut out),
        TotemMessage::Mcast(m) => m.encode(&mut out),
        TotemMessage::MembMergeDetect(m) => m.encode(&mut out),
        TotemMessage::MembJoin(m) => m.encode(&mut out),
        TotemMessage::MembCommitToken(m) => m.encode(&mut out),
        TotemMessage::TokenHoldCancel(m) => m.encode(&mut out),
    }
    out
}

/// corosync's name for each structure, used in error messages.
pub fn type_name(t: MessageType) -> &'static str {
    match t {
        MessageType::OrfToken => "orf_token",
        MessageType::Mcast => "mcast",
        MessageType::MembMergeDetect => "memb_merge_detect",
        MessageType::MembJoin => "memb_join",
        MessageType::MembCommitToken => "memb_commit_token",
        MessageType::TokenHoldCancel => "token_hold_cancel",
    }
}
