//! The host side of a VM's devices, opened once per VMM process: disk
//! images and network backends. Every boot of the VM (the first, and each
//! API reboot) builds its devices on these same open backends, because
//! - a tap fd passed in (`--net fd=N`) can be taken over only once;
//! - an image must never be open twice at once: a VM being torn down may
//!   still hold qcow2 metadata that is not on disk yet;
//! - the guest's NIC keeps its MAC across reboots.
//!
//! Opening them first, before /dev/kvm, also means a missing file or
//! interface fails the start before anything else is built.

use std::sync::{Arc, Mutex};

use crate::config::{DiskConfig, VmConfig};
use crate::devices::virtio::block::disk::{self, DiskError, OpenOptions as DiskOpenOptions};
use crate::devices::virtio::block::SharedBackend;
use crate::devices::virtio::net::{self, NetPort};

/// One `--disk`, open.
pub struct OpenDisk {
    pub backend: SharedBackend,
    pub readonly: bool,
    /// What GET_ID returns: `id=` or `diskN`.
    pub id: String,
    /// For messages.
    pub path: String,
}

/// Every device backend of the VM, in command-line order.
pub struct Backends {
    pub disks: Vec<OpenDisk>,
    pub nets: Vec<NetPort>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot open the disk {0}")]
    Disk(#[from] DiskError),
    #[error("cannot set up the network: {0}")]
    Net(std::io::Error),
}

impl Backends {
    pub fn open(config: &VmConfig) -> Result<Self, BackendError> {
        let disks = config
            .disks
            .iter()
            .enumerate()
            .map(|(n, d)| open_disk(d, n))
            .collect::<Result<_, _>>()?;
        let nets = config
            .nets
            .iter()
            .enumerate()
            .map(|(n, c)| net::open(c, n).map_err(BackendError::Net))
            .collect::<Result<_, _>>()?;
        Ok(Self { disks, nets })
    }

    /// Makes every write the guest completed durable (data and, for qcow2,
    /// the metadata that points to it). Called on every orderly stop and
    /// before a reboot; returns one message per disk that failed.
    pub fn flush_disks(&self) -> Result<(), String> {
        let failures: Vec<String> = self
            .disks
            .iter()
            .filter(|d| !d.readonly)
            .filter_map(|d| {
                let mut backend = d.backend.lock().unwrap_or_else(|e| e.into_inner());
                backend
                    .flush()
                    .err()
                    .map(|e| format!("disk '{}' ({}): {e}", d.id, d.path))
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(format!("flushing failed: {}", failures.join("; ")))
        }
    }
}

/// Opens a disk image in its format: read-write unless the disk is
/// read-only, so a read-only image file (or mount) can still be used as one.
fn open_disk(config: &DiskConfig, index: usize) -> Result<OpenDisk, DiskError> {
    let opts = DiskOpenOptions {
        format: config.format,
        readonly: config.readonly,
        direct: config.direct,
        backing_dirs: config.backing_dirs.clone(),
    };
    let backend = disk::open(&config.path, opts)?;
    Ok(OpenDisk {
        backend: Arc::new(Mutex::new(backend)),
        readonly: config.readonly,
        id: config.id.clone().unwrap_or_else(|| format!("disk{index}")),
        path: config.path.display().to_string(),
    })
}
