//! The agent's JSON bodies (vireo_agent::types, shared with the CLI):
//! any bytes decode to a value or an error, and a value survives a round
//! trip through its own JSON.
#![no_main]

use serde::de::DeserializeOwned;
use serde::Serialize;
use vireo_agent::types::{ErrorBody, Health, NodeInfo, VmmSelftest};

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let bytes = serde_json::to_vec(&v).expect("encodes");
        assert_eq!(serde_json::from_slice::<T>(&bytes).expect("decodes"), v);
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    round_trip::<NodeInfo>(data);
    round_trip::<Health>(data);
    round_trip::<ErrorBody>(data);
    round_trip::<VmmSelftest>(data);
});
