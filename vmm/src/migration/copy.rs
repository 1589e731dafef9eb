//! Disks in a migration: with `"disks": "copy"` their contents go too —
//! every block first, then the blocks the guest wrote meanwhile, then the
//! last ones at the switch-over, so the destination's image ends up
//! holding exactly what the guest sees (`qemu-img compare`). With shared
//! storage nothing is copied: the source flushes, gives up its image locks
//! and the destination opens the same files.

use std::sync::Arc;

use super::context::PassMeter;
use super::protocol::{self, Kind, PageData};
use super::send::{SendFail, Source};
use super::transport::Channel;
use crate::backends::OpenDisk;
use crate::devices::bus::lock;
use crate::devices::virtio::block::tracked::{DirtyBlocks, BLOCK};
use crate::devices::virtio::block::SharedBackend;

/// A disk as the migration thread sees it.
pub struct SourceDisk {
    backend: SharedBackend,
    dirty: Arc<DirtyBlocks>,
    readonly: bool,
    size: u64,
}

impl SourceDisk {
    pub fn of(disk: &OpenDisk) -> Self {
        let size = lock(&disk.backend).size();
        Self {
            backend: disk.backend.clone(),
            dirty: disk.dirty.clone(),
            readonly: disk.readonly,
            size,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn start_tracking(&self) {
        self.dirty.start();
    }

    pub fn stop_tracking(&self) {
        self.dirty.stop();
    }

    /// Bytes written since the last pass (not cleared).
    pub fn dirty_bytes(&self) -> u64 {
        self.dirty.count() * BLOCK
    }

    /// Every block of the disk, as a bitmap.
    pub fn all_blocks(&self) -> Vec<u64> {
        let blocks = self.dirty.block_count();
        let mut bits = vec![u64::MAX; blocks.div_ceil(64) as usize];
        if !blocks.is_multiple_of(64) {
            if let Some(last) = bits.last_mut() {
                *last = (1u64 << (blocks % 64)) - 1;
            }
        }
        bits
    }

    pub fn take_dirty(&self) -> Vec<u64> {
        self.dirty.take()
    }

    /// Gives up this process's lock on the image (shared storage: the
    /// destination takes it).
    pub fn unlock(&self) -> std::io::Result<()> {
        if self.readonly {
            return Ok(());
        }
        lock(&self.backend).set_locked(false)
    }

    /// Takes the lock back after a failed migration; fails if the
    /// destination still holds it (then the VM must not resume here).
    pub fn relock(&self) -> std::io::Result<()> {
        lock(&self.backend).set_locked(true)
    }
}

/// Sends the blocks set in `bits` of disk `n`, batched about 1 MiB to a frame.
pub(super) fn send_blocks(
    src: &Source,
    ch: &mut dyn Channel,
    n: u8,
    disk: &SourceDisk,
    bits: &[u64],
    meter: &mut PassMeter,
) -> Result<(), SendFail> {
    let mut batch = Vec::with_capacity(17 * (BLOCK as usize + 14));
    let mut buf = vec![0u8; BLOCK as usize];
    for (w, &word) in bits.iter().enumerate() {
        let mut rest = word;
        while rest != 0 {
            let b = w as u64 * 64 + u64::from(rest.trailing_zeros());
            rest &= rest - 1;
            let offset = b * BLOCK;
            let len = BLOCK.min(disk.size - offset) as usize;
            lock(&disk.backend)
                .read_at(&mut buf[..len], offset)
                .map_err(|e| SendFail::Before(format!("reading disk {n}: {e}")))?;
            let data = if buf[..len].iter().all(|&x| x == 0) {
                PageData::Zero
            } else {
                PageData::Data(&buf[..len])
            };
            protocol::push_block(&mut batch, n, offset, data, len as u32);
            if batch.len() >= 1 << 20 {
                src.flush_batch(ch, Kind::Disk, &mut batch, meter, false)?;
            }
        }
    }
    src.flush_batch(ch, Kind::Disk, &mut batch, meter, false)
}
