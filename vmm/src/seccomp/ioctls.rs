//! The ioctl request numbers each thread may issue, computed the way the
//! kernel's `_IO`/`_IOR`/`_IOW`/`_IOWR` macros do (kvm-ioctls keeps its own
//! private). Filters compare the request (the second argument) with these.

// libc types requests as c_ulong on glibc and c_int on musl: the casts are
// needed on one of them.
#![allow(clippy::unnecessary_cast)]

use std::mem::size_of;

#[cfg(target_arch = "x86_64")]
use kvm_bindings::*;

const KVMIO: u64 = 0xAE;

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}
const fn io(nr: u64) -> u64 {
    ioc(0, nr, 0)
}
const fn iow(nr: u64, size: usize) -> u64 {
    ioc(1, nr, size)
}
const fn ior(nr: u64, size: usize) -> u64 {
    ioc(2, nr, size)
}
const fn iowr(nr: u64, size: usize) -> u64 {
    ioc(3, nr, size)
}

// /dev/kvm.
const KVM_GET_API_VERSION: u64 = io(0x00);
const KVM_CREATE_VM: u64 = io(0x01);
const KVM_CHECK_EXTENSION: u64 = io(0x03);
const KVM_GET_VCPU_MMAP_SIZE: u64 = io(0x04);
// VM fd.
const KVM_CREATE_VCPU: u64 = io(0x41);
const KVM_GET_DIRTY_LOG: u64 = iow(0x42, size_of::<kvm_bindings::kvm_dirty_log>());
const KVM_SET_USER_MEMORY_REGION: u64 =
    iow(0x46, size_of::<kvm_bindings::kvm_userspace_memory_region>());
const KVM_IRQFD: u64 = iow(0x76, size_of::<kvm_bindings::kvm_irqfd>());
const KVM_IOEVENTFD: u64 = iow(0x79, size_of::<kvm_bindings::kvm_ioeventfd>());
const KVM_CREATE_DEVICE: u64 = iowr(0xe0, size_of::<kvm_bindings::kvm_create_device>());
const KVM_SET_DEVICE_ATTR: u64 = iow(0xe1, size_of::<kvm_bindings::kvm_device_attr>());
const KVM_GET_DEVICE_ATTR: u64 = iow(0xe2, size_of::<kvm_bindings::kvm_device_attr>());
const KVM_HAS_DEVICE_ATTR: u64 = iow(0xe3, size_of::<kvm_bindings::kvm_device_attr>());
// vCPU fd.
const KVM_RUN: u64 = io(0x80);
const KVM_GET_MP_STATE: u64 = ior(0x98, size_of::<kvm_bindings::kvm_mp_state>());
const KVM_SET_MP_STATE: u64 = iow(0x99, size_of::<kvm_bindings::kvm_mp_state>());

// Terminal and non-blocking mode (stdio console, sockets).
const TTY: [u64; 6] = [
    libc::TCGETS as u64,
    libc::TCSETS as u64,
    libc::TCSETSW as u64,
    libc::TCSETSF as u64,
    libc::TIOCGWINSZ as u64,
    libc::FIONBIO as u64,
];
/// The offloads the driver accepted, set on the tap when it acks features
/// (on the vCPU thread that writes the register) and at each reset.
const TUNSETOFFLOAD: u64 = libc::TUNSETOFFLOAD as u64;

#[cfg(target_arch = "x86_64")]
mod arch {
    use super::*;

    pub const KVM_GET_MSR_INDEX_LIST: u64 = iowr(0x02, size_of::<kvm_msr_list>());
    pub const KVM_GET_SUPPORTED_CPUID: u64 = iowr(0x05, size_of::<kvm_cpuid2>());
    pub const SYSTEM: [u64; 2] = [KVM_GET_MSR_INDEX_LIST, KVM_GET_SUPPORTED_CPUID];

    pub const VM: [u64; 10] = [
        io(0x47),                               // KVM_SET_TSS_ADDR
        iow(0x48, size_of::<u64>()),            // KVM_SET_IDENTITY_MAP_ADDR
        io(0x60),                               // KVM_CREATE_IRQCHIP
        iowr(0x62, size_of::<kvm_irqchip>()),   // KVM_GET_IRQCHIP
        ior(0x63, size_of::<kvm_irqchip>()),    // KVM_SET_IRQCHIP
        iow(0x77, size_of::<kvm_pit_config>()), // KVM_CREATE_PIT2
        iow(0x7b, size_of::<kvm_clock_data>()), // KVM_SET_CLOCK
        ior(0x7c, size_of::<kvm_clock_data>()), // KVM_GET_CLOCK
        ior(0x9f, size_of::<kvm_pit_state2>()), // KVM_GET_PIT2
        iow(0xa0, size_of::<kvm_pit_state2>()), // KVM_SET_PIT2
    ];

    /// Read by a parked vCPU thread saving its own state.
    pub const VCPU_GET: [u64; 12] = [
        ior(0x81, size_of::<kvm_regs>()),        // KVM_GET_REGS
        ior(0x83, size_of::<kvm_sregs>()),       // KVM_GET_SREGS
        iowr(0x88, size_of::<kvm_msrs>()),       // KVM_GET_MSRS
        ior(0x8c, size_of::<kvm_fpu>()),         // KVM_GET_FPU
        ior(0x8e, size_of::<kvm_lapic_state>()), // KVM_GET_LAPIC
        ior(0x9f, size_of::<kvm_vcpu_events>()), // KVM_GET_VCPU_EVENTS
        ior(0xa1, size_of::<kvm_debugregs>()),   // KVM_GET_DEBUGREGS
        ior(0xa4, size_of::<kvm_xsave>()),       // KVM_GET_XSAVE
        ior(0xcf, size_of::<kvm_xsave>()),       // KVM_GET_XSAVE2
        ior(0xa6, size_of::<kvm_xcrs>()),        // KVM_GET_XCRS
        io(0xa3),                                // KVM_GET_TSC_KHZ
        iowr(0x91, size_of::<kvm_cpuid2>()),     // KVM_GET_CPUID2
    ];

    /// Set by the main thread while it builds or restores vCPUs.
    pub const VCPU_SET: [u64; 13] = [
        iow(0x82, size_of::<kvm_regs>()),        // KVM_SET_REGS
        iow(0x84, size_of::<kvm_sregs>()),       // KVM_SET_SREGS
        iow(0x89, size_of::<kvm_msrs>()),        // KVM_SET_MSRS
        iow(0x8d, size_of::<kvm_fpu>()),         // KVM_SET_FPU
        iow(0x8f, size_of::<kvm_lapic_state>()), // KVM_SET_LAPIC
        iow(0x90, size_of::<kvm_cpuid2>()),      // KVM_SET_CPUID2
        iow(0xa0, size_of::<kvm_vcpu_events>()), // KVM_SET_VCPU_EVENTS
        iow(0xa2, size_of::<kvm_debugregs>()),   // KVM_SET_DEBUGREGS
        iow(0xa5, size_of::<kvm_xsave>()),       // KVM_SET_XSAVE
        iow(0xa7, size_of::<kvm_xcrs>()),        // KVM_SET_XCRS
        io(0xa2),                                // KVM_SET_TSC_KHZ
        ior(0x8e, size_of::<kvm_lapic_state>()), // KVM_GET_LAPIC (boot LINT setup)
        ior(0x83, size_of::<kvm_sregs>()),       // KVM_GET_SREGS (boot segments)
    ];
}

#[cfg(target_arch = "aarch64")]
mod arch {
    use super::*;
    use kvm_bindings::{kvm_one_reg, kvm_reg_list, kvm_vcpu_init};

    pub const SYSTEM: [u64; 0] = [];
    pub const VM: [u64; 1] = [ior(0xaf, size_of::<kvm_vcpu_init>())]; // KVM_ARM_PREFERRED_TARGET
    pub const VCPU_GET: [u64; 2] = [
        iow(0xab, size_of::<kvm_one_reg>()),   // KVM_GET_ONE_REG
        iowr(0xb0, size_of::<kvm_reg_list>()), // KVM_GET_REG_LIST
    ];
    pub const VCPU_SET: [u64; 2] = [
        iow(0xac, size_of::<kvm_one_reg>()),   // KVM_SET_ONE_REG
        iow(0xae, size_of::<kvm_vcpu_init>()), // KVM_ARM_VCPU_INIT
    ];
}

/// A vCPU thread: running, saving its own state when parked, and what
/// its MMIO and port writes reach (the tap's offloads).
pub fn vcpu() -> Vec<u64> {
    let mut v = vec![KVM_RUN, KVM_GET_MP_STATE, TUNSETOFFLOAD];
    v.extend(arch::VCPU_GET);
    v
}

/// The migration source: dirty logging and the dirty bitmap.
pub fn migrate() -> Vec<u64> {
    vec![
        KVM_GET_DIRTY_LOG,
        KVM_SET_USER_MEMORY_REGION,
        KVM_CHECK_EXTENSION,
        FIONBIO,
    ]
}

/// The main thread: building a VM on reboot (every create and set call),
/// capturing a snapshot's VM-wide state, the terminal.
pub fn main() -> Vec<u64> {
    let mut v = vec![
        KVM_GET_API_VERSION,
        KVM_CREATE_VM,
        KVM_CHECK_EXTENSION,
        KVM_GET_VCPU_MMAP_SIZE,
        KVM_CREATE_VCPU,
        KVM_SET_USER_MEMORY_REGION,
        KVM_IRQFD,
        KVM_IOEVENTFD,
        KVM_CREATE_DEVICE,
        KVM_SET_DEVICE_ATTR,
        KVM_GET_DEVICE_ATTR,
        KVM_HAS_DEVICE_ATTR,
        KVM_SET_MP_STATE,
        TUNSETOFFLOAD,
    ];
    v.extend(arch::SYSTEM);
    v.extend(arch::VM);
    v.extend(arch::VCPU_SET);
    v.extend(TTY);
    v
}

/// Non-blocking mode on accepted sockets.
pub const FIONBIO: u64 = libc::FIONBIO as u64;

#[cfg(test)]
mod tests {
    use super::*;

    /// Spot checks against the numbers in linux/kvm.h.
    #[test]
    fn request_numbers_match_the_kernel() {
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_CREATE_VM, 0xae01);
        assert_eq!(KVM_SET_USER_MEMORY_REGION, 0x4020_ae46);
        assert_eq!(KVM_IRQFD, 0x4020_ae76);
        assert_eq!(KVM_GET_DIRTY_LOG, 0x4010_ae42);
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(arch::VCPU_GET[0], 0x8090_ae81); // KVM_GET_REGS
            assert_eq!(arch::VCPU_SET[5], 0x4008_ae90); // KVM_SET_CPUID2
        }
    }
}
