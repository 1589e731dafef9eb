//! The x86_64 pieces of a snapshot: the VM-wide KVM state and each vCPU's,
//! and the check that this host's CPU can run the saved vCPUs.

use crate::arch::x86_64::vm_state;
use crate::vcpu::{state, Vcpu};
use crate::vm::Vm;

use super::SnapshotError;

pub use crate::arch::x86_64::vm_state::VmState as ArchState;
pub use crate::vcpu::state::VcpuState;

fn arch_err(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Arch(e.to_string())
}

/// What each vCPU thread runs, parked, to read its own vCPU's state
/// (`VcpuThreads::on_each_parked` or `pause_with`).
pub fn vcpu_saver(
    vm: &Vm,
) -> Result<impl Fn(&Vcpu) -> Result<VcpuState, String> + Send + Sync + 'static, SnapshotError> {
    let msrs = state::saved_msr_indices(vm.kvm()).map_err(arch_err)?;
    let given = crate::devices::bus::lock(&vm.cpuid).clone();
    Ok(move |vcpu: &Vcpu| {
        let cpuid = given
            .get(usize::from(vcpu.index))
            .cloned()
            .unwrap_or_default();
        state::save(&vcpu.fd, &msrs, cpuid).map_err(|e| e.to_string())
    })
}

/// The VM-wide state (PIC, IOAPIC, PIT, clock), once every vCPU is
/// parked and the device workers are.
pub fn save_vm(vm: &Vm) -> Result<ArchState, SnapshotError> {
    vm_state::save(vm.vm_fd()).map_err(arch_err)
}

/// Refuses vCPUs this host cannot run, then sets the VM's and the vCPUs'
/// state (before the vCPU threads start).
pub fn apply(vm: &Vm, vm_state: &ArchState, vcpus: &[VcpuState]) -> Result<(), SnapshotError> {
    let built = vm.unstarted_vcpus();
    if built.len() != vcpus.len() {
        return Err(SnapshotError::Arch(format!(
            "the snapshot has {} vCPUs, the VM {}",
            vcpus.len(),
            built.len()
        )));
    }
    let host = crate::arch::x86_64::supported_cpuid(vm.kvm()).map_err(arch_err)?;
    if let Some(saved) = vcpus.first() {
        let missing = state::cpuid_missing(&saved.cpuid, host.as_slice());
        if !missing.is_empty() {
            return Err(SnapshotError::Cpuid(missing.join(", ")));
        }
    }
    vm_state::restore(vm.vm_fd(), vm_state).map_err(arch_err)?;
    let preset = std::mem::take(&mut *crate::devices::bus::lock(&vm.cpuid));
    for (i, (vcpu, saved)) in built.iter().zip(vcpus).enumerate() {
        let has_cpuid = preset.get(i).is_some_and(|given| *given == saved.cpuid);
        state::restore(&vcpu.fd, saved, has_cpuid).map_err(arch_err)?;
    }
    *crate::devices::bus::lock(&vm.cpuid) = vcpus.iter().map(|v| v.cpuid.clone()).collect();
    Ok(())
}
