//! What virtio-blk serves requests from: a disk backend with a fixed
//! virtual size, read and written at byte offsets, made durable by
//! `flush`. Raw files and qcow2 images (with their backing chains) both
//! implement it; the request code never sees the format.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::qcow2::{self, Qcow2Disk};
use super::raw::RawDisk;

/// The image formats `--disk format=` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    #[default]
    Raw,
    Qcow2,
}

/// How to open a disk image.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    pub format: DiskFormat,
    pub readonly: bool,
    /// O_DIRECT: bypass the host page cache (the file's own alignment rules apply).
    pub direct: bool,
    /// Directory trees a qcow2 backing chain may reach besides the image's
    /// own directory (see `qcow2::backing`).
    pub backing_dirs: Vec<std::path::PathBuf>,
}

/// A virtual disk. Offsets and lengths are bytes inside `[0, size())`;
/// the caller checks bounds before calling.
pub trait DiskBackend: Send {
    /// Virtual size in bytes.
    fn size(&self) -> u64;
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Returns once every completed write, data and metadata, is durable.
    fn flush(&mut self) -> io::Result<()>;
    /// The range reads as zeros afterwards; with `unmap` its space may be freed.
    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()>;
    /// The guest no longer needs the range: space is freed where the
    /// backend can (whole clusters for qcow2); freed parts read as zeros.
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// Granularity at which `discard` frees space, in bytes.
    fn discard_granularity(&self) -> u64 {
        4096
    }
    /// Takes (true) or gives up (false) this process's lock on the image
    /// file (see `lock_image`); a migration hands the lock to the
    /// destination and takes it back if it fails.
    fn set_locked(&mut self, _locked: bool) -> io::Result<()> {
        Ok(())
    }
}

/// Locks `file` for this open file description (an OFD lock, as QEMU uses):
/// `exclusive` (a read-write image: nobody else may open it) or shared (a
/// read-only image or a backing file: others may read it, none may write).
/// Released when the file is closed, also when the process dies.
pub fn lock_image(file: &File, exclusive: bool) -> io::Result<()> {
    set_lock(file, if exclusive { libc::F_WRLCK } else { libc::F_RDLCK })
}

pub fn unlock_image(file: &File) -> io::Result<()> {
    set_lock(file, libc::F_UNLCK)
}

fn set_lock(file: &File, kind: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero flock is valid; the fields that matter are set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start = l_len = 0: the whole file, however long it grows.
    // SAFETY: F_OFD_SETLK reads the flock we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Locks the image at `path` (see `lock_image`), saying who holds it.
pub fn lock_or_explain(file: &File, path: &Path, exclusive: bool) -> Result<(), DiskError> {
    lock_image(file, exclusive).map_err(|e| match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => DiskError::Locked(path.display().to_string()),
        _ => DiskError::io(path, e),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("'{path}': {source}")]
    Open { path: String, source: io::Error },
    #[error("'{0}': not a regular file or block device")]
    NotAFile(String),
    #[error("'{0}': it is a qcow2 image; use format=qcow2 (refusing to show its metadata to the guest as raw data)")]
    QcowAsRaw(String),
    #[error("'{path}': {why}")]
    Qcow2 { path: String, why: String },
    #[error("'{path}': {source}")]
    Io { path: String, source: io::Error },
    #[error("'{0}' is already in use: another VM, program or disk holds a lock on the image (two writers would corrupt it)")]
    Locked(String),
}

impl DiskError {
    pub fn qcow2(path: &Path, why: impl Into<String>) -> Self {
        Self::Qcow2 {
            path: path.display().to_string(),
            why: why.into(),
        }
    }
    pub fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Opens `path` as a regular file, read-write unless `readonly`.
pub fn open_file(path: &Path, readonly: bool, direct: bool) -> Result<File, DiskError> {
    let open_err = |source| DiskError::Open {
        path: path.display().to_string(),
        source,
    };
    let flags = if direct { libc::O_DIRECT } else { 0 };
    let file = File::options()
        .read(true)
        .write(!readonly)
        .custom_flags(flags)
        .open(path)
        .map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if !meta.is_file() && !is_block_device(&meta) {
        return Err(DiskError::NotAFile(path.display().to_string()));
    }
    Ok(file)
}

fn is_block_device(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_block_device()
}

/// Opens the image at `path` in the given format. Nothing is written to
/// the image unless it opened cleanly.
pub fn open(path: &Path, opts: OpenOptions) -> Result<Box<dyn DiskBackend>, DiskError> {
    let file = open_file(path, opts.readonly, opts.direct)?;
    lock_or_explain(&file, path, !opts.readonly)?;
    match opts.format {
        DiskFormat::Raw => {
            // Through a buffered descriptor: O_DIRECT cannot read 4 bytes.
            let plain = open_file(path, true, false)?;
            if qcow2::has_magic(&plain).map_err(|e| DiskError::io(path, e))? {
                return Err(DiskError::QcowAsRaw(path.display().to_string()));
            }
            Ok(Box::new(RawDisk::new(file, opts.readonly, opts.direct)?))
        }
        DiskFormat::Qcow2 => Ok(Box::new(Qcow2Disk::open(file, path, opts)?)),
    }
}
