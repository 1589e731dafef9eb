//! Boot protocols: the assembly entries and the copy of the VMM's boot
//! information (command line, memory map) into the probe's own .bss.
//!
//! Both entries end in `crate::run` with a filled [`BootInfo`]; nothing
//! after that reads the VMM's boot structures again, so low memory is free
//! for the probe's own use (the AP trampoline).

mod linux64;
mod pvh;

use core::sync::atomic::{AtomicBool, Ordering};

use crate::{phys, smp};

/// Stack of the boot CPU, in .bss (entry.s).
const BSP_STACK_SIZE: usize = 64 * 1024;

core::arch::global_asm!(
    include_str!("entry.s"),
    bsp_stack_size = const BSP_STACK_SIZE,
    ap_stack_size = const smp::AP_STACK_SIZE,
    max_aps = const smp::MAX_APS,
    options(att_syntax)
);

#[cfg(not(feature = "linux64-only"))]
core::arch::global_asm!(include_str!("pvh_note.s"), options(att_syntax));

/// Most memory map entries kept; both protocols' tables fit (the zero page
/// holds at most 128).
pub const MAX_E820: usize = 128;
/// Longest command line kept, terminating NUL excluded.
pub const MAX_CMDLINE: usize = 4095;
/// Boot structures remembered as "in use by boot info" (see `sources`).
const MAX_SOURCES: usize = 4;

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Pvh,
    Linux64,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Pvh => "pvh",
            Protocol::Linux64 => "linux64",
        }
    }
}

/// One memory map entry, as both protocols describe it.
#[derive(Clone, Copy)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

impl E820Entry {
    const EMPTY: E820Entry = E820Entry {
        addr: 0,
        size: 0,
        kind: 0,
    };

    /// Reads an entry laid out as both protocols do: addr u64, size u64,
    /// type u32 (what follows differs and is not read).
    pub fn read_at(entry: u64) -> E820Entry {
        E820Entry {
            addr: phys::read(entry),
            size: phys::read(entry + 8),
            kind: phys::read(entry + 16),
        }
    }

    /// Exclusive end, saturating so a bogus entry cannot wrap.
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }

    pub fn is_ram(&self) -> bool {
        self.kind == E820_RAM
    }
}

/// Everything the probe needs from the VMM's boot information.
pub struct BootInfo {
    pub protocol: Protocol,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    e820: [E820Entry; MAX_E820],
    e820_len: usize,
    /// Physical ranges (start, length) the information was copied from, so
    /// that the trampoline page can stay clear of them.
    sources: [(u64, u64); MAX_SOURCES],
    sources_len: usize,
}

impl BootInfo {
    const EMPTY: BootInfo = BootInfo {
        protocol: Protocol::Pvh,
        cmdline: [0; MAX_CMDLINE],
        cmdline_len: 0,
        e820: [E820Entry::EMPTY; MAX_E820],
        e820_len: 0,
        sources: [(0, 0); MAX_SOURCES],
        sources_len: 0,
    };

    pub fn cmdline(&self) -> &[u8] {
        &self.cmdline[..self.cmdline_len]
    }

    pub fn e820(&self) -> &[E820Entry] {
        &self.e820[..self.e820_len]
    }

    pub fn sources(&self) -> &[(u64, u64)] {
        &self.sources[..self.sources_len]
    }

    fn push_e820(&mut self, entry: E820Entry) -> Result<(), &'static str> {
        let slot = self
            .e820
            .get_mut(self.e820_len)
            .ok_or("too many memory map entries")?;
        *slot = entry;
        self.e820_len += 1;
        Ok(())
    }

    /// Record a boot structure about to be copied. One inside the probe's
    /// image would have been wiped by the .bss clearing at entry.
    fn add_source(&mut self, start: u64, len: u64) -> Result<(), &'static str> {
        if phys::overlaps_probe(start, len) {
            return Err("boot info inside probe image");
        }
        // Only the structures the two protocols define are recorded, and
        // there are fewer than MAX_SOURCES of them.
        if let Some(slot) = self.sources.get_mut(self.sources_len) {
            *slot = (start, len);
            self.sources_len += 1;
        }
        Ok(())
    }

    /// Copy the NUL-terminated command line at `addr` (0 = none).
    fn copy_cmdline(&mut self, addr: u64) -> Result<(), &'static str> {
        if addr == 0 {
            return Ok(());
        }
        let mut len = 0;
        loop {
            phys::check(addr + len as u64, 1).map_err(|_| "cmdline not below 4 GiB")?;
            let byte: u8 = phys::read(addr + len as u64);
            if byte == 0 {
                break;
            }
            let slot = self.cmdline.get_mut(len).ok_or("cmdline too long")?;
            *slot = byte;
            len += 1;
        }
        self.cmdline_len = len;
        self.add_source(addr, len as u64 + 1)
    }
}

/// Holds the one BootInfo; only the boot CPU touches it, once, at entry.
struct BootInfoCell(core::cell::UnsafeCell<BootInfo>);

// SAFETY: accessed only through `take_boot_info`, which hands out a single
// reference for the lifetime of the program (guarded by TAKEN).
unsafe impl Sync for BootInfoCell {}

static BOOT_INFO: BootInfoCell = BootInfoCell(core::cell::UnsafeCell::new(BootInfo::EMPTY));
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The probe's BootInfo, for the entry path that runs (exactly once).
fn take_boot_info(protocol: Protocol) -> &'static mut BootInfo {
    assert!(!TAKEN.swap(true, Ordering::AcqRel), "boot info taken twice");
    // SAFETY: TAKEN guarantees this is the only reference ever created.
    let info = unsafe { &mut *BOOT_INFO.0.get() };
    info.protocol = protocol;
    info
}

/// Common start of both entries, right after the switch to 64-bit code.
fn early_start(protocol: Protocol) -> &'static mut BootInfo {
    crate::serial::init();
    crate::trap::install();
    crate::serial::report("start boot=")
        .str(protocol.name())
        .end();
    take_boot_info(protocol)
}
