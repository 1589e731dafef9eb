//! Sparse memory test: proves every RAM range the memory map announces is
//! backed, distinct memory (no holes, no aliasing), not that it is
//! fault-free.
//!
//! In each RAM region above the probe, one u64 goes at the first byte, then
//! every 2 MiB, and at the last 8 bytes. All are written first and read back
//! after, so a write that lands on an alias of another probe address shows
//! up as a mismatch there.

use crate::boot::E820Entry;
use crate::phys;

const STRIDE: u64 = 2 << 20;
const LOWEST: u64 = 1 << 20;
const WORD: u64 = 8;

pub struct Passed {
    pub regions: u64,
    pub probes: u64,
}

pub struct Mismatch {
    pub addr: u64,
    pub wrote: u64,
    pub read: u64,
}

/// Run the test over the RAM entries of `e820` (all mapped by now).
pub fn run(e820: &[E820Entry]) -> Result<Passed, Mismatch> {
    let floor = floor();
    let mut passed = Passed {
        regions: 0,
        probes: 0,
    };
    let tested = || e820.iter().filter_map(|e| clip(e, floor));
    for (start, end) in tested() {
        passed.regions += 1;
        passed.probes += for_each_probe(start, end, |addr| write(addr, pattern(addr)));
    }
    for (start, end) in tested() {
        let mut mismatch = None;
        for_each_probe(start, end, |addr| {
            let read = read(addr);
            if read != pattern(addr) && mismatch.is_none() {
                mismatch = Some(Mismatch {
                    addr,
                    wrote: pattern(addr),
                    read,
                });
            }
        });
        if let Some(mismatch) = mismatch {
            return Err(mismatch);
        }
    }
    Ok(passed)
}

/// Everything below this holds the probe, its tables and stacks (and the
/// boot structures below 1 MiB): end of .bss rounded up to 2 MiB.
fn floor() -> u64 {
    phys::probe_end().next_multiple_of(STRIDE).max(LOWEST)
}

/// The part of a RAM entry the test may touch, as an 8-byte-aligned
/// `[start, end)` holding at least one word.
fn clip(entry: &E820Entry, floor: u64) -> Option<(u64, u64)> {
    if !entry.is_ram() {
        return None;
    }
    let start = entry.addr.max(floor).next_multiple_of(WORD);
    let end = entry.end() & !(WORD - 1);
    (start < end).then_some((start, end))
}

/// Call `probe` for each probe address of `[start, end)`; returns the count.
fn for_each_probe(start: u64, end: u64, mut probe: impl FnMut(u64)) -> u64 {
    let last = end - WORD;
    let mut count = 0;
    let mut addr = start;
    while addr < last {
        probe(addr);
        count += 1;
        addr += STRIDE;
    }
    probe(last);
    count + 1
}

/// Value stored at `addr`: unique per address (an XOR with a constant),
/// and for any real address neither the zeros nor the all-ones that
/// unbacked memory tends to read as.
fn pattern(addr: u64) -> u64 {
    addr ^ 0xA5A5_A5A5_0000_0000
}

fn write(addr: u64, value: u64) {
    // SAFETY: an aligned word in RAM above the probe that nothing else uses.
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
}

fn read(addr: u64) -> u64 {
    // SAFETY: as for write.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}
