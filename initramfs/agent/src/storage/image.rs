//! Image files through Vireo's own disk code (the VMM's crate): creating,
//! opening with QEMU-compatible locks, reading sizes and backing names.
//! Every offline operation opens its images the way a VMM would, so a
//! volume some process has open is refused, and a VMM cannot start on a
//! volume while the agent changes it.

use std::path::{Path, PathBuf};

use vireo_vmm::devices::virtio::block::disk::{self, DiskBackend, DiskError, DiskFormat};
use vireo_vmm::devices::virtio::block::qcow2::create::{create, CreateOptions};
use vireo_vmm::devices::virtio::block::qcow2::info::read_info;

use super::VolumeFormat;
use crate::error::ApiError;

pub fn disk_format(f: VolumeFormat) -> DiskFormat {
    match f {
        VolumeFormat::Raw => DiskFormat::Raw,
        VolumeFormat::Qcow2 => DiskFormat::Qcow2,
    }
}

/// A disk error as an answer: a lock held elsewhere is a conflict (the
/// volume is in use), the rest the node's failure.
pub fn disk_error(e: DiskError) -> ApiError {
    match e {
        DiskError::Locked(path) => ApiError::conflict(format!(
            "'{path}' is in use: a VM or another program has it open"
        )),
        other => ApiError::internal(other.to_string()),
    }
}

/// A new, empty image (never over an existing file). qcow2 images get
/// `backing` (a file name in the same directory) when given.
pub fn create_image(
    path: &Path,
    format: VolumeFormat,
    size: u64,
    backing: Option<(&str, VolumeFormat)>,
) -> Result<(), ApiError> {
    if size == 0 || !size.is_multiple_of(512) {
        return Err(ApiError::bad_request(format!(
            "size {size} must be a positive multiple of 512 bytes"
        )));
    }
    match format {
        VolumeFormat::Qcow2 => {
            let opts = CreateOptions {
                size: Some(size),
                backing: backing.map(|(name, _)| name.to_string()),
                backing_format: backing.map_or(DiskFormat::Qcow2, |(_, f)| disk_format(f)),
                ..Default::default()
            };
            create(path, &opts).map_err(|e| match e {
                DiskError::Open { source, .. }
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    ApiError::conflict(format!("'{}' exists already", path.display()))
                }
                other => ApiError::bad_request(other.to_string()),
            })
        }
        VolumeFormat::Raw => {
            let file = std::fs::File::create_new(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    ApiError::conflict(format!("'{}' exists already", path.display()))
                }
                _ => ApiError::internal(format!("{}: {e}", path.display())),
            })?;
            file.set_len(size)
                .and_then(|()| file.sync_all())
                .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))
        }
    }
}

/// Opens an image as a VMM would: read-write with the write lock, or
/// read-only with the shared lock; its backing chain confined to `dir`.
pub fn open(
    path: &Path,
    format: VolumeFormat,
    writable: bool,
    dir: &Path,
) -> Result<Box<dyn DiskBackend>, ApiError> {
    let opts = disk::OpenOptions {
        format: disk_format(format),
        readonly: !writable,
        direct: false,
        backing_dirs: vec![dir.to_path_buf()],
    };
    disk::open(path, opts).map_err(disk_error)
}

/// Takes the image's write lock (a conflict if any process, a running VM
/// say, has it open) and holds it until the returned file is dropped: no
/// VMM can open the image meanwhile.
pub fn lock_exclusive(path: &Path) -> Result<std::fs::File, ApiError> {
    let file = disk::open_file(path, false, false).map_err(disk_error)?;
    disk::lock_or_explain(&file, path, true).map_err(disk_error)?;
    Ok(file)
}

/// Virtual size and backing file name of an image.
pub fn virtual_size(path: &Path, format: VolumeFormat) -> Result<(u64, Option<String>), ApiError> {
    match format {
        VolumeFormat::Raw => std::fs::metadata(path)
            .map(|m| (m.len(), None))
            .map_err(|e| ApiError::internal(format!("{}: {e}", path.display()))),
        VolumeFormat::Qcow2 => read_info(path)
            .map(|i| (i.size, i.backing_file))
            .map_err(|e| ApiError::internal(e.to_string())),
    }
}

/// Bytes a file takes on disk (its allocated blocks; sparse files less
/// than their length).
pub fn real_size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// Renames `from` over `to` and makes the rename durable.
pub fn replace(from: &Path, to: &Path) -> Result<(), ApiError> {
    let fail = |e: std::io::Error| ApiError::internal(format!("renaming {}: {e}", from.display()));
    std::fs::rename(from, to).map_err(fail)?;
    sync_dir(to).map_err(fail)
}

/// fsync of the directory holding `path` (a rename or new file in it
/// survives a power loss).
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

/// A scratch file removed when dropped unless kept.
pub struct Scratch(pub PathBuf, bool);

impl Scratch {
    pub fn new(path: PathBuf) -> Self {
        let _ = std::fs::remove_file(&path);
        Self(path, false)
    }
    pub fn keep(mut self) -> PathBuf {
        self.1 = true;
        self.0.clone()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
