//! See vireo_vmm::fuzz::migration.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vireo_vmm::fuzz::migration(data));
