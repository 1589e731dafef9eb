//! vCPU initialisation and boot registers.

use kvm_bindings::{kvm_vcpu_init, KVM_ARM_VCPU_POWER_OFF, KVM_ARM_VCPU_PSCI_0_2};
use kvm_ioctls::{VcpuFd, VmFd};
use vm_memory::GuestAddress;

use super::regs::{self, BOOT_PSTATE, MPIDR_EL1, PC, PSTATE, X0};
use super::{Error, Result};

/// The CPU model KVM emulates best on this host, asked once per VM.
pub fn preferred_target(vm: &VmFd) -> Result<kvm_vcpu_init> {
    let mut kvi = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut kvi)
        .map_err(Error::PreferredTarget)?;
    Ok(kvi)
}

/// Features vCPU `index` is initialised with: PSCI 0.2 so the guest can
/// start and stop CPUs through HVCs, and every vCPU but the boot one
/// powered off until the guest's PSCI CPU_ON.
pub fn vcpu_features(target: &kvm_vcpu_init, index: usize) -> kvm_vcpu_init {
    let mut kvi = *target;
    kvi.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
    if index > 0 {
        kvi.features[0] |= 1 << KVM_ARM_VCPU_POWER_OFF;
    }
    kvi
}

/// KVM_ARM_VCPU_INIT: resets the vCPU to the architectural reset state and
/// must precede any register access.
pub fn init(vcpu: &VcpuFd, target: &kvm_vcpu_init, index: usize) -> Result<()> {
    vcpu.vcpu_init(&vcpu_features(target, index))
        .map_err(|source| Error::VcpuInit { index, source })
}

/// MPIDR_EL1 of an initialised vCPU, which the FDT's cpu nodes must match.
pub fn read_mpidr(vcpu: &VcpuFd) -> Result<u64> {
    regs::get_u64(vcpu, MPIDR_EL1)
}

/// The arm64 boot protocol's entry state for the boot vCPU: PC at the
/// Image, X0 = FDT address. X1..X3 must be zero, which KVM_ARM_VCPU_INIT
/// already left them.
pub fn set_boot_regs(vcpu: &VcpuFd, entry: GuestAddress, fdt: GuestAddress) -> Result<()> {
    regs::set_u64(vcpu, PSTATE, BOOT_PSTATE)?;
    regs::set_u64(vcpu, PC, entry.0)?;
    regs::set_u64(vcpu, X0, fdt.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_secondaries_start_powered_off() {
        let target = kvm_vcpu_init {
            target: 5,
            ..Default::default()
        };
        let boot = vcpu_features(&target, 0);
        assert_eq!(boot.target, 5);
        assert_eq!(boot.features[0], 1 << 2);
        assert_eq!(vcpu_features(&target, 1).features[0], (1 << 2) | 1);
    }
}
