//! Linux 64-bit boot protocol: read `boot_params` (the "zero page").
//!
//! The VMM only promises an identity map of the first 1 GiB, so the probe
//! installs its own 4 GiB map before reading anything the zero page points
//! to.

use super::{BootInfo, E820Entry, Protocol, MAX_E820};
use crate::{paging, phys};

// boot_params field offsets (Linux Documentation/arch/x86/zero-page.rst).
const OFF_EXT_CMD_LINE_PTR: u64 = 0x0c8;
const OFF_E820_ENTRIES: u64 = 0x1e8;
const OFF_CMD_LINE_PTR: u64 = 0x228;
const OFF_E820_TABLE: u64 = 0x2d0;
const BOOT_PARAMS_SIZE: u64 = 4096;

/// boot_e820_entry: addr u64, size u64, type u32, packed.
const E820_ENTRY_SIZE: u64 = 20;

/// Called by entry.s (the ELF entry point) with RSI from the VMM.
#[no_mangle]
extern "C" fn linux64_main(boot_params: u64) -> ! {
    paging::install_early();
    let info = super::early_start(Protocol::Linux64);
    if let Err(reason) = copy(boot_params, info) {
        crate::fail(reason);
    }
    crate::run(info)
}

fn copy(boot_params: u64, info: &mut BootInfo) -> Result<(), &'static str> {
    phys::check(boot_params, BOOT_PARAMS_SIZE).map_err(|_| "bad boot_params address")?;
    info.add_source(boot_params, BOOT_PARAMS_SIZE)?;

    let low: u32 = phys::read(boot_params + OFF_CMD_LINE_PTR);
    let high: u32 = phys::read(boot_params + OFF_EXT_CMD_LINE_PTR);
    info.copy_cmdline(u64::from(high) << 32 | u64::from(low))?;

    let count = usize::from(phys::read::<u8>(boot_params + OFF_E820_ENTRIES));
    if count == 0 {
        return Err("no memory map (e820_entries is 0)");
    }
    if count > MAX_E820 {
        return Err("bad e820_entries");
    }
    for i in 0..count as u64 {
        info.push_e820(E820Entry::read_at(
            boot_params + OFF_E820_TABLE + i * E820_ENTRY_SIZE,
        ))?;
    }
    Ok(())
}
