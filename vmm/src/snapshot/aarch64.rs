//! aarch64 snapshots: not yet (GICv3 and vCPU register state are the
//! migration issue's item 8). Building for aarch64 keeps the shape.

use serde::{Deserialize, Serialize};

use crate::vcpu::VcpuThreads;
use crate::vm::Vm;

use super::SnapshotError;

#[derive(Serialize, Deserialize)]
pub struct ArchState {}

#[derive(Serialize, Deserialize)]
pub struct VcpuState {}

const NOT_YET: &str = "snapshots of aarch64 VMs are not supported yet";

pub fn capture(_vm: &Vm, _t: &VcpuThreads) -> Result<(ArchState, Vec<VcpuState>), SnapshotError> {
    Err(SnapshotError::Arch(NOT_YET.into()))
}

pub fn apply(_vm: &Vm, _s: &ArchState, _v: &[VcpuState]) -> Result<(), SnapshotError> {
    Err(SnapshotError::Arch(NOT_YET.into()))
}
