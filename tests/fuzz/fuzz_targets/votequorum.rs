//! Service messages (votequorum NODEINFO/RECONFIGURE behind the libqb
//! header), application messages and the sync protocol's: decode, and
//! re-encode to the same value.
#![no_main]

use vireo_membership::service::{AppMessage, ServiceMessage};
use vireo_membership::sync::SyncMessage;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ServiceMessage::decode(data) {
        assert_eq!(ServiceMessage::decode(&m.encode()).expect("round trip"), m);
    }
    if let Ok(m) = AppMessage::decode(data) {
        assert_eq!(AppMessage::decode(&m.encode()).expect("round trip"), m);
    }
    if let Ok(m) = SyncMessage::decode(data) {
        assert_eq!(SyncMessage::decode(&m.encode()).expect("round trip"), m);
    }
});
