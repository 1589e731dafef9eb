//! Snapshots: a paused VM's whole state in a directory, and a VM built
//! again from one (`vireo-vmm --restore DIR`).
//!
//! `state.json` holds a versioned [`VmSnapshot`]: the VM's description (so
//! the same devices are built again), the VM-wide KVM state, every vCPU's
//! and every device's. `memory` holds guest RAM, region after region,
//! sparse: pages the guest never touched and pages of zeros are holes.
//! Disks are not copied: their images are the disks of the restored VM, as
//! they are at the snapshot (flushed) or as the user keeps them.
//!
//! The same pieces travel in a migration (`migration/`).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::config::VmConfig;
use crate::device_manager::persist::{DevicesError, DevicesState};
use crate::memory::pages;
use crate::vm::Vm;

pub mod binary;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
use x86_64 as arch;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
use aarch64 as arch;

pub use arch::{ArchState, VcpuState};

/// What `state.json` says it is.
pub const FORMAT: &str = "vireo-vm-state";
/// Bumped whenever a saved field changes meaning or shape; a snapshot of
/// another version is refused (never resumed into a crash).
pub const VERSION: u32 = 1;
const STATE_FILE: &str = "state.json";
const MEMORY_FILE: &str = "memory";

#[derive(Serialize, Deserialize)]
pub struct VmSnapshot {
    pub format: String,
    pub version: u32,
    pub arch: String,
    /// The vireo-vmm that wrote it (for people; not checked).
    pub written_by: String,
    /// The VM's description, with each NIC's MAC made explicit.
    #[serde(with = "binary::config_text")]
    pub config: VmConfig,
    /// (guest address, length) of each RAM region.
    pub memory: Vec<(u64, u64)>,
    pub vm: ArchState,
    pub vcpus: Vec<VcpuState>,
    pub devices: DevicesState,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("'{0}': {1}")]
    Io(PathBuf, std::io::Error),
    #[error("the VM is not paused: pause it first (PUT /vm/pause)")]
    NotPaused,
    #[error("{0}")]
    Arch(String),
    #[error(transparent)]
    Devices(#[from] DevicesError),
    #[error("'{path}' is not a Vireo snapshot: {why}")]
    NotASnapshot { path: PathBuf, why: String },
    #[error(
        "'{path}' is a snapshot of version {found}; this vireo-vmm reads version {VERSION} only"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("the snapshot is of an {found} VM; this is {}", std::env::consts::ARCH)]
    WrongArch { found: String },
    #[error("this host cannot run the snapshot's vCPUs: its CPU lacks {0}")]
    Cpuid(String),
    #[error("the snapshot's memory layout {saved:?} does not match the VM's {built:?}")]
    Layout {
        saved: Vec<(u64, u64)>,
        built: Vec<(u64, u64)>,
    },
    #[error("the directory '{0}' is not empty; a snapshot needs a new or empty one")]
    NotEmpty(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |e| SnapshotError::Io(path.to_path_buf(), e)
}

/// The guest RAM layout of `vm`.
pub fn layout(vm: &Vm) -> Vec<(u64, u64)> {
    layout_of(vm.memory())
}

/// (guest address, length) of each region of `ram`.
pub fn layout_of(ram: &crate::memory::GuestRam) -> Vec<(u64, u64)> {
    ram.iter().map(|r| (r.start_addr().0, r.len())).collect()
}

/// The whole state of a paused VM. `config` describes it; `macs` are its
/// NICs' addresses, written into the saved description.
pub fn capture(vm: &Vm, config: &VmConfig, macs: &[[u8; 6]]) -> Result<VmSnapshot, SnapshotError> {
    let threads = vm.threads().ok_or(SnapshotError::NotPaused)?;
    if !threads.all_parked() {
        return Err(SnapshotError::NotPaused);
    }
    let vcpus = threads.on_each_parked(arch::vcpu_saver(vm)?);
    assemble(vm, config, macs, vcpus)
}

/// Pauses the running VM and captures it (a migration's switch-over):
/// each vCPU thread reads its own state as it parks (`Vm::pause_with`).
/// Also returns when the guest stopped: the last vCPU thread to park.
/// On an error the VM is left paused.
pub fn pause_and_capture(
    vm: &Vm,
    config: &VmConfig,
    macs: &[[u8; 6]],
) -> Result<(VmSnapshot, Instant), SnapshotError> {
    let save = arch::vcpu_saver(vm)?;
    let timed = vm.pause_with(move |vcpu| (Instant::now(), save(vcpu)));
    let stopped = timed
        .as_ref()
        .ok()
        .and_then(|all| all.iter().map(|(at, _)| *at).max())
        .unwrap_or_else(Instant::now);
    let vcpus = timed.map(|all| all.into_iter().map(|(_, state)| state).collect());
    Ok((assemble(vm, config, macs, vcpus)?, stopped))
}

/// The snapshot of a paused VM whose vCPUs' states are `vcpus`.
fn assemble(
    vm: &Vm,
    config: &VmConfig,
    macs: &[[u8; 6]],
    vcpus: Result<Vec<Result<arch::VcpuState, String>>, String>,
) -> Result<VmSnapshot, SnapshotError> {
    let vcpus = vcpus
        .and_then(|all| all.into_iter().collect::<Result<Vec<_>, _>>())
        .map_err(SnapshotError::Arch)?;
    let mut config = config.clone();
    for (net, mac) in config.nets.iter_mut().zip(macs) {
        net.mac = Some(crate::config::net::MacAddr(*mac));
    }
    Ok(VmSnapshot {
        format: FORMAT.to_string(),
        version: VERSION,
        arch: std::env::consts::ARCH.to_string(),
        written_by: format!("vireo-vmm {}", env!("CARGO_PKG_VERSION")),
        config,
        memory: layout(vm),
        vm: arch::save_vm(vm)?,
        vcpus,
        devices: vm.devices.save()?,
    })
}

/// Checks that `snap` can run here, then puts a freshly built, not yet
/// started VM into its state (memory already loaded).
pub fn apply(vm: &Vm, snap: &VmSnapshot) -> Result<(), SnapshotError> {
    let built = layout(vm);
    if built != snap.memory {
        return Err(SnapshotError::Layout {
            saved: snap.memory.clone(),
            built,
        });
    }
    arch::apply(vm, &snap.vm, &snap.vcpus)?;
    vm.devices.restore(&snap.devices)?;
    Ok(())
}

/// Writes `snap` and the VM's memory into `dir` (created if missing; it
/// must be empty). The state file is written last, under a temporary name
/// renamed into place: a directory without `state.json` is no snapshot.
/// Returns the bytes of memory written.
pub fn write(dir: &Path, snap: &VmSnapshot, vm: &Vm) -> Result<u64, SnapshotError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    if fs::read_dir(dir).map_err(io_err(dir))?.next().is_some() {
        return Err(SnapshotError::NotEmpty(dir.to_path_buf()));
    }
    let mem_path = dir.join(MEMORY_FILE);
    let file = File::create(&mem_path).map_err(io_err(&mem_path))?;
    let touched = pages::touched(vm.memory()).map_err(io_err(&mem_path))?;
    let written = pages::write_file(vm.memory(), &touched, &file).map_err(io_err(&mem_path))?;
    file.sync_all().map_err(io_err(&mem_path))?;
    let state_path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let json = serde_json::to_vec(snap).map_err(|e| io_err(&tmp)(e.into()))?;
    let mut out = File::create(&tmp).map_err(io_err(&tmp))?;
    out.write_all(&json)
        .and_then(|()| out.sync_all())
        .map_err(io_err(&tmp))?;
    fs::rename(&tmp, &state_path).map_err(io_err(&state_path))?;
    Ok(written)
}

/// Reads and checks `dir/state.json`: format, version, architecture.
pub fn read(dir: &Path) -> Result<VmSnapshot, SnapshotError> {
    let path = dir.join(STATE_FILE);
    let bytes = fs::read(&path).map_err(io_err(&path))?;
    check_header(&path, &bytes)?;
    serde_json::from_slice(&bytes).map_err(|e| SnapshotError::NotASnapshot {
        path,
        why: e.to_string(),
    })
}

/// The format, version and architecture, read before the rest so that a
/// snapshot of another version is named as such rather than failing on
/// whichever field changed.
pub fn check_header(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    #[derive(Deserialize)]
    struct Header {
        format: String,
        version: u32,
        arch: String,
    }
    let header: Header =
        serde_json::from_slice(bytes).map_err(|e| SnapshotError::NotASnapshot {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    check_fields(path, &header.format, header.version, &header.arch)
}

/// Refuses a state of another format, version or architecture.
fn check_fields(path: &Path, format: &str, version: u32, arch: &str) -> Result<(), SnapshotError> {
    if format != FORMAT {
        return Err(SnapshotError::NotASnapshot {
            path: path.to_path_buf(),
            why: format!("format '{format}'"),
        });
    }
    if version != VERSION {
        return Err(SnapshotError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    if arch != std::env::consts::ARCH {
        return Err(SnapshotError::WrongArch {
            found: arch.to_string(),
        });
    }
    Ok(())
}

/// Loads `dir/memory` into the VM's RAM; returns the bytes read.
pub fn load_memory(dir: &Path, vm: &Vm) -> Result<u64, SnapshotError> {
    let path = dir.join(MEMORY_FILE);
    let file = File::open(&path).map_err(io_err(&path))?;
    pages::read_file(vm.memory(), &file).map_err(io_err(&path))
}
