//! Guest memory and a split queue laid out from fuzzer bytes.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use crate::memory::GuestRam;

/// 64 KiB of guest RAM: descriptor table at 0, avail ring at 0x1000, used
/// ring at 0x2000, everything else data. The fuzzer's bytes are the RAM's
/// first bytes (so descriptors, ring indexes and request headers are all
/// its to choose); the rest is zero.
pub struct Guest {
    pub mem: GuestRam,
}

pub const RAM: usize = 0x10000;
pub const QSIZE: u16 = 16;

impl Guest {
    pub fn new(data: &[u8]) -> Self {
        let mem = GuestRam::from_ranges(&[(GuestAddress(0), RAM)]).expect("64 KiB of RAM");
        let n = data.len().min(RAM);
        mem.write_slice(&data[..n], GuestAddress(0))
            .expect("inside RAM");
        Self { mem }
    }

    /// A ready queue of `QSIZE` at `base` (descriptors), base+0x1000 (avail),
    /// base+0x2000 (used); `event_idx` as negotiated.
    pub fn queue(&self, base: u64, event_idx: bool) -> Queue {
        let mut q = Queue::new(QSIZE).expect("valid size");
        q.set_size(QSIZE);
        q.set_desc_table_address(Some(base as u32), Some(0));
        q.set_avail_ring_address(Some((base + 0x1000) as u32), Some(0));
        q.set_used_ring_address(Some((base + 0x2000) as u32), Some(0));
        q.set_event_idx(event_idx);
        q.set_ready(true);
        q
    }
}
