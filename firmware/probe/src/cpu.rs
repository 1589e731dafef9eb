//! The few privileged instructions the probe uses, one wrapper each.

use core::arch::asm;

pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O has no effect on Rust-visible memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for outb.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// `rep outsb`: every byte of `bytes` to `port`, in one instruction (a VMM
/// sees one string I/O exit per page or so instead of one per byte).
pub fn outsb(port: u16, bytes: &[u8]) {
    // SAFETY: reads `bytes` only; port I/O touches no other Rust memory.
    unsafe {
        asm!("rep outsb", in("dx") port, inout("rsi") bytes.as_ptr() => _,
             inout("rcx") bytes.len() => _, options(nostack, preserves_flags, readonly))
    }
}

/// Point the MMU at a new top-level table (also flushes the TLB).
///
/// # Safety
/// `pml4` must be a valid PML4 that maps the running code, stack and data
/// at the same addresses as before.
pub unsafe fn write_cr3(pml4: u64) {
    asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags));
}

/// Faulting address of the last page fault.
pub fn read_cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Stop this CPU for good: interrupts off, then halt (again, should
/// anything such as an NMI wake it).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stops the CPU; touches no memory.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// The time-stamp counter: differs from boot to boot, so it seeds ids.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads a counter; touches no memory.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    u64::from(hi) << 32 | u64::from(lo)
}
