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

pub use self::layout::memory_regions;

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
}

pub type Result<T> = std::result::Result<T, Error>;
