//! Test support: the shared corosync capture, read with a tiny classic-pcap reader
//! (Ethernet, IPv4, UDP) so the tests need no capture library.

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;

pub const TOTEM_PORT: u16 = 5405;

#[derive(Debug, Clone)]
pub struct Datagram {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

/// The capture lives beside the repository, in shared/ (CI clones the repo with
/// shared/ next to it): <repo>/../shared/data/corosync/udpu-3node.pcap.gz.
pub fn capture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/corosync/udpu-3node.pcap.gz")
}

/// Every UDP datagram to or from the totem port, in capture order. Panics (fails
/// the test) when the capture is missing: a silently skipped codec test is worse
/// than a red one.
pub fn totem_datagrams() -> Vec<Datagram> {
    let path = capture_path();
    let file = std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!(
            "corosync capture not found at {} ({e}); the tests expect shared/ beside the repository",
            path.display()
        )
    });
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut raw)
        .expect("capture is not valid gzip");
    let udp: Vec<Datagram> = pcap_frames(&raw)
        .into_iter()
        .filter_map(|f| udp_in_ethernet(&f))
        .filter(|d| d.src_port == TOTEM_PORT || d.dst_port == TOTEM_PORT)
        .collect();
    assert!(!udp.is_empty(), "capture holds no datagrams on port 5405");
    udp
}

fn le_or_be(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

/// Classic pcap: 24-byte global header, then 16-byte record headers + frames.
fn pcap_frames(raw: &[u8]) -> Vec<Vec<u8>> {
    assert!(raw.len() >= 24, "capture shorter than a pcap header");
    let big = match u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) {
        0xa1b2_c3d4 | 0xa1b2_3c4d => false,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => true,
        m => panic!("not a classic pcap file (magic {m:#x})"),
    };
    assert_eq!(
        le_or_be(&raw[20..24], big),
        1,
        "capture link type is not Ethernet"
    );
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= raw.len() {
        let incl = le_or_be(&raw[off + 8..off + 12], big) as usize;
        let orig = le_or_be(&raw[off + 12..off + 16], big) as usize;
        off += 16;
        assert!(off + incl <= raw.len(), "capture ends inside a frame");
        assert_eq!(
            incl, orig,
            "capture has a frame cut short by its snap length"
        );
        frames.push(raw[off..off + incl].to_vec());
        off += incl;
    }
    frames
}

fn udp_in_ethernet(frame: &[u8]) -> Option<Datagram> {
    if frame.len() < 14 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    assert_eq!(frag & 0x3fff, 0, "IP-fragmented datagram in capture");
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let udp = &ip[usize::from(ip[0] & 0xf) * 4..total.min(ip.len())];
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    Some(Datagram {
        src: [ip[12], ip[13], ip[14], ip[15]],
        dst: [ip[16], ip[17], ip[18], ip[19]],
        src_port: u16::from_be_bytes([udp[0], udp[1]]),
        dst_port: u16::from_be_bytes([udp[2], udp[3]]),
        payload: udp[8..len].to_vec(),
    })
}

/// xorshift64*: a small deterministic generator for the hostile-input tests.
pub struct Prng(pub u64);

impl Prng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
