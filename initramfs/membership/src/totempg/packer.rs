//! Packing of outgoing application messages into totempg packets, cutting them
//! exactly where corosync's totempg does (mcast_msg in exec/totempg.c), so that our
//! packets look like a real node's and a peer's fragment numbering always matches.

use super::{GroupMessage, TotempgPacket, TOTEMPG_HEADER_LEN};

/// The largest totempg packet on udpu with the default 1500-byte MTU: corosync
/// keeps room for two MCAST headers (an encapsulated retransmission) below the MTU.
pub const UDPU_MAX_PACKET_LEN: usize = 1500 - 2 * crate::wire::MCAST_LEN;

/// Collects messages until the token arrives ([`Packer::flush`]); emits a packet
/// early whenever the next piece does not fit.
#[derive(Debug)]
pub struct Packer {
    /// Room for lengths and data in one packet (corosync's TOTEMPG_PACKET_SIZE).
    room: usize,
    data: Vec<u8>,
    /// One length per packed message; the last may be the message being added.
    lens: Vec<u16>,
    /// Fragment number the next packet continues (0: starts clean).
    continuation: u8,
    /// corosync's next_fragment: 1 after any piece fits whole, counts up while a
    /// message is being cut, skips 0 when it wraps.
    next_fragment: u8,
}

impl Packer {
    /// `max_packet_len` is the largest whole totempg packet, header included.
    pub fn new(max_packet_len: usize) -> Self {
        Packer {
            // Chunk lengths are u16 on the wire, which bounds a packet's room too.
            room: max_packet_len
                .saturating_sub(TOTEMPG_HEADER_LEN)
                .min(usize::from(u16::MAX)),
            data: Vec::new(),
            lens: Vec::new(),
            continuation: 0,
            next_fragment: 1,
        }
    }

    pub fn push_group(&mut self, msg: &GroupMessage) -> Vec<TotempgPacket> {
        let lens = msg.header_lens();
        let mut iovecs = vec![lens.as_slice()];
        iovecs.extend(msg.iovecs());
        self.push(&iovecs)
    }

    /// Adds one application message given as the buffers corosync would pass
    /// (their boundaries decide where fragments are cut). Returns the packets that
    /// filled up and must be multicast now, in order.
    pub fn push(&mut self, iovecs: &[&[u8]]) -> Vec<TotempgPacket> {
        let iovecs: Vec<&[u8]> = iovecs.iter().copied().filter(|v| !v.is_empty()).collect();
        let mut out = Vec::new();
        let mut max = self.room.saturating_sub(2 * (self.lens.len() + 1));
        self.lens.push(0);
        let (mut i, mut base) = (0, 0);
        while let Some(iov) = iovecs.get(i) {
            // corosync tests the whole buffer's length even when part of it was
            // already sent, and wants two bytes to spare.
            if iov.len() + self.data.len() < max.saturating_sub(2) {
                self.append(&iov[base..]);
                self.next_fragment = 1;
                (i, base) = (i + 1, 0);
                continue;
            }
            let n = (iov.len() - base).min(max.saturating_sub(self.data.len()));
            self.append(&iov[base..base + n]);
            let more = i + 1 < iovecs.len() || base + n < iov.len();
            out.push(self.emit(more));
            max = self.room.saturating_sub(2);
            if base + n == iov.len() {
                (i, base) = (i + 1, 0);
            } else {
                base += n;
            }
        }
        if self.lens.last() == Some(&0) {
            self.lens.pop();
        }
        out
    }

    /// The packet to send when the token arrives, if anything is waiting.
    pub fn flush(&mut self) -> Option<TotempgPacket> {
        if self.lens.is_empty() {
            return None;
        }
        let packet = self.take_packet(0);
        self.lens.clear();
        self.continuation = 0;
        Some(packet)
    }

    fn append(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        if let Some(last) = self.lens.last_mut() {
            // At most `room` bytes per packet, so this never exceeds u16.
            *last += bytes.len() as u16;
        }
    }

    /// Sends what is packed; `more` says the last message continues in the next packet.
    fn emit(&mut self, more: bool) -> TotempgPacket {
        let fragmented = if more {
            if self.next_fragment == 0 {
                self.next_fragment = 1;
            }
            let f = self.next_fragment;
            self.next_fragment = self.next_fragment.wrapping_add(1);
            f
        } else {
            0
        };
        let packet = self.take_packet(fragmented);
        self.continuation = fragmented;
        // The message being added goes on as the first entry of the next packet.
        self.lens = vec![0];
        packet
    }

    fn take_packet(&mut self, fragmented: u8) -> TotempgPacket {
        let mut rest = std::mem::take(&mut self.data).into_iter();
        let chunks = self
            .lens
            .iter()
            .map(|&l| rest.by_ref().take(l.into()).collect())
            .collect();
        TotempgPacket {
            version: 0,
            msg_type: 0,
            fragmented,
            continuation: self.continuation,
            chunks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::totempg::{Reassembler, GROUP_SERVICES};

    #[test]
    fn small_messages_share_a_packet_until_flush() {
        let mut p = Packer::new(UDPU_MAX_PACKET_LEN);
        assert!(p.push(&[b"one"]).is_empty());
        assert!(p.push(&[b"two", b"2"]).is_empty());
        let packet = p.flush().unwrap();
        assert_eq!(packet.chunks, vec![b"one".to_vec(), b"two2".to_vec()]);
        assert_eq!((packet.fragmented, packet.continuation), (0, 0));
        assert!(p.flush().is_none());
    }

    #[test]
    fn large_message_is_cut_like_corosync() {
        // A 1568-byte CPG downlist: corosync sends 1395 bytes of it after its
        // 5-byte group header in a full 1410-byte packet, then the rest at once:
        // the tail of a buffer that did not fit whole never waits for the token.
        let msg = GroupMessage::new(GROUP_SERVICES, vec![7; 1568]);
        let mut p = Packer::new(UDPU_MAX_PACKET_LEN);
        let sent = p.push_group(&msg);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].encode().len(), 1410);
        assert_eq!((sent[0].fragmented, sent[0].continuation), (1, 0));
        assert_eq!((sent[1].fragmented, sent[1].continuation), (0, 1));
        assert_eq!(sent[1].chunks, vec![vec![7; 1568 + 5 - 1400]]);
        assert!(p.flush().is_none());

        let mut r = Reassembler::new();
        assert!(r.feed(&sent[0]).messages.is_empty());
        assert_eq!(r.feed(&sent[1]).messages, vec![msg.encode()]);
    }

    #[test]
    fn huge_message_counts_fragments() {
        let big = vec![1u8; 5000];
        let mut p = Packer::new(UDPU_MAX_PACKET_LEN);
        assert!(p.push(&[b"small"]).is_empty());
        let sent = p.push(&[&big]);
        let flags: Vec<_> = sent
            .iter()
            .map(|s| (s.fragmented, s.continuation))
            .collect();
        assert_eq!(flags, [(1, 0), (2, 1), (3, 2), (0, 3)]);
        // The small message rode in the first packet, leaving 2 bytes less room.
        assert_eq!(sent[0].chunks.len(), 2);
        assert_eq!(sent[0].encode().len(), UDPU_MAX_PACKET_LEN);
        let mut r = Reassembler::new();
        let got: Vec<_> = sent.iter().flat_map(|s| r.feed(s).messages).collect();
        assert_eq!(got, vec![b"small".to_vec(), big]);
        assert!(p.flush().is_none());
    }
}
