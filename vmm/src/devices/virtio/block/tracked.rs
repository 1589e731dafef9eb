//! Which parts of a disk changed, for a migration that copies the disk:
//! every write, write-zeroes and discard marks its 64 KiB blocks while
//! tracking is on. Off (always, but during a migration) it costs one
//! atomic load per request.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::disk::DiskBackend;

/// Tracking granularity.
pub const BLOCK: u64 = 64 << 10;

pub struct DirtyBlocks {
    on: AtomicBool,
    bits: Mutex<Vec<u64>>,
    blocks: u64,
}

impl DirtyBlocks {
    pub fn new(disk_size: u64) -> Self {
        let blocks = disk_size.div_ceil(BLOCK);
        Self {
            on: AtomicBool::new(false),
            bits: Mutex::new(vec![0; blocks.div_ceil(64) as usize]),
            blocks,
        }
    }

    fn bits(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.bits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking with nothing marked.
    pub fn start(&self) {
        self.bits().fill(0);
        self.on.store(true, Ordering::SeqCst);
    }

    pub fn stop(&self) {
        self.on.store(false, Ordering::SeqCst);
    }

    /// The blocks marked since the last call, now cleared.
    pub fn take(&self) -> Vec<u64> {
        let mut bits = self.bits();
        let taken = bits.clone();
        bits.fill(0);
        taken
    }

    pub fn block_count(&self) -> u64 {
        self.blocks
    }

    /// Blocks marked now.
    pub fn count(&self) -> u64 {
        self.bits().iter().map(|w| u64::from(w.count_ones())).sum()
    }

    fn mark(&self, offset: u64, len: u64) {
        if !self.on.load(Ordering::SeqCst) || len == 0 {
            return;
        }
        let mut bits = self.bits();
        let last = ((offset + len - 1) / BLOCK).min(self.blocks.saturating_sub(1));
        for b in offset / BLOCK..=last {
            bits[(b / 64) as usize] |= 1 << (b % 64);
        }
    }
}

/// A disk backend that reports its writes to a `DirtyBlocks`.
pub struct Tracked {
    inner: Box<dyn DiskBackend>,
    dirty: Arc<DirtyBlocks>,
}

impl Tracked {
    pub fn new(inner: Box<dyn DiskBackend>) -> (Self, Arc<DirtyBlocks>) {
        let dirty = Arc::new(DirtyBlocks::new(inner.size()));
        (
            Self {
                inner,
                dirty: dirty.clone(),
            },
            dirty,
        )
    }
}

impl Tracked {
    /// `inner` reporting to an existing tracker: a disk switched onto an
    /// overlay keeps the tracker a migration may be reading.
    pub fn with_dirty(inner: Box<dyn DiskBackend>, dirty: Arc<DirtyBlocks>) -> Self {
        Self { inner, dirty }
    }
}

impl DiskBackend for Tracked {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        // Marked first: a migration reading the block after this write
        // must see it dirty, whatever it read before.
        self.dirty.mark(offset, buf.len() as u64);
        self.inner.write_at(buf, offset)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        self.dirty.mark(offset, len);
        self.inner.write_zeroes(offset, len, unmap)
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.dirty.mark(offset, len);
        self.inner.discard(offset, len)
    }

    fn discard_granularity(&self) -> u64 {
        self.inner.discard_granularity()
    }

    fn set_locked(&mut self, locked: bool) -> io::Result<()> {
        self.inner.set_locked(locked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_mark_their_blocks_only_while_tracking() {
        let d = DirtyBlocks::new(1 << 20);
        d.mark(0, 4096);
        assert!(d.take().iter().all(|w| *w == 0), "marked while off");
        d.start();
        d.mark(BLOCK - 1, 2);
        d.mark(10 * BLOCK, 3 * BLOCK);
        assert_eq!(d.take()[0], 0b11 | 0b111 << 10);
        assert!(d.take().iter().all(|w| *w == 0), "take clears");
        // Past the end is clipped, not a panic.
        d.mark((1 << 20) - 1, 1 << 20);
        assert_eq!(d.take()[0], 1 << 15);
    }
}
