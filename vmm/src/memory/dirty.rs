//! Dirty page tracking for live migration: KVM logs the pages the guest
//! writes (KVM_MEM_LOG_DIRTY_PAGES, on only while a migration runs), and
//! the regions' bitmaps (bitmap.rs) the pages the VMM itself writes (a virtio device
//! filling guest buffers, the used rings). A collection is the union of
//! both, each cleared as it is read.

use super::bitmap::DirtyBitmap;
use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, GuestRegionMmap, MmapRegion};

use super::pages::PageBitmap;
use super::{register, GuestRam, MemoryError};

/// Turns KVM's log on (from now on every write is recorded) and forgets
/// what the VMM's bitmaps held so far.
pub fn start(vm: &VmFd, ram: &GuestRam) -> Result<(), MemoryError> {
    register(vm, ram, true)?;
    for region in ram.iter() {
        bitmap(region).clear();
    }
    Ok(())
}

/// The pages written since `start` or the last `collect`, per region.
pub fn collect(vm: &VmFd, ram: &GuestRam) -> Result<Vec<PageBitmap>, MemoryError> {
    ram.iter()
        .enumerate()
        .map(|(slot, region)| {
            let mut bits = vm
                .get_dirty_log(slot as u32, region.len() as usize)
                .map_err(|source| MemoryError::Register {
                    slot: slot as u32,
                    source,
                })?;
            if let Some(ours) = bitmap(region).take() {
                for (word, mine) in bits.iter_mut().zip(ours) {
                    *word |= mine;
                }
            }
            Ok(bits)
        })
        .collect()
}

/// The VMM's own dirty bitmap of a region (the mapping's, not the
/// per-access slice `GuestMemoryRegion::bitmap` hands out).
fn bitmap(region: &GuestRegionMmap<DirtyBitmap>) -> &DirtyBitmap {
    let mapping: &MmapRegion<DirtyBitmap> = region;
    mapping.bitmap()
}

/// `into |= other`, region by region.
pub fn merge(into: &mut [PageBitmap], other: &[PageBitmap]) {
    for (a, b) in into.iter_mut().zip(other) {
        for (x, y) in a.iter_mut().zip(b) {
            *x |= y;
        }
    }
}

/// Pages set in `bitmaps`.
pub fn count(bitmaps: &[PageBitmap]) -> u64 {
    bitmaps
        .iter()
        .flatten()
        .map(|w| u64::from(w.count_ones()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_count() {
        let mut a = vec![vec![0b1010u64, 0], vec![1]];
        merge(&mut a, &[vec![0b0110, 1 << 63], vec![0]]);
        assert_eq!(a, [vec![0b1110, 1 << 63], vec![1]]);
        assert_eq!(count(&a), 5);
    }
}
