//! totempg packets inside an MCAST and the group messages inside them:
//! decode, and re-encode to the same value.
#![no_main]

use vireo_membership::totempg::{GroupMessage, TotempgPacket};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(p) = TotempgPacket::decode(data) {
        assert_eq!(TotempgPacket::decode(&p.encode()).expect("round trip"), p);
    }
    if let Ok(g) = GroupMessage::decode(data) {
        assert_eq!(GroupMessage::decode(&g.encode()).expect("round trip"), g);
    }
});
