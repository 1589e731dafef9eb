//! The x86_64 guest physical address map.
//!
//! ```text
//! 0x0000_0500  GDT used by the boot vCPU
//! 0x0000_6000  PVH hvm_start_info, then its module list and memory map
//! 0x0000_7000  Linux boot_params ("zero page")
//! 0x0000_8000  free (the probe guest puts its AP trampoline here)
//! 0x0000_9000  boot page tables: PML4, PDPT, PD (identity map of 1 GiB)
//! 0x0002_0000  kernel command line
//! 0x0009_fc00  EBDA: MP table
//! 0x000a_0000  legacy VGA/ROM window (not RAM)
//! 0x000e_0000  ACPI: RSDP, then DSDT, FADT, MADT, XSDT (BIOS area, reserved)
//! 0x000f_fff0  reset vector: a stub that resets through the i8042
//! 0x0010_0000  kernel (high memory starts here)
//! ...          RAM up to 3 GiB, initrd at the top of low RAM
//! 0xc000_0000  32-bit MMIO hole: virtio-mmio devices, IOAPIC, LAPIC
//! 0x1_0000_0000 RAM above 3 GiB continues here
//! ```

/// Global descriptor table the boot vCPU starts with.
pub const GDT_ADDR: u64 = 0x500;
/// PVH `hvm_start_info`, followed by the module list and memory map.
pub const PVH_INFO_ADDR: u64 = 0x6000;
pub const PVH_MODLIST_ADDR: u64 = 0x6040;
pub const PVH_MEMMAP_ADDR: u64 = 0x6080;
/// Linux `boot_params`.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Stack pointer the Linux 64-bit entry starts with (top of the free page).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity-mapping page tables for the Linux 64-bit entry.
pub const PML4_ADDR: u64 = 0x9000;
pub const PDPT_ADDR: u64 = 0xa000;
pub const PD_ADDR: u64 = 0xb000;
/// Kernel command line and its capacity (Linux reads at most 2 KiB by
/// default, but newer kernels announce more through `cmdline_size`).
pub const CMDLINE_ADDR: u64 = 0x20000;
pub const CMDLINE_MAX_SIZE: usize = 0x10000;
/// Extended BIOS data area; the MP table lives here because Linux searches it.
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI root pointer, where Linux also scans for it; the other tables follow
/// it up to the end of the BIOS area.
pub const RSDP_ADDR: u64 = 0xe_0000;
pub const ACPI_TABLES_END: u64 = 0x10_0000;
/// Where a real-mode CPU starts after a reset (F000:FFF0), and where Linux
/// jumps when it reboots "through the BIOS".
pub const RESET_VECTOR: u64 = 0xf_fff0;
/// First byte past the legacy low-memory window.
pub const HIGH_MEMORY_START: u64 = 0x10_0000;

/// The 32-bit MMIO hole: guest RAM never sits here.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
/// Where virtio-mmio devices are placed, inside the hole.
pub const MMIO_DEVICES_START: u64 = 0xd000_0000;
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// KVM needs three pages for the real-mode TSS and one for the identity map
/// page on Intel; both sit in the hole just below the BIOS ROM.
pub const KVM_TSS_ADDR: usize = 0xfffb_d000;
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;

/// Highest address (exclusive) an initrd may end at when the kernel does not say.
pub const DEFAULT_INITRD_ADDR_MAX: u64 = 0x3800_0000;

/// Interrupt line of COM1 and of the i8042 keyboard controller.
pub const SERIAL_IRQ: u32 = 4;
pub const I8042_IRQ: u32 = 1;
/// Number of IOAPIC pins KVM emulates.
pub const IOAPIC_PINS: u8 = 24;

/// Register window of one virtio-mmio transport.
pub const VIRTIO_MMIO_SLOT_SIZE: u64 = 0x1000;
/// IOAPIC pin of the first transport: the ISA lines below it (timer,
/// keyboard, cascade, COM2, COM1) stay free.
pub const VIRTIO_MMIO_IRQ_BASE: u32 = 5;
/// One transport per remaining IOAPIC pin.
pub const VIRTIO_MMIO_SLOTS: u32 = IOAPIC_PINS as u32 - VIRTIO_MMIO_IRQ_BASE;

const _: () = assert!(SERIAL_IRQ < VIRTIO_MMIO_IRQ_BASE && I8042_IRQ < VIRTIO_MMIO_IRQ_BASE);
const _: () = assert!(
    MMIO_DEVICES_START + VIRTIO_MMIO_SLOTS as u64 * VIRTIO_MMIO_SLOT_SIZE <= IOAPIC_ADDR as u64
);

/// Address, length and IOAPIC pin (= GSI) of virtio-mmio slot `slot`, if it exists.
pub fn virtio_mmio_slot(slot: u32) -> Option<(vm_memory::GuestAddress, u64, u32)> {
    (slot < VIRTIO_MMIO_SLOTS).then(|| {
        let addr = MMIO_DEVICES_START + u64::from(slot) * VIRTIO_MMIO_SLOT_SIZE;
        (
            vm_memory::GuestAddress(addr),
            VIRTIO_MMIO_SLOT_SIZE,
            VIRTIO_MMIO_IRQ_BASE + slot,
        )
    })
}
