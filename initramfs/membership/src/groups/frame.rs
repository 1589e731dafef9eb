//! Frames: a small JSON header and raw bytes, both length-prefixed. The same
//! shape carries client requests and events over the group socket and the
//! group service's messages inside totem, so data never pays JSON's cost
//! (a 256 KiB store snapshot chunk stays 256 KiB).
//!
//! `[u32 LE header length][u32 LE data length][header JSON][data]`

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest header we accept: names and ids, never bulk data.
pub const HEADER_MAX: usize = 64 * 1024;
/// Largest data a message may carry: what fits one totempg message
/// (corosync's MESSAGE_SIZE_MAX, 1 MiB) with the header and envelope.
pub const DATA_MAX: usize = 1024 * 1024 - 2 * HEADER_MAX;

/// One frame, its header still JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Vec<u8>,
    pub data: Vec<u8>,
}

impl Frame {
    pub fn new<H: Serialize>(header: &H, data: Vec<u8>) -> Frame {
        // Serializing our own plain types cannot fail.
        let header = serde_json::to_vec(header).unwrap_or_default();
        Frame { header, data }
    }

    /// The header as `H`; a clear error for anything else.
    pub fn parse<H: DeserializeOwned>(&self) -> Result<H, String> {
        serde_json::from_slice(&self.header).map_err(|e| {
            let shown = String::from_utf8_lossy(&self.header[..self.header.len().min(200)]);
            format!("malformed frame header ({e}): {shown}")
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.header.len() + self.data.len());
        out.extend_from_slice(&(self.header.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.data);
        out
    }

    /// Decodes one whole frame (a totem message); extra bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Frame, String> {
        let (h, d) = lengths(bytes.get(..8).ok_or("frame shorter than its lengths")?)?;
        if bytes.len() != 8 + h + d {
            return Err(format!(
                "frame of {} bytes declares {}",
                bytes.len(),
                8 + h + d
            ));
        }
        Ok(Frame {
            header: bytes[8..8 + h].to_vec(),
            data: bytes[8 + h..].to_vec(),
        })
    }

    /// Reads one frame from a stream; Ok(None) at a clean end of stream.
    pub fn read_from(r: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut len = [0u8; 8];
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let (h, d) = lengths(&len).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut header = vec![0; h];
        r.read_exact(&mut header)?;
        let mut data = vec![0; d];
        r.read_exact(&mut data)?;
        Ok(Some(Frame { header, data }))
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.encode())
    }
}

/// The two lengths, each within its bound (checked before allocating).
fn lengths(b: &[u8]) -> Result<(usize, usize), String> {
    let h = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let d = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
    if h > HEADER_MAX {
        return Err(format!("frame header of {h} bytes (at most {HEADER_MAX})"));
    }
    if d > DATA_MAX {
        return Err(format!("frame data of {d} bytes (at most {DATA_MAX})"));
    }
    Ok((h, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let f = Frame::new(&serde_json::json!({"t": "x"}), vec![1, 2, 3]);
        let bytes = f.encode();
        assert_eq!(Frame::decode(&bytes).unwrap(), f);
        let mut cur = std::io::Cursor::new(bytes.clone());
        assert_eq!(Frame::read_from(&mut cur).unwrap(), Some(f));
        assert_eq!(Frame::read_from(&mut cur).unwrap(), None);
        assert!(Frame::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Frame::decode(&huge).unwrap_err().contains("at most"));
        assert!(Frame::read_from(&mut std::io::Cursor::new(huge)).is_err());
        assert!(Frame::decode(&[1, 2]).is_err());
    }
}
