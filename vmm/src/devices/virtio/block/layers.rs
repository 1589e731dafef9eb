//! Images stacked on images: an overlay on top of a disk that is already
//! open, and committing an overlay's clusters back into its base. The VMM
//! uses these for a running VM's backup (`crate::disk_layers`), the node
//! agent for external snapshots of volumes no VM has open.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::disk::{open_file, DiskBackend, DiskError, DiskFormat, OpenOptions};
use super::qcow2::Qcow2Disk;
use super::raw::RawDisk;

/// What a range of an image reads as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtentKind {
    /// Data the image holds itself.
    Data,
    /// Zeros the image records (a zero cluster, or unallocated without a
    /// backing file).
    Zero,
    /// Whatever the backing file holds there.
    Backing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    pub kind: ExtentKind,
}

/// A disk shared between owners (the overlay reading it as its backing
/// file, and the code committing into it); every call locks it.
pub struct SharedDisk(pub Arc<Mutex<Box<dyn DiskBackend>>>);

impl SharedDisk {
    fn with<T>(&self, f: impl FnOnce(&mut dyn DiskBackend) -> T) -> T {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut **guard)
    }
}

impl DiskBackend for SharedDisk {
    fn size(&self) -> u64 {
        self.with(|d| d.size())
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|d| d.read_at(buf, offset))
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|d| d.write_at(buf, offset))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.with(|d| d.flush())
    }
    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        self.with(|d| d.write_zeroes(offset, len, unmap))
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.with(|d| d.discard(offset, len))
    }
    fn discard_granularity(&self) -> u64 {
        self.with(|d| d.discard_granularity())
    }
}

/// Opens `path` read-only WITHOUT taking the image lock (QEMU's
/// `force-share`, `qemu-img -U`). Only for an image that a VMM holds but
/// has frozen: the base under a backup overlay, which nobody writes until
/// the overlay is committed, and which the VMM's write lock would
/// otherwise keep every reader from.
pub fn open_frozen(
    path: &Path,
    format: DiskFormat,
    backing_dirs: &[PathBuf],
) -> Result<Box<dyn DiskBackend>, DiskError> {
    let file = open_file(path, true, false)?;
    Ok(match format {
        DiskFormat::Raw => Box::new(RawDisk::new(file, true, false)?),
        DiskFormat::Qcow2 => {
            let opts = OpenOptions {
                format,
                readonly: true,
                direct: false,
                backing_dirs: backing_dirs.to_vec(),
            };
            Box::new(Qcow2Disk::open(file, path, opts)?)
        }
    })
}

/// Chunk in which committing copies (and holds a running disk's lock).
pub const COMMIT_CHUNK: u64 = 1 << 20;

/// Copies one extent of `top` (what the overlay holds: data or zeros)
/// into `base`, in pieces of at most `COMMIT_CHUNK`. `buf` is scratch.
pub fn commit_piece(
    top: &mut dyn DiskBackend,
    base: &mut dyn DiskBackend,
    e: Extent,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    match e.kind {
        ExtentKind::Backing => Ok(()),
        ExtentKind::Zero => base.write_zeroes(e.offset, e.len, true),
        ExtentKind::Data => {
            buf.resize(e.len as usize, 0);
            top.read_at(buf, e.offset)?;
            base.write_at(buf, e.offset)
        }
    }
}

/// Splits extents into pieces of at most `COMMIT_CHUNK` bytes, dropping
/// the ones the backing file already holds.
pub fn commit_pieces(extents: &[Extent]) -> Vec<Extent> {
    extents
        .iter()
        .filter(|e| e.kind != ExtentKind::Backing)
        .flat_map(|e| {
            let pieces = e.len.div_ceil(COMMIT_CHUNK);
            (0..pieces).map(move |i| {
                let offset = e.offset + i * COMMIT_CHUNK;
                Extent {
                    offset,
                    len: COMMIT_CHUNK.min(e.offset + e.len - offset),
                    kind: e.kind,
                }
            })
        })
        .collect()
}

/// Commits the overlay at `top_path` into `base` (an image opened
/// read-write, which is the overlay's backing file) while nothing else
/// uses either: every cluster the overlay holds is copied into the base,
/// which is then flushed. `progress(done, total)` returns false to stop
/// (the base then holds part of the overlay, which still shadows it: the
/// overlay's view is unchanged). The overlay file is left for the caller.
pub fn commit_offline(
    top_path: &Path,
    base: Box<dyn DiskBackend>,
    mut progress: impl FnMut(u64, u64) -> bool,
) -> Result<Box<dyn DiskBackend>, DiskError> {
    let io = |e| DiskError::io(top_path, e);
    let base = Arc::new(Mutex::new(base));
    let file = open_file(top_path, false, false)?;
    super::disk::lock_or_explain(&file, top_path, true)?;
    let mut top = Qcow2Disk::open_over(file, top_path, Box::new(SharedDisk(base.clone())))?;
    if top.size() > SharedDisk(base.clone()).size() {
        return Err(DiskError::qcow2(
            top_path,
            "the overlay is larger than its base: grow the base first",
        ));
    }
    let extents = top.top_extents(0, top.size()).map_err(io)?;
    let pieces = commit_pieces(&extents);
    let total: u64 = pieces.iter().map(|e| e.len).sum();
    let mut done = 0;
    let mut buf = Vec::new();
    let mut shared = SharedDisk(base.clone());
    for piece in pieces {
        if !progress(done, total) {
            return Err(io(io::Error::new(io::ErrorKind::Interrupted, "cancelled")));
        }
        commit_piece(&mut top, &mut shared, piece, &mut buf).map_err(io)?;
        done += piece.len;
    }
    shared.flush().map_err(io)?;
    progress(done, total);
    drop((top, shared));
    let base =
        Arc::try_unwrap(base).map_err(|_| io(io::Error::other("the base is still shared")))?;
    Ok(base.into_inner().unwrap_or_else(|e| e.into_inner()))
}
