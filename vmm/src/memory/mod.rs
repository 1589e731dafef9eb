//! Guest RAM: anonymous host mappings (vm-memory) registered with KVM.
//!
//! Every region carries a dirty bitmap (`bitmap::DirtyBitmap`): each
//! write the VMM itself makes into guest memory through vm-memory (a
//! virtio device filling a buffer, the used ring) marks its pages, so
//! migration sees those writes as well as the guest's own (KVM's dirty log).

pub mod bitmap;
pub mod dirty;
pub mod pages;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
};

mod aligned;

/// Guest RAM as the whole VMM sees it.
pub type GuestRam = GuestMemoryMmap<bitmap::DirtyBitmap>;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(
        "the VM asks for {asked} MiB of memory but this host has only {host} MiB (RAM + swap)",
        asked = .asked >> 20, host = .host >> 20
    )]
    HostTooSmall { asked: u64, host: u64 },
    #[error("cannot map {asked} bytes of guest memory: {reason}")]
    Mmap { asked: u64, reason: String },
    #[error("KVM refused guest memory slot {slot}: {source}")]
    Register {
        slot: u32,
        source: kvm_ioctls::Error,
    },
}

/// RAM plus swap of this host, from sysinfo(2).
fn host_memory_bytes() -> Option<u64> {
    // SAFETY: sysinfo only writes into the zeroed struct we pass.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a sysinfo struct.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return None;
    }
    let unit = u64::from(info.mem_unit.max(1));
    Some((info.totalram as u64 + info.totalswap as u64) * unit)
}

/// Maps `regions` (an arch layout of `size` bytes) in this process, each at
/// a 2 MiB-aligned address (`aligned.rs` says why). Memory is reserved
/// lazily; a guest larger than the host could ever back is refused up front
/// instead of dying later under the OOM killer.
pub fn create(size: u64, regions: &[(GuestAddress, usize)]) -> Result<GuestRam, MemoryError> {
    if let Some(host) = host_memory_bytes() {
        if size > host {
            return Err(MemoryError::HostTooSmall { asked: size, host });
        }
    }
    let mmap_err = |reason: String| MemoryError::Mmap {
        asked: size,
        reason,
    };
    let mut mapped = Vec::with_capacity(regions.len());
    for &(start, len) in regions {
        let region = aligned::region(len).map_err(|e| mmap_err(e.to_string()))?;
        let region = GuestRegionMmap::with_arc(region, start)
            .ok_or_else(|| mmap_err(format!("a region at {:#x} overflows", start.0)))?;
        mapped.push(region);
    }
    GuestRam::from_regions(mapped).map_err(|e| mmap_err(e.to_string()))
}

/// Hands every region to KVM as a memory slot, slot n for region n; with
/// `log_dirty`, KVM records the pages the guest writes (KVM_GET_DIRTY_LOG).
/// Registering a slot again with the other flag turns logging on or off.
pub fn register(vm: &VmFd, mem: &GuestRam, log_dirty: bool) -> Result<(), MemoryError> {
    for (slot, region) in mem.iter().enumerate() {
        let slot = slot as u32;
        let host = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|e| MemoryError::Mmap {
                asked: region.len(),
                reason: e.to_string(),
            })?;
        let desc = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: if log_dirty {
                kvm_bindings::KVM_MEM_LOG_DIRTY_PAGES
            } else {
                0
            },
        };
        // SAFETY: the mapping lives in `mem`, which the VM keeps for its whole
        // life, and the slots do not overlap (they come from one layout).
        unsafe { vm.set_user_memory_region(desc) }
            .map_err(|source| MemoryError::Register { slot, source })?;
    }
    Ok(())
}
