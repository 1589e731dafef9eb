//! CPUID as each vCPU sees it.
//!
//! KVM_GET_SUPPORTED_CPUID describes the host; a guest needs a per-vCPU view:
//! its own APIC id, a topology that matches the vCPU count (one core per
//! vCPU, one package), and the hypervisor bit so the guest uses paravirtual
//! clocks and does not trust its idea of caches or power states.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_POWER_MGMT: u32 = 0x6;
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_V2_EXT_TOPOLOGY: u32 = 0x1f;
const LEAF_AMD_SIZE_IDS: u32 = 0x8000_0008;
const LEAF_AMD_EXT_APIC_ID: u32 = 0x8000_001e;

const ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 6 EAX: the LAPIC timer keeps running in every idle state.
const EAX_ARAT: u32 = 1 << 2;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;
/// Level types in leaf 0xB/0x1F ECX[15:8].
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

/// Number of APIC-id bits needed to number `count` vCPUs.
fn id_bits(count: u8) -> u32 {
    u32::from(count).next_power_of_two().trailing_zeros()
}

fn set_bits(reg: &mut u32, shift: u32, width: u32, value: u32) {
    let mask = ((1u64 << width) - 1) as u32;
    *reg = (*reg & !(mask << shift)) | ((value & mask) << shift);
}

fn normalize_entry(e: &mut kvm_cpuid_entry2, index: u8, count: u8) {
    let apic_id = u32::from(index);
    match e.function {
        LEAF_FEATURES => {
            set_bits(&mut e.ebx, 24, 8, apic_id);
            set_bits(&mut e.ebx, 16, 8, u32::from(count));
            e.ecx |= ECX_HYPERVISOR;
            if count > 1 {
                e.edx |= EDX_HTT;
            } else {
                e.edx &= !EDX_HTT;
            }
        }
        LEAF_CACHE_PARAMS => {
            // Cores per package - 1, and each cache private to a core.
            set_bits(&mut e.eax, 26, 6, u32::from(count) - 1);
            set_bits(&mut e.eax, 14, 12, 0);
        }
        LEAF_POWER_MGMT => {
            // No thermal or power-management MSRs are emulated. ARAT stays
            // as KVM reports it (its LAPIC timer is an hrtimer, never
            // stopped by an idle state), as Firecracker, Cloud Hypervisor
            // and QEMU leave it: without it Linux marks every LAPIC timer
            // as stopping in deep idle, keeps the PIT running as the tick
            // broadcast device and tests the timer interrupt through it at
            // boot (`apic_needs_pit`, `check_timer`).
            e.eax &= EAX_ARAT;
            e.ecx &= !1;
        }
        LEAF_EXT_TOPOLOGY | LEAF_V2_EXT_TOPOLOGY => topology_level(e, apic_id, count),
        LEAF_AMD_SIZE_IDS => {
            set_bits(&mut e.ecx, 0, 8, u32::from(count) - 1);
            set_bits(&mut e.ecx, 12, 4, id_bits(count));
        }
        LEAF_AMD_EXT_APIC_ID => {
            e.eax = apic_id;
            e.ebx = apic_id & 0xff;
            e.ecx = 0;
        }
        _ => {}
    }
}

/// Leaf 0xB/0x1F: level 0 is SMT (one thread per core), level 1 the cores.
fn topology_level(e: &mut kvm_cpuid_entry2, apic_id: u32, count: u8) {
    e.edx = apic_id;
    match e.index {
        0 => {
            e.eax = 0;
            e.ebx = 1;
            e.ecx = (LEVEL_SMT << 8) | e.index;
        }
        1 => {
            e.eax = id_bits(count);
            e.ebx = u32::from(count);
            e.ecx = (LEVEL_CORE << 8) | e.index;
        }
        _ => {
            e.eax = 0;
            e.ebx = 0;
            e.ecx = e.index;
        }
    }
}

/// What KVM emulates without listing it in KVM_GET_SUPPORTED_CPUID, which
/// describes the host CPU: features the VMM must add when KVM says so.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvmEmulated {
    /// KVM_CAP_TSC_DEADLINE_TIMER: the in-kernel LAPIC's TSC-deadline mode.
    pub tsc_deadline: bool,
}

/// Adds what KVM emulates to the host's CPUID, once per VM.
///
/// TSC deadline (leaf 1 ECX bit 24), as Firecracker, Cloud Hypervisor and
/// QEMU set it: without it Linux calibrates its LAPIC timer against the PIT
/// at boot (0.25 s in the rig) and then programs the timer through the
/// LAPIC's MMIO registers instead of one MSR.
pub fn add_kvm_emulated(cpuid: &mut CpuId, emulated: KvmEmulated) {
    for e in cpuid.as_mut_slice() {
        if e.function == LEAF_FEATURES && emulated.tsc_deadline {
            e.ecx |= ECX_TSC_DEADLINE;
        }
    }
}

/// Returns `supported` adjusted for vCPU `index` of `count`.
pub fn for_vcpu(supported: &CpuId, index: u8, count: u8) -> CpuId {
    let mut cpuid = supported.clone();
    for entry in cpuid.as_mut_slice() {
        normalize_entry(entry, index, count);
    }
    cpuid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ebx: 0xdead_0800,
            ..Default::default()
        }
    }

    #[test]
    fn leaf1_carries_apic_id_count_and_hypervisor_bit() {
        let mut e = leaf(1, 0);
        normalize_entry(&mut e, 5, 8);
        assert_eq!(e.ebx >> 24, 5);
        assert_eq!((e.ebx >> 16) & 0xff, 8);
        assert_eq!(e.ebx & 0xffff, 0x0800, "CLFLUSH size kept");
        assert_ne!(e.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(e.edx & EDX_HTT, 0);
    }

    #[test]
    fn topology_leaf_describes_one_package() {
        let mut smt = leaf(0xb, 0);
        let mut core = leaf(0xb, 1);
        normalize_entry(&mut smt, 3, 6);
        normalize_entry(&mut core, 3, 6);
        assert_eq!((smt.ebx, smt.edx), (1, 3));
        assert_eq!((core.eax, core.ebx, core.edx), (3, 6, 3));
        assert_eq!(core.ecx >> 8, LEVEL_CORE);
    }

    #[test]
    fn tsc_deadline_is_added_when_kvm_emulates_it() {
        let mut cpuid = CpuId::from_entries(&[leaf(1, 0), leaf(7, 0)]).unwrap();
        add_kvm_emulated(&mut cpuid, KvmEmulated::default());
        assert_eq!(cpuid.as_slice()[0].ecx & ECX_TSC_DEADLINE, 0);
        add_kvm_emulated(&mut cpuid, KvmEmulated { tsc_deadline: true });
        assert_ne!(cpuid.as_slice()[0].ecx & ECX_TSC_DEADLINE, 0);
        assert_eq!(cpuid.as_slice()[1].ecx, 0, "other leaves untouched");
    }

    #[test]
    fn power_leaf_keeps_only_arat() {
        let mut e = kvm_cpuid_entry2 {
            function: LEAF_POWER_MGMT,
            eax: EAX_ARAT | 0b11,
            ecx: 0b1001,
            ..Default::default()
        };
        normalize_entry(&mut e, 0, 1);
        assert_eq!((e.eax, e.ecx), (EAX_ARAT, 0b1000));
        e.eax = 0b11;
        normalize_entry(&mut e, 0, 1);
        assert_eq!(e.eax, 0, "ARAT is not invented when KVM does not report it");
    }

    #[test]
    fn id_bits_cover_the_count() {
        assert_eq!(id_bits(1), 0);
        assert_eq!(id_bits(2), 1);
        assert_eq!(id_bits(5), 3);
        assert_eq!(id_bits(8), 3);
    }
}
