//! aarch64: GICv3, PSCI, FDT and Image loading.
//!
//! The generic VM code drives a boot in this order (see `crate::arch`):
//!
//! 1. [`memory_regions`]: one RAM region at [`layout::DRAM_START`].
//! 2. `setup_vm_pre_vcpus`: nothing; KVM wants the vGIC after the vCPUs.
//! 3. `setup_vm_post_vcpus`: KVM_ARM_VCPU_INIT on every vCPU (secondaries
//!    powered off), a check of their MPIDR_EL1, then the GICv3.
//! 4. `load_guest`: kernel Image, initrd, and the FDT built from the same
//!    MPIDRs and GIC layout.
//! 5. `configure_vcpu`: PC, X0 and PSTATE of the boot vCPU; secondaries are
//!    left for the guest's PSCI CPU_ON.
//!
//! Layout and FDT code is plain data and compiles (and is tested) on every
//! host; the parts that talk to KVM exist only on aarch64.

pub mod fdt;
pub mod image;
pub mod layout;
pub mod state;

#[cfg(target_arch = "aarch64")]
mod boot;
#[cfg(target_arch = "aarch64")]
pub mod gic;
#[cfg(target_arch = "aarch64")]
pub mod persist;
#[cfg(target_arch = "aarch64")]
pub mod regs;
#[cfg(target_arch = "aarch64")]
pub mod vcpu;

#[cfg(target_arch = "aarch64")]
pub use self::boot::{configure_vcpu, load_guest, setup_vm_post_vcpus, setup_vm_pre_vcpus, ArchVm};
pub use self::layout::{gsi_for_spi as virtio_gsi, memory_regions, virtio_mmio_slot, SERIAL_GSI};

use self::layout::{GIC_MAX_VCPUS, MAX_MEMORY_SIZE};

/// Longest command line, without its NUL, for the error message.
const MAX_BOOTARGS: usize = fdt::CMDLINE_MAX_LEN - 1;

/// Errors of the aarch64 boot path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("guest memory size {0:#x} is not between 1 byte and {MAX_MEMORY_SIZE:#x}, or too small to boot")]
    MemorySize(u64),
    #[error("{0} vCPUs requested; the GICv3 layout has room for 1 to {GIC_MAX_VCPUS}")]
    VcpuCount(usize),
    #[error("initrd of {size} bytes does not fit between the kernel and the device tree in {mem_size} bytes of RAM")]
    InitrdTooBig { size: u64, mem_size: u64 },
    #[error("kernel command line is {0} bytes; arm64 takes at most {MAX_BOOTARGS}")]
    CmdlineTooLong(usize),
    #[error("building the device tree: {0}")]
    Fdt(#[from] vm_fdt::Error),
    #[error("device tree is {0} bytes, over the 2 MiB the boot protocol allows")]
    FdtTooBig(usize),
    #[error("kernel is not an arm64 Image (no valid Image header)")]
    KernelHeader,
    #[error(
        "kernel is an x86 bzImage; an aarch64 VM boots an arm64 Image (arch/arm64/boot/Image)"
    )]
    KernelIsBzImage,
    #[error("kernel is an ELF file (a vmlinux?); an aarch64 VM boots an arm64 Image (arch/arm64/boot/Image, or a gunzipped vmlinuz)")]
    KernelIsElf,
    #[cfg(target_arch = "aarch64")]
    #[error("reading the kernel Image: {0}")]
    KernelRead(#[source] std::io::Error),
    #[cfg(target_arch = "aarch64")]
    #[error("loading the kernel Image: {0}")]
    KernelLoad(#[source] linux_loader::loader::Error),
    #[cfg(target_arch = "aarch64")]
    #[error("kernel Image does not fit below the device tree at {fdt:#x} (it ends at {end:#x})")]
    KernelTooBig { end: u64, fdt: u64 },
    #[cfg(target_arch = "aarch64")]
    #[error("reading the initrd: {0}")]
    InitrdRead(#[source] std::io::Error),
    #[cfg(target_arch = "aarch64")]
    #[error("copying the initrd into guest memory: {0}")]
    InitrdLoad(#[source] vm_memory::GuestMemoryError),
    #[cfg(target_arch = "aarch64")]
    #[error("writing the device tree into guest memory: {0}")]
    FdtWrite(#[source] vm_memory::GuestMemoryError),
    #[cfg(target_arch = "aarch64")]
    #[error("KVM_ARM_PREFERRED_TARGET: {0}")]
    PreferredTarget(#[source] kvm_ioctls::Error),
    #[cfg(target_arch = "aarch64")]
    #[error("KVM_ARM_VCPU_INIT of vCPU {index}: {source}")]
    VcpuInit {
        index: usize,
        source: kvm_ioctls::Error,
    },
    #[cfg(target_arch = "aarch64")]
    #[error("setting vCPU register {id:#x}: {source}")]
    SetReg { id: u64, source: kvm_ioctls::Error },
    #[cfg(target_arch = "aarch64")]
    #[error("reading vCPU register {id:#x}: {source}")]
    GetReg { id: u64, source: kvm_ioctls::Error },
    #[cfg(target_arch = "aarch64")]
    #[error("creating the in-kernel GICv3 (does the host have one?): {0}")]
    CreateGic(#[source] kvm_ioctls::Error),
    #[cfg(target_arch = "aarch64")]
    #[error("setting the GICv3 {what}: {source}")]
    GicAttr {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[cfg(target_arch = "aarch64")]
    #[error("vCPU {index} has MPIDR {found:#x}, the device tree assumes {expected:#x}")]
    MpidrMismatch {
        index: usize,
        expected: u64,
        found: u64,
    },
}

pub type Result<T> = std::result::Result<T, Error>;
