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

/// Image locking, byte for byte as QEMU does it (block/file-posix.c), so
/// QEMU, qemu-img and Vireo all see each other: OFD locks (per open file,
/// released when it closes or the process dies) on single bytes. A shared
/// lock on byte 100 + n says "I hold permission n", on byte 200 + n "I do
/// not let others have permission n". Permission 0 is consistent read, 1 is
/// write. A writer holds 100, 101 and 201 (nobody else may write); a reader
/// holds 100 and 201 (nobody may write what it reads: a backing file).
/// Before locking, each side checks that nobody holds the bytes that
/// conflict: a writer, that no one writes (101) or forbids writing (201);
/// a reader, that no one writes (101). `qemu-img check -U` can still read
/// a running Vireo disk, as it can QEMU's.
const PERM_READ: i64 = 100;
const PERM_WRITE: i64 = 101;
const UNSHARE_WRITE: i64 = 201;

/// Locks `file` as a `writer` or a reader (see above); fails with EAGAIN
/// when someone else holds a conflicting lock.
pub fn lock_image(file: &File, writer: bool) -> io::Result<()> {
    if locked_by_others(file, writer)? {
        return Err(io::Error::from_raw_os_error(libc::EAGAIN));
    }
    let held: &[i64] = if writer {
        &[PERM_READ, PERM_WRITE, UNSHARE_WRITE]
    } else {
        &[PERM_READ, UNSHARE_WRITE]
    };
    for &byte in held {
        lock_byte(file, byte, libc::F_RDLCK, libc::F_OFD_SETLK)?;
    }
    Ok(())
}

/// Whether another open file (of any process) holds a lock that a `writer`
/// (or a reader) of `file` conflicts with: what `lock_image` would refuse.
pub fn locked_by_others(file: &File, writer: bool) -> io::Result<bool> {
    let conflicts: &[i64] = if writer {
        &[PERM_WRITE, UNSHARE_WRITE]
    } else {
        &[PERM_WRITE]
    };
    for &byte in conflicts {
        if held_by_others(file, byte)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Drops every lock this open file holds.
pub fn unlock_image(file: &File) -> io::Result<()> {
    lock_range(file, 0, 0, libc::F_UNLCK, libc::F_OFD_SETLK).map(|_| ())
}

/// Whether another open file (of this process or another) holds `byte`.
fn held_by_others(file: &File, byte: i64) -> io::Result<bool> {
    let found = lock_byte(file, byte, libc::F_WRLCK, libc::F_OFD_GETLK)?;
    Ok(found != libc::F_UNLCK)
}

fn lock_byte(file: &File, byte: i64, kind: i32, cmd: i32) -> io::Result<i32> {
    lock_range(file, byte, 1, kind, cmd)
}

fn lock_range(file: &File, start: i64, len: i64, kind: i32, cmd: i32) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero flock is valid; the fields that matter are set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = start;
    lock.l_len = len;
    // SAFETY: F_OFD_SETLK reads, F_OFD_GETLK reads and fills, the flock we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut lock) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i32::from(lock.l_type))
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
