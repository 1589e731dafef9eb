//! The probe's identity map: 2 MiB pages from 0 up to max(4 GiB, top of
//! RAM), at most 64 GiB, in static tables that every CPU shares.
//!
//! entry.s (PVH path) builds the first 4 GiB of the same layout in 32-bit
//! code before long mode exists; here the tables are (re)written in full.

use crate::boot::E820Entry;
use crate::cpu;

const GIB: u64 = 1 << 30;
const PAGE_2M: u64 = 2 << 20;
/// One page directory maps 1 GiB.
const PD_COUNT: usize = 64;
/// Highest address the tables can map.
pub const MAP_LIMIT: u64 = PD_COUNT as u64 * GIB;
/// Always mapped, whatever the RAM size: boot info, APIC and MMIO devices
/// live below 4 GiB.
const MIN_MAPPED: u64 = 4 * GIB;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const LARGE: u64 = 1 << 7;

/// PML4, one PDPT and the page directories, contiguous because entry.s
/// addresses them as PROBE_PAGE_TABLES + 0x0000 / 0x1000 / 0x2000.
#[repr(C, align(4096))]
pub struct PageTables {
    pml4: [u64; 512],
    pdpt: [u64; 512],
    pd: [[u64; 512]; PD_COUNT],
}

#[no_mangle]
#[link_section = ".noinit.page_tables"]
static mut PROBE_PAGE_TABLES: PageTables = PageTables {
    pml4: [0; 512],
    pdpt: [0; 512],
    pd: [[0; 512]; PD_COUNT],
};

/// Map the first 4 GiB, all write-back, for the Linux 64-bit entry (the VMM
/// only promised 1 GiB). Nothing is known about RAM yet.
pub fn install_early() {
    build(MIN_MAPPED, |_| false);
}

/// Map up to max(4 GiB, top of RAM); 2 MiB pages without any RAM (APIC,
/// MMIO devices, holes) are uncached, so device registers are not cached.
/// Returns the mapped limit.
pub fn install(e820: &[E820Entry], ram_top: u64) -> Result<u64, &'static str> {
    if ram_top > MAP_LIMIT {
        return Err("ram above 64 GiB");
    }
    let limit = ram_top.max(MIN_MAPPED).next_multiple_of(GIB);
    build(limit, |page| !has_ram(e820, page));
    Ok(limit)
}

fn has_ram(e820: &[E820Entry], page: u64) -> bool {
    e820.iter()
        .any(|e| e.is_ram() && e.size != 0 && e.addr < page + PAGE_2M && page < e.end())
}

/// Write the tables for `[0, limit)` and load CR3. Runs on the boot CPU
/// before any AP starts; rewriting the live 4 GiB part with equal frames is
/// harmless, and the CR3 load flushes the old entries.
fn build(limit: u64, uncached: impl Fn(u64) -> bool) {
    // SAFETY: only the boot CPU runs, and nothing else holds a reference.
    let tables = unsafe { &mut *core::ptr::addr_of_mut!(PROBE_PAGE_TABLES) };
    let gibs = (limit / GIB) as usize;
    // The tables are not zeroed at entry (.noinit): clear every entry that is
    // not about to be written. Entries in use are only ever overwritten.
    tables.pml4[1..].fill(0);
    tables.pdpt[gibs..].fill(0);
    tables.pml4[0] = tables.pdpt.as_ptr() as u64 | PRESENT | WRITABLE;
    for (gib, pd) in tables.pd.iter_mut().enumerate().take(gibs) {
        for (slot, entry) in pd.iter_mut().enumerate() {
            let page = (gib as u64 * 512 + slot as u64) * PAGE_2M;
            let cache = if uncached(page) {
                CACHE_DISABLE | WRITE_THROUGH
            } else {
                0
            };
            *entry = page | PRESENT | WRITABLE | LARGE | cache;
        }
        tables.pdpt[gib] = pd.as_ptr() as u64 | PRESENT | WRITABLE;
    }
    // SAFETY: the new tables identity-map at least the first 4 GiB, which
    // hold the probe, its stacks and everything it has touched so far.
    unsafe { cpu::write_cr3(tables.pml4.as_ptr() as u64) };
}
