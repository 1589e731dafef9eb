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
use crate::devices::virtio::block::tracked::{DirtyBlocks, Tracked};
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
    /// Virtual size in bytes.
    pub size: u64,
    /// The blocks the guest wrote, while a migration copies the disk.
    pub dirty: Arc<DirtyBlocks>,
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
        Self::open_with(config, Vec::new(), Self::open_nets(config)?)
    }

    /// Every `--net`'s backend, opened.
    pub fn open_nets(config: &VmConfig) -> Result<Vec<NetPort>, BackendError> {
        config
            .nets
            .iter()
            .enumerate()
            .map(|(n, c)| net::open(c, n).map_err(BackendError::Net))
            .collect()
    }

    /// `open`, taking the disks already open in `opened` (by index; an
    /// incoming migration that copies disks has been writing them) and
    /// the NICs' backends opened before (an incoming migration opens them
    /// while memory streams in, not while the guest waits).
    pub fn open_with(
        config: &VmConfig,
        mut opened: Vec<Option<Box<dyn disk::DiskBackend>>>,
        nets: Vec<NetPort>,
    ) -> Result<Self, BackendError> {
        opened.resize_with(config.disks.len(), || None);
        let disks = config
            .disks
            .iter()
            .zip(opened)
            .enumerate()
            .map(|(n, (d, open))| match open {
                Some(backend) => Ok(wrap_disk(d, n, backend)),
                None => open_disk(d, n),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { disks, nets })
    }

    /// After a migration handed the VM over: this process must never
    /// touch the images again (the destination owns them now), whatever
    /// its devices still try on the way out.
    pub fn detach_disks(&self) {
        for d in &self.disks {
            *d.backend.lock().unwrap_or_else(|e| e.into_inner()) = Box::new(Detached(d.size));
        }
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

/// What a disk becomes once a migration handed it over: every access fails.
struct Detached(u64);

impl disk::DiskBackend for Detached {
    fn size(&self) -> u64 {
        self.0
    }
    fn read_at(&mut self, _: &mut [u8], _: u64) -> std::io::Result<()> {
        Err(handed_over())
    }
    fn write_at(&mut self, _: &[u8], _: u64) -> std::io::Result<()> {
        Err(handed_over())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn write_zeroes(&mut self, _: u64, _: u64, _: bool) -> std::io::Result<()> {
        Err(handed_over())
    }
    fn discard(&mut self, _: u64, _: u64) -> std::io::Result<()> {
        Err(handed_over())
    }
}

fn handed_over() -> std::io::Error {
    std::io::Error::other("the disk now belongs to the migration's destination")
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
    Ok(wrap_disk(config, index, disk::open(&config.path, opts)?))
}

/// The opened image behind the dirty-block tracker, with its name.
fn wrap_disk(config: &DiskConfig, index: usize, opened: Box<dyn disk::DiskBackend>) -> OpenDisk {
    let size = opened.size();
    let (tracked, dirty) = Tracked::new(opened);
    let backend: Box<dyn disk::DiskBackend> = Box::new(tracked);
    OpenDisk {
        size,
        backend: Arc::new(Mutex::new(backend)),
        dirty,
        readonly: config.readonly,
        id: config.id.clone().unwrap_or_else(|| format!("disk{index}")),
        path: config.path.display().to_string(),
    }
}

/// Opens (creating it if missing) the image an incoming migration copies a
/// disk of `size` bytes into: a new image in `config.format`, or an existing
/// one of exactly that size, which is overwritten.
pub fn open_copy_target(
    config: &DiskConfig,
    size: u64,
) -> Result<Box<dyn disk::DiskBackend>, DiskError> {
    use crate::devices::virtio::block::disk::DiskFormat;
    use crate::devices::virtio::block::qcow2::create::{create, CreateOptions};
    if !config.path.exists() {
        match config.format {
            DiskFormat::Qcow2 => create(
                &config.path,
                &CreateOptions {
                    size: Some(size),
                    ..Default::default()
                },
            )?,
            DiskFormat::Raw => std::fs::File::create_new(&config.path)
                .and_then(|f| f.set_len(size))
                .map_err(|e| DiskError::io(&config.path, e))?,
        }
    }
    let opts = DiskOpenOptions {
        format: config.format,
        readonly: false,
        direct: config.direct,
        backing_dirs: config.backing_dirs.clone(),
    };
    let disk = disk::open(&config.path, opts)?;
    if disk.size() != size {
        return Err(DiskError::Qcow2 {
            path: config.path.display().to_string(),
            why: format!(
                "it holds {} bytes, the migrating disk {size}: give a new path or an image of that size",
                disk.size()
            ),
        });
    }
    Ok(disk)
}
