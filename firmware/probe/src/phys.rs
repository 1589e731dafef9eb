//! Reads of guest-physical memory through the identity map.

/// Both entry paths identity-map at least this much before reading boot
/// information, so structures below it are always reachable.
pub const EARLY_MAPPED: u64 = 4 << 30;

/// Whether `[addr, addr + len)` is non-null and below [`EARLY_MAPPED`].
pub fn check(addr: u64, len: u64) -> Result<(), ()> {
    match addr.checked_add(len) {
        Some(end) if addr != 0 && end <= EARLY_MAPPED => Ok(()),
        _ => Err(()),
    }
}

extern "C" {
    /// Start of the probe's image and end of its .bss (link.ld).
    static __probe_start: u8;
    static __bss_end: u8;
}

/// Whether `[addr, addr + len)` overlaps the probe's image or .bss.
pub fn overlaps_probe(addr: u64, len: u64) -> bool {
    let start = core::ptr::addr_of!(__probe_start) as u64;
    let end = core::ptr::addr_of!(__bss_end) as u64;
    addr < end && start < addr.saturating_add(len)
}

/// End of the probe's .bss: memory above it is free after boot.
pub fn probe_end() -> u64 {
    core::ptr::addr_of!(__bss_end) as u64
}

/// Read a plain value at a physical address; callers keep to ranges that
/// passed [`check`] (or, for fixed BIOS areas, are below 1 MiB).
pub fn read<T: Copy>(addr: u64) -> T {
    // SAFETY: identity-mapped, non-null memory (see above); unaligned reads
    // because boot structures (e820 in the zero page) are packed.
    unsafe { core::ptr::read_unaligned(addr as *const T) }
}

/// Sum of the bytes in `[addr, addr + len)`; BIOS tables are valid when it
/// is zero.
pub fn byte_sum(addr: u64, len: u64) -> u8 {
    (addr..addr + len).fold(0u8, |sum, a| sum.wrapping_add(read::<u8>(a)))
}
