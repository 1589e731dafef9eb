//! The aarch64 guest physical address map.
//!
//! There is no firmware: the VMM loads the kernel Image, the initrd and the
//! device tree straight into RAM and starts the boot vCPU at the Image entry
//! point, so the low 2 GiB hold only devices:
//!
//! | range                       | what                                          |
//! | --------------------------- | --------------------------------------------- |
//! | `0x0000_0000..0x0800_0000`  | unused (no flash or firmware)                 |
//! | `0x0800_0000..0x0801_0000`  | GICv3 distributor, 64 KiB                     |
//! | `0x0900_0000..0x0900_1000`  | 16550 UART                                    |
//! | `0x0A00_0000..0x0A02_0000`  | virtio-mmio transports, 32 slots × 4 KiB      |
//! | `0x0B00_0000..0x0C00_0000`  | GICv3 redistributors, 128 KiB per vCPU        |
//! | `0x0C00_0000..0x8000_0000`  | free (an ITS, a future PCIe window)           |
//! | `0x8000_0000..`             | RAM: kernel at the bottom, initrd and FDT top |
//!
//! Interrupt numbers are SPI numbers, as the FDT writes them (`<0 spi flags>`).
//! The GIC sees INTID `32 + spi`, and KVM's default GSI routing for the
//! in-kernel vGIC maps GSI `n` to SPI `n`, so the GSI an irqfd is registered
//! on equals the SPI number ([`gsi_for_spi`]).

use vm_memory::GuestAddress;

use super::{Error, Result};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Start of guest RAM. Keeping RAM above 2 GiB leaves the low range to
/// devices, the layout Linux's arm64 `virt`-style guests expect.
pub const DRAM_START: u64 = 0x8000_0000;

/// Guest physical address bits KVM gives a VM created with the default
/// machine type (`KVM_CREATE_VM` with type 0): 40 bits, 1 TiB.
pub const GUEST_PHYS_ADDR_BITS: u32 = 40;

/// Largest RAM size: everything from [`DRAM_START`] up to the 1 TiB IPA
/// limit. A bigger guest would need a VM type with a wider IPA space.
pub const MAX_MEMORY_SIZE: u64 = (1 << GUEST_PHYS_ADDR_BITS) - DRAM_START;

/// The arm64 boot protocol wants the Image at a 2 MiB aligned base plus
/// the header's `text_offset` (0 for kernels since 5.8); the base is the
/// bottom of RAM so the kernel's linear map starts with it.
pub const KERNEL_BASE: u64 = DRAM_START;

/// Alignment the arm64 boot protocol asks for the kernel base.
pub const KERNEL_ALIGN: u64 = 2 * MIB;

/// Largest device tree the boot protocol accepts (Documentation/arch/arm64/booting.rst).
pub const FDT_MAX_SIZE: u64 = 2 * MIB;

/// The initrd must lie in a 1 GiB aligned window of at most 32 GiB that also
/// covers the kernel Image. The kernel sits at [`DRAM_START`] (1 GiB
/// aligned), so the initrd has to end at most 32 GiB above it.
pub const BOOT_WINDOW_SIZE: u64 = 32 * GIB;

/// Initrd start alignment: a 64 KiB boundary is page aligned for all three
/// arm64 page sizes, so the kernel can free the initrd pages whole.
pub const INITRD_ALIGN: u64 = 64 * KIB;

/// GICv3 distributor (`GICD_*`), one per VM.
pub const GIC_DIST_ADDR: u64 = 0x0800_0000;
/// Size of the distributor frame (KVM_VGIC_V3_DIST_SIZE).
pub const GIC_DIST_SIZE: u64 = 64 * KIB;
/// First GICv3 redistributor; they are packed one after another, one per vCPU.
pub const GIC_REDIST_ADDR: u64 = 0x0B00_0000;
/// Redistributor frames of one vCPU: RD_base and SGI_base, 64 KiB each.
pub const GIC_REDIST_SIZE_PER_CPU: u64 = 128 * KIB;
/// vCPUs the redistributor window has room for (16 MiB / 128 KiB), as
/// QEMU virt's first redistributor region holds 123.
pub const GIC_MAX_VCPUS: usize = 128;
/// Interrupts the vGIC implements: 32 private (SGI, PPI) plus 96 SPIs. KVM
/// wants a multiple of 32.
pub const GIC_NR_IRQS: u32 = 128;
/// SPIs available to devices.
pub const GIC_NR_SPIS: u32 = GIC_NR_IRQS - 32;

/// The 16550 UART, the guest's console (`console=ttyS0`, `earlycon`).
pub const SERIAL_MMIO_ADDR: u64 = 0x0900_0000;
/// One page, although a 16550 decodes only 8 byte registers.
pub const SERIAL_MMIO_LEN: u64 = 0x1000;
/// SPI of the UART, as written in the FDT.
pub const SERIAL_IRQ: u32 = 1;
/// GSI to register the UART's irqfd on.
pub const SERIAL_GSI: u32 = gsi_for_spi(SERIAL_IRQ);

/// First virtio-mmio transport.
pub const VIRTIO_MMIO_BASE: u64 = 0x0A00_0000;
/// Register space of one transport: the virtio-mmio header and config space fit in a page.
pub const VIRTIO_MMIO_SLOT_SIZE: u64 = 0x1000;
/// Number of virtio-mmio slots.
pub const VIRTIO_MMIO_SLOTS: u32 = 32;
/// SPI of slot 0; slot `n` uses `VIRTIO_MMIO_IRQ_BASE + n`.
pub const VIRTIO_MMIO_IRQ_BASE: u32 = 16;

const _: () =
    assert!(GIC_REDIST_ADDR + GIC_MAX_VCPUS as u64 * GIC_REDIST_SIZE_PER_CPU <= 0x0C00_0000);
const _: () = assert!(VIRTIO_MMIO_IRQ_BASE + VIRTIO_MMIO_SLOTS <= GIC_NR_SPIS);
const _: () = assert!(SERIAL_IRQ < VIRTIO_MMIO_IRQ_BASE);
const _: () = assert!(GIC_DIST_ADDR + GIC_DIST_SIZE <= SERIAL_MMIO_ADDR);

/// GSI to register an irqfd on so that it raises SPI `spi`.
/// (KVM_IRQ_LINE differs: it takes type SPI and the INTID, `32 + spi`.)
pub const fn gsi_for_spi(spi: u32) -> u32 {
    // KVM sets up an identity GSI -> SPI routing when the vGIC is initialised.
    spi
}

/// Address, length and SPI of virtio-mmio slot `slot`, if it exists.
pub fn virtio_mmio_slot(slot: u32) -> Option<(GuestAddress, u64, u32)> {
    (slot < VIRTIO_MMIO_SLOTS).then(|| {
        let addr = VIRTIO_MMIO_BASE + u64::from(slot) * VIRTIO_MMIO_SLOT_SIZE;
        (
            GuestAddress(addr),
            VIRTIO_MMIO_SLOT_SIZE,
            VIRTIO_MMIO_IRQ_BASE + slot,
        )
    })
}

/// Where the GICv3 frames of a VM are, as KVM and the FDT need them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicLayout {
    pub dist_addr: u64,
    pub dist_size: u64,
    pub redist_addr: u64,
    pub redist_size: u64,
}

impl GicLayout {
    /// The layout for `vcpu_count` vCPUs: one redistributor each.
    pub fn for_vcpus(vcpu_count: usize) -> Result<Self> {
        if vcpu_count == 0 || vcpu_count > GIC_MAX_VCPUS {
            return Err(Error::VcpuCount(vcpu_count));
        }
        Ok(Self {
            dist_addr: GIC_DIST_ADDR,
            dist_size: GIC_DIST_SIZE,
            redist_addr: GIC_REDIST_ADDR,
            redist_size: vcpu_count as u64 * GIC_REDIST_SIZE_PER_CPU,
        })
    }
}

/// The MPIDR_EL1 KVM gives vCPU `index` (arch/arm64/kvm/sys_regs.c,
/// `reset_mpidr`): 16 vCPUs per cluster in Aff0, since a GICv3 SGI
/// target list addresses 16 CPUs, then Aff1 and Aff2; bit 31 is RES1.
pub const fn kvm_mpidr(index: usize) -> u64 {
    let id = index as u64;
    (1 << 31) | (id & 0xf) | (((id >> 4) & 0xff) << 8) | (((id >> 12) & 0xff) << 16)
}

/// The affinity fields of an MPIDR (Aff3..Aff0), which is what a cpu node's
/// `reg` holds: MT, U and RES1 bits are dropped.
pub const fn mpidr_affinity(mpidr: u64) -> u64 {
    mpidr & 0xff_00ff_ffff
}

/// Guest RAM: one region at [`DRAM_START`] of `size` bytes.
pub fn memory_regions(size: u64) -> Result<Vec<(GuestAddress, usize)>> {
    if size == 0 || size > MAX_MEMORY_SIZE {
        return Err(Error::MemorySize(size));
    }
    let len = usize::try_from(size).map_err(|_| Error::MemorySize(size))?;
    Ok(vec![(GuestAddress(DRAM_START), len)])
}

/// Top of the RAM the boot payload (initrd, FDT) may use: the end of RAM,
/// but no higher than the 32 GiB window the initrd must share with the kernel.
fn boot_top(mem_size: u64) -> u64 {
    DRAM_START + mem_size.min(BOOT_WINDOW_SIZE)
}

/// Where the device tree goes: the highest 2 MiB aligned 2 MiB block of the
/// boot window. A block of its own keeps the blob out of any 2 MiB mapping
/// the kernel makes with other attributes, as the boot protocol asks.
pub fn fdt_addr(mem_size: u64) -> Result<GuestAddress> {
    let top = boot_top(mem_size) & !(FDT_MAX_SIZE - 1);
    let addr = top
        .checked_sub(FDT_MAX_SIZE)
        .ok_or(Error::MemorySize(mem_size))?;
    if addr < KERNEL_BASE {
        return Err(Error::MemorySize(mem_size));
    }
    Ok(GuestAddress(addr))
}

/// Where an initrd of `initrd_size` bytes goes: right below the FDT block,
/// [`INITRD_ALIGN`]ed, and above `kernel_end` (end of the kernel's memory
/// footprint, `text_offset + image_size` past the base).
pub fn initrd_addr(mem_size: u64, initrd_size: u64, kernel_end: u64) -> Result<GuestAddress> {
    let too_big = || Error::InitrdTooBig {
        size: initrd_size,
        mem_size,
    };
    let fdt = fdt_addr(mem_size)?.0;
    let start = fdt.checked_sub(initrd_size).ok_or_else(too_big)? & !(INITRD_ALIGN - 1);
    if start < kernel_end {
        return Err(too_big());
    }
    Ok(GuestAddress(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_region_at_dram_start() {
        let r = memory_regions(512 * MIB).unwrap();
        assert_eq!(r, vec![(GuestAddress(DRAM_START), (512 * MIB) as usize)]);
        assert!(memory_regions(MAX_MEMORY_SIZE).is_ok());
    }

    #[test]
    fn memory_size_bounds() {
        assert!(matches!(memory_regions(0), Err(Error::MemorySize(0))));
        assert!(memory_regions(MAX_MEMORY_SIZE + 4096).is_err());
        assert!(memory_regions(u64::MAX).is_err());
    }

    #[test]
    fn fdt_sits_at_top_of_ram_or_boot_window() {
        assert_eq!(fdt_addr(512 * MIB).unwrap().0, DRAM_START + 510 * MIB);
        // Not 2 MiB aligned RAM: rounded down to keep the block whole.
        assert_eq!(fdt_addr(17 * MIB).unwrap().0, DRAM_START + 14 * MIB);
        assert_eq!(
            fdt_addr(64 * GIB).unwrap().0,
            DRAM_START + 32 * GIB - 2 * MIB
        );
        assert!(fdt_addr(MIB).is_err());
    }

    #[test]
    fn initrd_below_fdt_and_above_kernel() {
        let mem = 512 * MIB;
        let fdt = fdt_addr(mem).unwrap().0;
        let initrd = initrd_addr(mem, 10 * MIB + 3, DRAM_START + 40 * MIB)
            .unwrap()
            .0;
        assert_eq!(initrd % INITRD_ALIGN, 0);
        assert!(initrd + 10 * MIB + 3 <= fdt);
        assert!(fdt - initrd < 10 * MIB + INITRD_ALIGN + 3);
        assert!(initrd_addr(mem, 500 * MIB, DRAM_START + 40 * MIB).is_err());
        assert!(initrd_addr(mem, u64::MAX, DRAM_START).is_err());
    }

    #[test]
    fn gic_redistributors_scale_with_vcpus() {
        for (n, size) in [(1, 0x2_0000), (2, 0x4_0000), (8, 0x10_0000)] {
            let gic = GicLayout::for_vcpus(n).unwrap();
            assert_eq!(gic.redist_size, size);
            assert_eq!(gic.dist_size, 0x1_0000);
        }
        assert!(GicLayout::for_vcpus(0).is_err());
        assert!(GicLayout::for_vcpus(GIC_MAX_VCPUS).is_ok());
        assert!(GicLayout::for_vcpus(GIC_MAX_VCPUS + 1).is_err());
    }

    #[test]
    fn mpidr_matches_kvm_assignment() {
        assert_eq!(kvm_mpidr(0), 0x8000_0000);
        assert_eq!(kvm_mpidr(15), 0x8000_000f);
        assert_eq!(kvm_mpidr(16), 0x8000_0100);
        assert_eq!(kvm_mpidr(253), 0x8000_0f0d);
        assert_eq!(mpidr_affinity(kvm_mpidr(17)), 0x101);
        assert_eq!(mpidr_affinity(0xab_c100_0203), 0xab_0000_0203);
    }

    #[test]
    fn devices_do_not_overlap() {
        let (first, _, spi0) = virtio_mmio_slot(0).unwrap();
        let (last, len, spi_last) = virtio_mmio_slot(VIRTIO_MMIO_SLOTS - 1).unwrap();
        assert!(virtio_mmio_slot(VIRTIO_MMIO_SLOTS).is_none());
        assert!(SERIAL_MMIO_ADDR + SERIAL_MMIO_LEN <= first.0);
        assert!(last.0 + len <= GIC_REDIST_ADDR);
        assert_ne!(spi0, SERIAL_IRQ);
        assert!(spi_last < GIC_NR_SPIS);
        assert_eq!(SERIAL_GSI, SERIAL_IRQ);
    }
}
