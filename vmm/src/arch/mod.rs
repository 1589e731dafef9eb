//! Architecture-specific pieces of the boot flow.
//!
//! Every architecture module exposes the same free functions, which
//! `crate::vm` calls in this order:
//!
//! 1. `memory_regions(size)` — where guest RAM lives in the guest physical
//!    address space (x86_64 splits it around the 32-bit MMIO hole).
//! 2. `setup_vm_pre_vcpus(&VmFd)` — interrupt controllers that must exist
//!    before vCPUs (x86_64: in-kernel IOAPIC/PIC and PIT).
//! 3. `setup_vm_post_vcpus(&VmFd, &[VcpuFd])` — ones that must come after
//!    (aarch64: the GICv3).
//! 4. `load_guest(&mem, &BootSources, &[MmioDeviceInfo], vcpu_count)` — kernel,
//!    initrd, command line and the firmware tables the guest reads (x86_64: MP
//!    table, e820, boot_params or PVH start_info; aarch64: the FDT).
//! 5. `configure_vcpu(&VmFd, &VcpuFd, index, count, &BootEntry, &mem)` — the
//!    register state each vCPU starts from.

use std::fs::File;

use vm_memory::GuestAddress;

pub mod aarch64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

#[cfg(target_arch = "aarch64")]
pub use self::aarch64 as current;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64 as current;

/// What the guest is booted from; files are opened (and so checked) by the caller.
pub struct BootSources {
    pub kernel: File,
    pub initrd: Option<File>,
    pub cmdline: String,
}

/// Kind of a memory-mapped device, so firmware tables can describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioDeviceKind {
    /// A 16550-compatible UART (aarch64 serial console).
    Serial,
    /// A virtio-mmio transport.
    VirtioMmio,
}

/// A memory-mapped device the firmware tables (FDT, kernel command line) announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioDeviceInfo {
    pub kind: MmioDeviceKind,
    pub addr: GuestAddress,
    pub len: u64,
    /// Interrupt line as the guest numbers it (x86_64: GSI; aarch64: SPI number).
    pub irq: u32,
}

/// Where and how the boot vCPU enters the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootEntry {
    pub entry: GuestAddress,
    pub protocol: BootProtocol,
    /// Address of the boot information block the protocol hands over
    /// (x86_64: boot_params or hvm_start_info; aarch64: the FDT).
    pub boot_info: GuestAddress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// x86_64 Linux 64-bit boot protocol: long mode, paging on, RSI = boot_params.
    Linux64,
    /// x86_64 PVH: 32-bit protected mode, paging off, EBX = hvm_start_info.
    Pvh,
    /// aarch64 Linux arm64 boot protocol: X0 = FDT address, MMU off.
    Arm64Image,
}
