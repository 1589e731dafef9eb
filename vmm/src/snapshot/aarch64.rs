//! The aarch64 pieces of a snapshot: each vCPU's registers and run state
//! (saved by its own parked thread), then the GICv3's state. On restore
//! the vCPUs come first (their MPIDRs address the redistributors), then
//! the distributor, the redistributors and the CPU interfaces
//! (`arch::aarch64::persist`).

use crate::arch::aarch64::persist;
use crate::vcpu::Vcpu;
use crate::vm::Vm;

use super::SnapshotError;

pub use crate::arch::aarch64::state::{GicState as ArchState, VcpuState};

fn arch_err(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Arch(e.to_string())
}

/// What each vCPU thread runs, parked, to read its own vCPU's registers
/// (`VcpuThreads::on_each_parked` or `pause_with`).
pub fn vcpu_saver(
    vm: &Vm,
) -> Result<impl Fn(&Vcpu) -> Result<VcpuState, String> + Send + Sync + 'static, SnapshotError> {
    let mpidrs = vm.arch_vm.mpidrs.clone();
    Ok(move |vcpu: &Vcpu| {
        let mpidr = mpidrs
            .get(usize::from(vcpu.index))
            .copied()
            .unwrap_or_default();
        persist::save_vcpu(&vcpu.fd, mpidr).map_err(|e| e.to_string())
    })
}

/// The GIC's state, after the vCPUs' (the vGIC takes every vCPU's lock
/// for its redistributor and CPU interface registers).
pub fn save_vm(vm: &Vm) -> Result<ArchState, SnapshotError> {
    persist::save_gic(&vm.arch_vm.gic, &vm.arch_vm.mpidrs).map_err(arch_err)
}

/// vCPU registers and run states, then the GIC, into a VM that has not run.
pub fn apply(vm: &Vm, gic: &ArchState, vcpus: &[VcpuState]) -> Result<(), SnapshotError> {
    persist::check_vcpus(vcpus, &vm.arch_vm.mpidrs).map_err(arch_err)?;
    for (vcpu, saved) in vm.unstarted_vcpus().iter().zip(vcpus) {
        persist::restore_vcpu(&vcpu.fd, saved).map_err(arch_err)?;
    }
    persist::restore_gic(&vm.arch_vm.gic, gic).map_err(arch_err)
}
