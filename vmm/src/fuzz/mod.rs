//! Entry points for the coverage-guided fuzz targets (`tests/fuzz/`), built
//! only with the `fuzz` feature. Each takes the fuzzer's bytes and drives
//! one of the VMM's parsers of guest- or peer-controlled input the way the
//! VMM does; any panic, hang or abort is a bug. See docs/security.md.
//!
//! The harnesses that need private items live beside them (`fuzz_harness`
//! child modules); this module re-exports them under one name each.

mod guest;
pub mod memfd;

pub use crate::api::server::fuzz_harness::http_request as api_http;
pub use crate::devices::virtio::block::fuzz_harness::requests as virtio_blk;
pub use crate::devices::virtio::block::qcow2::fuzz_harness::image as qcow2;
pub use crate::devices::virtio::fuzz_harness::registers as virtio_mmio;
pub use crate::devices::virtio::net::fuzz_harness::frames as virtio_net;
pub use crate::migration::receive::fuzz_harness::stream as migration;
pub use guest::Guest;
