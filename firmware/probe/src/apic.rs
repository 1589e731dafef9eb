//! The local APIC in xAPIC (MMIO) mode, at its architectural default base.
//! paging.rs maps the 2 MiB page holding it uncached.

const BASE: u64 = 0xFEE0_0000;

// Register offsets.
const ID: u64 = 0x20;
const SPURIOUS: u64 = 0xF0;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;

const SPURIOUS_ENABLE: u32 = 1 << 8;
/// Spurious vector; never delivered since interrupts stay off.
const SPURIOUS_VECTOR: u32 = 0xFF;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;

/// Polls of the ICR delivery status before giving up.
const MAX_ICR_POLLS: u32 = 1 << 20;

fn read(reg: u64) -> u32 {
    // SAFETY: APIC registers are aligned u32s in the identity-mapped page.
    unsafe { core::ptr::read_volatile((BASE + reg) as *const u32) }
}

fn write(reg: u64, value: u32) {
    // SAFETY: as for read.
    unsafe { core::ptr::write_volatile((BASE + reg) as *mut u32, value) }
}

/// The running CPU's APIC id.
pub fn id() -> u32 {
    read(ID) >> 24
}

/// Software-enable the APIC, which it must be to send IPIs.
pub fn enable() {
    write(SPURIOUS, read(SPURIOUS) | SPURIOUS_ENABLE | SPURIOUS_VECTOR);
}

/// Send an IPI with a destination shorthand (ICR high unused), after and
/// before making sure no earlier one is still being delivered.
pub fn send_ipi(icr_low: u32) -> Result<(), &'static str> {
    wait_idle()?;
    write(ICR_HIGH, 0);
    write(ICR_LOW, icr_low);
    wait_idle()
}

fn wait_idle() -> Result<(), &'static str> {
    for _ in 0..MAX_ICR_POLLS {
        if read(ICR_LOW) & ICR_DELIVERY_PENDING == 0 {
            return Ok(());
        }
    }
    Err("apic ipi stuck pending")
}
