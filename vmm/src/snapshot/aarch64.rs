//! The aarch64 pieces of a snapshot: each vCPU's registers and run state
//! (saved by its own parked thread), then the GICv3's state. On restore
//! the vCPUs come first (their MPIDRs address the redistributors), then
//! the distributor, the redistributors and the CPU interfaces
//! (`arch::aarch64::persist`).

use crate::arch::aarch64::persist;
use crate::vcpu::VcpuThreads;
use crate::vm::Vm;

use super::SnapshotError;

pub use crate::arch::aarch64::state::{GicState as ArchState, VcpuState};

fn arch_err(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Arch(e.to_string())
}

/// vCPU and GIC state; the vCPU threads are parked.
pub fn capture(
    vm: &Vm,
    threads: &VcpuThreads,
) -> Result<(ArchState, Vec<VcpuState>), SnapshotError> {
    let mpidrs = vm.arch_vm.mpidrs.clone();
    let vcpus = threads
        .on_each_parked(move |vcpu| {
            let mpidr = mpidrs
                .get(usize::from(vcpu.index))
                .copied()
                .unwrap_or_default();
            persist::save_vcpu(&vcpu.fd, mpidr)
        })
        .map_err(SnapshotError::Arch)?
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(arch_err)?;
    // After the vCPU work: the vGIC takes every vCPU's lock for its
    // redistributor and CPU interface registers.
    let gic = persist::save_gic(&vm.arch_vm.gic, &vm.arch_vm.mpidrs).map_err(arch_err)?;
    Ok((gic, vcpus))
}

/// vCPU registers and run states, then the GIC, into a VM that has not run.
pub fn apply(vm: &Vm, gic: &ArchState, vcpus: &[VcpuState]) -> Result<(), SnapshotError> {
    persist::check_vcpus(vcpus, &vm.arch_vm.mpidrs).map_err(arch_err)?;
    for (vcpu, saved) in vm.unstarted_vcpus().iter().zip(vcpus) {
        persist::restore_vcpu(&vcpu.fd, saved).map_err(arch_err)?;
    }
    persist::restore_gic(&vm.arch_vm.gic, gic).map_err(arch_err)
}
