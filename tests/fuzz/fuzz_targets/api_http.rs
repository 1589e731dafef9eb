//! See vireo_vmm::fuzz::api_http.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vireo_vmm::fuzz::api_http(data));
