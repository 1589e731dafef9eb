//! PVH boot: read `hvm_start_info` (Xen's x86/HVM direct boot ABI).
//!
//! entry.s has already identity-mapped the first 4 GiB, so every 32-bit
//! pointer in start_info is reachable; 64-bit ones must stay below 4 GiB.

use super::{BootInfo, E820Entry, Protocol};
use crate::phys;

const MAGIC: u32 = 0x336e_c578;

// hvm_start_info field offsets.
const OFF_MAGIC: u64 = 0;
const OFF_VERSION: u64 = 4;
const OFF_CMDLINE: u64 = 24;
const OFF_MEMMAP: u64 = 40;
const OFF_MEMMAP_ENTRIES: u64 = 48;
/// Size of a version 1 start_info.
const START_INFO_SIZE: u64 = 56;

/// hvm_memmap_table_entry: addr u64, size u64, type u32, reserved u32.
const MEMMAP_ENTRY_SIZE: u64 = 24;

/// Called by entry.s in 64-bit mode with EBX from the PVH entry.
#[no_mangle]
extern "C" fn pvh_main(start_info: u32) -> ! {
    let info = super::early_start(Protocol::Pvh);
    if let Err(reason) = copy(u64::from(start_info), info) {
        crate::fail(reason);
    }
    crate::run(info)
}

fn copy(start_info: u64, info: &mut BootInfo) -> Result<(), &'static str> {
    phys::check(start_info, START_INFO_SIZE).map_err(|_| "bad start_info address")?;
    info.add_source(start_info, START_INFO_SIZE)?;
    if phys::read::<u32>(start_info + OFF_MAGIC) != MAGIC {
        return Err("bad pvh magic");
    }
    // The memory map fields only exist from version 1 on.
    if phys::read::<u32>(start_info + OFF_VERSION) < 1 {
        return Err("no memory map (pvh start_info version 0)");
    }
    info.copy_cmdline(phys::read(start_info + OFF_CMDLINE))?;

    let map: u64 = phys::read(start_info + OFF_MEMMAP);
    let count: u32 = phys::read(start_info + OFF_MEMMAP_ENTRIES);
    if map == 0 || count == 0 {
        return Err("no memory map (pvh memmap empty)");
    }
    let map_len = u64::from(count) * MEMMAP_ENTRY_SIZE;
    phys::check(map, map_len).map_err(|_| "pvh memmap not below 4 GiB")?;
    info.add_source(map, map_len)?;
    for i in 0..u64::from(count) {
        info.push_e820(E820Entry::read_at(map + i * MEMMAP_ENTRY_SIZE))?;
    }
    Ok(())
}
