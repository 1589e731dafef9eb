//! See vireo_vmm::fuzz::qcow2.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vireo_vmm::fuzz::qcow2(data));
