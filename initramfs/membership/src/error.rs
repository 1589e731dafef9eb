//! The one decode error type shared by every wire layer, so a caller that peels a
//! datagram layer by layer handles a single error type.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("truncated {what}: {need} bytes needed at offset {offset}, {have} left")]
    Truncated {
        what: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("bad totem magic {0:#06x} (expected 0xc070)")]
    BadMagic(u16),
    #[error(
        "big-endian totem sender (magic byte-swapped): only little-endian peers are supported"
    )]
    ForeignEndian,
    #[error("bad totem version {0} (only version 3 is spoken)")]
    BadVersion(u8),
    #[error("unknown totem message type {0}")]
    UnknownType(u8),
    #[error("{what}: {count} entries, at most {max} allowed")]
    TooManyEntries {
        what: &'static str,
        count: i64,
        max: usize,
    },
    #[error("{what}: {extra} unexpected trailing bytes")]
    TrailingBytes { what: &'static str, extra: usize },
    #[error("{what}: header says {declared} bytes, message has {actual}")]
    LengthMismatch {
        what: &'static str,
        declared: i64,
        actual: usize,
    },
    #[error("{what}: invalid value {value}")]
    InvalidValue { what: &'static str, value: i64 },
    #[error("{what}: message would exceed {max} bytes")]
    TooLarge { what: &'static str, max: usize },
}
