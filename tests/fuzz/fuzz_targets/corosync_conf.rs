//! corosync.conf: any text parses to a configuration or a located error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = vireo_membership::config::parse(&text);
});
