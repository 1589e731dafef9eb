//! Reassembly of application messages from one sender's totempg packets, delivered
//! in ring order.
//!
//! Deliberate difference from corosync: after a gap (a continuation that does not
//! match, e.g. the first packets seen after joining a ring mid-message), corosync
//! enters a "throw away" mode that also drops the complete messages packed after
//! the orphaned piece. We drop only the pieces that cannot be completed.

use super::TotempgPacket;

/// corosync's MESSAGE_SIZE_MAX: a reassembled message never grows past this.
pub const MESSAGE_SIZE_MAX: usize = 1024 * 1024;

/// What one packet yielded.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Assembled {
    /// Complete application messages, in order.
    pub messages: Vec<Vec<u8>>,
    /// Pieces thrown away because their other pieces were missing or too large.
    pub discarded: usize,
}

/// Per-sender reassembly state; one per nodeid.
#[derive(Debug, Default)]
pub struct Reassembler {
    /// The message begun in an earlier packet, and the fragment number it ended on.
    partial: Option<(Vec<u8>, u8)>,
}

impl Reassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a fragmented message is waiting for its next piece.
    pub fn has_partial(&self) -> bool {
        self.partial.is_some()
    }

    /// Bytes of the message waiting for its next piece (at most
    /// MESSAGE_SIZE_MAX plus one packet).
    pub fn held_bytes(&self) -> usize {
        self.partial.as_ref().map_or(0, |(data, _)| data.len())
    }

    /// Feeds the next packet from this sender, in ring (seq) order.
    pub fn feed(&mut self, packet: &TotempgPacket) -> Assembled {
        let mut out = Assembled::default();
        let carried = self.partial.take();
        let mut chunks = packet.chunks.iter();
        // Each piece is Some(bytes) when we hold the whole message so far.
        let mut pieces: Vec<Option<Vec<u8>>> = Vec::with_capacity(packet.chunks.len());
        if packet.continuation != 0 {
            let tail = chunks.next();
            pieces.push(match (carried, tail) {
                (Some((mut data, frag)), Some(tail)) if frag == packet.continuation => {
                    data.extend_from_slice(tail);
                    Some(data)
                }
                (carried, _) => {
                    out.discarded += 1 + usize::from(carried.is_some());
                    None
                }
            });
        } else if carried.is_some() {
            out.discarded += 1;
        }
        pieces.extend(chunks.map(|c| Some(c.clone())));
        if packet.fragmented != 0 {
            match pieces.pop().flatten() {
                Some(data) if data.len() <= MESSAGE_SIZE_MAX => {
                    self.partial = Some((data, packet.fragmented));
                }
                Some(_) => out.discarded += 1,
                None => {}
            }
        }
        for piece in pieces.into_iter().flatten() {
            if piece.len() <= MESSAGE_SIZE_MAX {
                out.messages.push(piece);
            } else {
                out.discarded += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(fragmented: u8, continuation: u8, chunks: &[&[u8]]) -> TotempgPacket {
        TotempgPacket {
            fragmented,
            continuation,
            chunks: chunks.iter().map(|c| c.to_vec()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn joins_fragments_across_packets() {
        let mut r = Reassembler::new();
        let a = r.feed(&packet(1, 0, &[b"whole", b"fir"]));
        assert_eq!(a.messages, vec![b"whole".to_vec()]);
        assert!(r.has_partial());
        let a = r.feed(&packet(2, 1, &[b"st-"]));
        assert!(a.messages.is_empty());
        let a = r.feed(&packet(0, 2, &[b"last", b"next"]));
        assert_eq!(a.messages, vec![b"first-last".to_vec(), b"next".to_vec()]);
        assert_eq!(a.discarded, 0);
        assert!(!r.has_partial());
    }

    #[test]
    fn orphans_are_dropped_not_delivered() {
        let mut r = Reassembler::new();
        // Joined mid-message: the tail has no head.
        let a = r.feed(&packet(0, 3, &[b"tail", b"ok"]));
        assert_eq!(a.messages, vec![b"ok".to_vec()]);
        assert_eq!(a.discarded, 1);
        // A head whose continuation never comes is dropped when a fresh packet arrives.
        r.feed(&packet(1, 0, &[b"head"]));
        let a = r.feed(&packet(0, 0, &[b"fresh"]));
        assert_eq!(a.messages, vec![b"fresh".to_vec()]);
        assert_eq!(a.discarded, 1);
        // A mismatched fragment number drops both the held head and the tail.
        r.feed(&packet(1, 0, &[b"head"]));
        let a = r.feed(&packet(0, 2, &[b"tail"]));
        assert!(a.messages.is_empty());
        assert_eq!(a.discarded, 2);
    }
}
