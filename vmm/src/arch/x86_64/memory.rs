//! Guest RAM placement and the e820 map that describes it.

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::layout::{EBDA_START, HIGH_MEMORY_START, MMIO_HOLE_END, MMIO_HOLE_START};
use crate::memory::GuestRam;

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// One e820 entry: `[start, start + size)` of the given type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub start: u64,
    pub size: u64,
    pub kind: u32,
}

/// RAM regions for `size` bytes: below the MMIO hole first, then from 4 GiB.
/// `None` if the size does not fit in the 64-bit address space.
pub fn memory_regions(size: u64) -> Option<Vec<(GuestAddress, usize)>> {
    let low = size.min(MMIO_HOLE_START);
    let mut regions = vec![(GuestAddress(0), usize::try_from(low).ok()?)];
    let high = size - low;
    if high > 0 {
        MMIO_HOLE_END.checked_add(high)?;
        regions.push((GuestAddress(MMIO_HOLE_END), usize::try_from(high).ok()?));
    }
    Some(regions)
}

/// The e820 map the guest sees for `size` bytes of RAM. The 640 KiB–1 MiB
/// window is backed by RAM in the host but announced as not usable, as on a PC.
pub fn e820_map(size: u64) -> Vec<E820Entry> {
    let low_end = size.min(MMIO_HOLE_START);
    let mut map = vec![
        E820Entry {
            start: 0,
            size: EBDA_START,
            kind: E820_RAM,
        },
        E820Entry {
            start: EBDA_START,
            size: HIGH_MEMORY_START - EBDA_START,
            kind: E820_RESERVED,
        },
        E820Entry {
            start: HIGH_MEMORY_START,
            size: low_end - HIGH_MEMORY_START,
            kind: E820_RAM,
        },
    ];
    if size > MMIO_HOLE_START {
        map.push(E820Entry {
            start: MMIO_HOLE_END,
            size: size - MMIO_HOLE_START,
            kind: E820_RAM,
        });
    }
    map
}

/// Bytes of RAM the guest has, holes excluded.
pub fn ram_size(mem: &GuestRam) -> u64 {
    mem.iter().map(|r| r.len()).sum()
}

/// End (exclusive) of the RAM below the MMIO hole.
pub fn low_memory_end(size: u64) -> u64 {
    size.min(MMIO_HOLE_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_has_one_region() {
        let r = memory_regions(64 << 20).unwrap();
        assert_eq!(r, vec![(GuestAddress(0), 64 << 20)]);
    }

    #[test]
    fn large_guest_is_split_around_the_hole() {
        let r = memory_regions(4 << 30).unwrap();
        assert_eq!(r[0], (GuestAddress(0), 3 << 30));
        assert_eq!(r[1], (GuestAddress(4 << 30), 1 << 30));
    }

    #[test]
    fn e820_counts_all_usable_ram() {
        for size in [64u64 << 20, 1 << 30, 3 << 30, 4 << 30, 10 << 30] {
            let ram: u64 = e820_map(size)
                .iter()
                .filter(|e| e.kind == E820_RAM)
                .map(|e| e.size)
                .sum();
            assert_eq!(ram, size - (HIGH_MEMORY_START - EBDA_START), "size {size}");
        }
    }

    #[test]
    fn absurd_sizes_are_refused() {
        assert!(memory_regions(u64::MAX).is_none());
    }
}
