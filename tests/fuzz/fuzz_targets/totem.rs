//! totemsrp datagrams (wire::decode): any bytes give a message or an
//! error, and a decoded message encodes to bytes that decode to itself.
#![no_main]

use vireo_membership::wire;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = wire::decode(data) {
        let again = wire::decode(&wire::encode(&msg)).expect("re-encoded message decodes");
        assert_eq!(again, msg);
    }
});
