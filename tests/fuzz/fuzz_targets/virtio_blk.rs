//! See vireo_vmm::fuzz::virtio_blk.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vireo_vmm::fuzz::virtio_blk(data));
