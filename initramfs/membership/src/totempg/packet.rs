//! The totempg packet inside a (non-encapsulated) MCAST payload: an 8-byte header,
//! the length of each packed chunk, then the chunks (exec/totempg.c).

use crate::codec::{Put, Reader};
use crate::WireError;

pub const TOTEMPG_HEADER_LEN: usize = 8;

/// One MCAST's worth of application data. A chunk is a whole application message,
/// except that the first may continue a message begun in the previous packet from
/// the same sender (`continuation` != 0) and the last may be continued in the next
/// one (`fragmented` != 0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TotempgPacket {
    /// Always 0 from corosync; not checked by it, so kept raw.
    pub version: i16,
    /// Always 0 from corosync; not checked by it, so kept raw.
    pub msg_type: i16,
    /// Non-zero: the last chunk is a fragment; the value is its fragment number.
    pub fragmented: u8,
    /// Non-zero: the first chunk continues the fragment numbered so in the previous packet.
    pub continuation: u8,
    pub chunks: Vec<Vec<u8>>,
}

impl TotempgPacket {
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload, "totempg packet");
        let version = r.i16()?;
        let msg_type = r.i16()?;
        let fragmented = r.u8()?;
        let continuation = r.u8()?;
        let count = r.u16()?;
        // A fragment flag with no chunk to carry it is meaningless; corosync would
        // index msg_lens[-1] on it.
        if count == 0 && (fragmented != 0 || continuation != 0) {
            return Err(WireError::InvalidValue {
                what: "totempg fragment flags on an empty packet",
                value: 0,
            });
        }
        let lens: Vec<u16> = (0..count).map(|_| r.u16()).collect::<Result<_, _>>()?;
        // corosync drops a packet whose lengths do not add up to its size exactly.
        let declared: usize = lens.iter().map(|&l| usize::from(l)).sum();
        if declared != r.remaining() {
            return Err(WireError::LengthMismatch {
                what: "totempg packet",
                declared: declared as i64,
                actual: r.remaining(),
            });
        }
        let chunks = lens
            .iter()
            .map(|&l| r.take(l.into()).map(<[u8]>::to_vec))
            .collect::<Result<_, _>>()?;
        r.finish()?;
        Ok(TotempgPacket {
            version,
            msg_type,
            fragmented,
            continuation,
            chunks,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let data: usize = self.chunks.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(TOTEMPG_HEADER_LEN + 2 * self.chunks.len() + data);
        out.put_i16(self.version);
        out.put_i16(self.msg_type);
        out.put_u8(self.fragmented);
        out.put_u8(self.continuation);
        out.put_u16(self.chunks.len() as u16);
        for c in &self.chunks {
            out.put_u16(c.len() as u16);
        }
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_round_trip() {
        let p = TotempgPacket {
            fragmented: 1,
            chunks: vec![vec![1, 2, 3], vec![4]],
            ..Default::default()
        };
        let bytes = p.encode();
        assert_eq!(bytes, [0, 0, 0, 0, 1, 0, 2, 0, 3, 0, 1, 0, 1, 2, 3, 4]);
        assert_eq!(TotempgPacket::decode(&bytes), Ok(p));
    }

    #[test]
    fn lengths_must_add_up() {
        let bytes = [0, 0, 0, 0, 0, 0, 1, 0, 3, 0, 1, 2];
        assert!(matches!(
            TotempgPacket::decode(&bytes),
            Err(WireError::LengthMismatch { .. })
        ));
        let bytes = [0, 0, 0, 0, 0, 0, 1, 0, 3, 0, 1, 2, 3, 4];
        assert!(matches!(
            TotempgPacket::decode(&bytes),
            Err(WireError::LengthMismatch { .. })
        ));
        let bytes = [0, 0, 0, 0, 0, 0, 0xff, 0xff];
        assert!(matches!(
            TotempgPacket::decode(&bytes),
            Err(WireError::Truncated { .. })
        ));
        assert!(TotempgPacket::decode(&[0, 0, 0, 0, 1, 0, 0, 0]).is_err());
    }
}
