//! From a launch request to a VM ready to start: the one place where a
//! fresh boot, a restore from a snapshot and an incoming migration become a
//! `Vm` on its `Backends`. All three build the same VM from one description
//! (`VmConfig`); they differ only in what fills it: a kernel, a snapshot
//! directory, or what arrives over the migration channel.

use std::path::PathBuf;

use crate::backends::{BackendError, Backends};
use crate::config::{DiskConfig, NetConfig, SerialOutput, VmConfig};
use crate::snapshot::{self, SnapshotError};
use crate::vm::{Vm, VmError, VmEvents};

/// What to run.
pub enum Launch {
    /// Boot `config.kernel`.
    Boot(VmConfig),
    /// Resume the VM saved in a snapshot directory.
    Restore(Resume),
    /// Receive a VM from a migration source, listening on `url`.
    Incoming { url: String, resume: Resume },
}

/// What may differ from the saved description when a VM is resumed
/// elsewhere: where its disks, NICs, console and API are on this host.
#[derive(Default)]
pub struct Overrides {
    /// Replaces every disk (same count and order as saved).
    pub disks: Option<Vec<DiskConfig>>,
    /// Replaces every NIC (same count and order as saved).
    pub nets: Option<Vec<NetConfig>>,
    pub serial: Option<SerialOutput>,
    pub api_socket: Option<PathBuf>,
}

/// A restore or incoming migration's own options.
pub struct Resume {
    /// The snapshot directory (restore only).
    pub dir: PathBuf,
    pub overrides: Overrides,
    /// Leave the VM paused once it is here (`PUT /vm/resume` runs it).
    pub paused: bool,
}

impl Launch {
    /// Whether the VM is to start paused.
    pub fn paused(&self) -> bool {
        match self {
            Launch::Boot(_) => false,
            Launch::Restore(r) | Launch::Incoming { resume: r, .. } => r.paused,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("{0}")]
    Mismatch(String),
}

/// A VM built and loaded, not started yet.
pub struct Built {
    pub config: VmConfig,
    pub backends: Backends,
    pub vm: Vm,
}

/// Builds the VM a fresh boot or a restore asks for.
pub fn build(launch: Launch, events: &VmEvents) -> Result<Built, BuildError> {
    match launch {
        Launch::Boot(config) => {
            let backends = Backends::open(&config)?;
            let vm = Vm::create(&config, &backends, events)?;
            Ok(Built {
                config,
                backends,
                vm,
            })
        }
        Launch::Restore(resume) => restore(resume, events),
        Launch::Incoming { .. } => Err(BuildError::Mismatch(
            "incoming migration is handled by the migration receiver".into(),
        )),
    }
}

/// The saved description with this host's paths and backends.
pub fn apply_overrides(mut config: VmConfig, o: Overrides) -> Result<VmConfig, BuildError> {
    if let Some(disks) = o.disks {
        if disks.len() != config.disks.len() {
            return Err(BuildError::Mismatch(format!(
                "the saved VM has {} disks; give as many --disk (or none)",
                config.disks.len()
            )));
        }
        config.disks = disks;
    }
    if let Some(nets) = o.nets {
        if nets.len() != config.nets.len() {
            return Err(BuildError::Mismatch(format!(
                "the saved VM has {} NICs; give as many --net (or none)",
                config.nets.len()
            )));
        }
        // A NIC keeps its address wherever it goes.
        let macs = config.nets.iter().map(|n| n.mac);
        config.nets = nets
            .into_iter()
            .zip(macs)
            .map(|(n, saved)| NetConfig {
                mac: n.mac.or(saved),
                ..n
            })
            .collect();
    }
    if let Some(serial) = o.serial {
        config.serial = serial;
    }
    config.api_socket = o.api_socket.or(config.api_socket);
    Ok(config)
}

fn restore(resume: Resume, events: &VmEvents) -> Result<Built, BuildError> {
    let snap = snapshot::read(&resume.dir)?;
    let config = apply_overrides(snap.config.clone(), resume.overrides)?;
    let backends = Backends::open(&config)?;
    let vm = Vm::build(&config, &backends, events)?;
    snapshot::load_memory(&resume.dir, &vm)?;
    snapshot::apply(&vm, &snap)?;
    Ok(Built {
        config,
        backends,
        vm,
    })
}
