//! Guest RAM mappings aligned to 2 MiB, as QEMU's are.
//!
//! KVM maps guest memory with 2 MiB pages in its nested page tables only
//! where the host address and the guest address agree modulo 2 MiB
//! (`kvm_mmu_hugepage_adjust`; a memory slot whose two bases disagree gets
//! no large page at all). A plain `mmap` is only page aligned, so every 4 KiB
//! the guest touched cost a nested page fault: measured in the rig, 11,200
//! NPF exits for a minimal Linux boot against QEMU microvm's 2,300. So each
//! region is carved from a mapping 2 MiB larger than it, at its first 2 MiB
//! boundary.
//!
//! Not MADV_HUGEPAGE (QEMU sets it): with the kernel's default THP defrag
//! mode ("madvise") it lets a page fault stall in direct compaction, and in
//! the rig loading the kernel then took up to 2.4 s instead of 0.15 s, and
//! the guest's first exit came up to 2.3 s late. The host's THP policy
//! decides: with "always" the aligned regions get huge pages where they are
//! free, with "never" or "madvise" 4 KiB pages.
//!
//! vm-memory only unmaps mappings it made itself; these it takes as raw
//! pointers. So the mappings are kept here, each with a weak reference to
//! its `MmapRegion`: every user of guest memory (vCPUs, device workers)
//! holds the region's `Arc`, and a mapping is unmapped only once nothing
//! can reach it any more, at the next allocation (an API reboot's) or at
//! process exit.

use std::io;
use std::sync::{Arc, Mutex, Weak};

use vm_memory::bitmap::NewBitmap;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::MmapRegion;

use super::bitmap::DirtyBitmap;

/// A region of guest RAM with its dirty-page bitmap.
pub type RamRegion = MmapRegion<DirtyBitmap>;

/// KVM's large page size on x86_64 (and the PMD size on aarch64 with 4K pages).
pub const ALIGNMENT: usize = 2 << 20;

struct Mapping {
    addr: usize,
    len: usize,
    region: Weak<RamRegion>,
}

static MAPPINGS: Mutex<Vec<Mapping>> = Mutex::new(Vec::new());

fn mappings() -> std::sync::MutexGuard<'static, Vec<Mapping>> {
    MAPPINGS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Unmaps the mappings no region refers to any more.
fn reap() {
    mappings().retain(|m| {
        if m.region.strong_count() > 0 {
            return true;
        }
        // SAFETY: [addr, addr + len) is a mapping this module made, and no
        // MmapRegion (hence no guest memory handle) points into it.
        unsafe { libc::munmap(m.addr as *mut libc::c_void, m.len) };
        false
    });
}

/// Maps `len` bytes of anonymous memory at a 2 MiB-aligned address.
fn map_aligned(len: usize) -> io::Result<usize> {
    let padded = len
        .checked_add(ALIGNMENT)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: a fresh anonymous mapping at an address the kernel picks.
    let raw = unsafe { libc::mmap(std::ptr::null_mut(), padded, prot, flags, -1, 0) };
    if raw == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = raw as usize;
    let aligned = start.next_multiple_of(ALIGNMENT);
    let (head, tail) = (aligned - start, padded - (aligned - start) - len);
    // SAFETY: both trimmed pieces lie inside the mapping just made and
    // outside [aligned, aligned + len), which is what is kept.
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
    }
    Ok(aligned)
}

/// A region of `len` bytes of guest RAM at a 2 MiB-aligned host address.
pub fn region(len: usize) -> io::Result<Arc<RamRegion>> {
    reap();
    let addr = map_aligned(len)?;
    // SAFETY: [addr, addr + len) is a private read-write anonymous mapping
    // made above, which stays mapped while the region (or any clone of it)
    // exists: `reap` unmaps it only after the last one is gone.
    let built = unsafe {
        MmapRegionBuilder::new_with_bitmap(len, DirtyBitmap::with_len(len))
            .with_raw_mmap_pointer(addr as *mut u8)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE)
            .build()
    };
    let region = match built {
        Ok(r) => Arc::new(r),
        Err(e) => {
            // SAFETY: the mapping made above, which nothing refers to.
            unsafe { libc::munmap(addr as *mut libc::c_void, len) };
            return Err(io::Error::other(e.to_string()));
        }
    };
    mappings().push(Mapping {
        addr,
        len,
        region: Arc::downgrade(&region),
    });
    Ok(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(addr: usize) -> bool {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .any(|l| l.starts_with(&format!("{addr:x}-")))
    }

    #[test]
    fn regions_are_aligned_and_unmapped_once_unused() {
        let region = region(3 * ALIGNMENT + 4096).unwrap();
        let addr = region.as_ptr() as usize;
        assert_eq!(addr % ALIGNMENT, 0);
        // SAFETY: the region is mapped read-write and this byte is inside it.
        unsafe { region.as_ptr().add(3 * ALIGNMENT).write(7) };
        let clone = region.clone();
        drop(region);
        reap();
        assert!(mapped(addr), "still in use through a clone");
        drop(clone);
        reap();
        assert!(!mapped(addr), "unmapped once unused");
    }
}
