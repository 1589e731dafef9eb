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
