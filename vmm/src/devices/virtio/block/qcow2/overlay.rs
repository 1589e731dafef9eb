//! An overlay on an image that is already open, and the map of what the
//! overlay itself holds. Both serve external snapshots and backups: the
//! VMM switches a running disk onto a new overlay whose backing is the
//! disk's own open image (it cannot open that image a second time: it holds
//! the write lock on it), and committing the overlay back copies exactly
//! the clusters the overlay holds.

use std::fs::File;
use std::io;
use std::path::Path;

use super::super::disk::{DiskBackend, DiskError};
use super::super::layers::{Extent, ExtentKind};
use super::tables::Mapping;
use super::Qcow2Disk;

impl Qcow2Disk {
    /// Opens the qcow2 image at `path` read-write on top of `backing`, an
    /// image already open that stands for the backing file its header
    /// names (the caller vouches that it is that file). `file` is `path`
    /// opened read-write; locking it is the caller's business.
    pub fn open_over(
        file: File,
        path: &Path,
        backing: Box<dyn DiskBackend>,
    ) -> Result<Self, DiskError> {
        Self::open_with(file, path, false, |h| match &h.backing_file {
            Some(_) => Ok(Some(backing)),
            None => Err(DiskError::qcow2(path, "it names no backing file")),
        })
    }

    /// How `[offset, offset + len)` reads from this image alone: data it
    /// holds, zeros it records, or what its backing file (zeros without
    /// one) shows through. Adjacent clusters of one kind are merged.
    pub fn top_extents(&mut self, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
        let cs = self.cluster_size();
        let end = offset.saturating_add(len).min(self.size);
        let mut out: Vec<Extent> = Vec::new();
        let mut at = offset;
        while at < end {
            let n = (cs - (at & (cs - 1))).min(end - at);
            let kind = match self.tables.lookup(&self.file, at, self.refcounts.end())? {
                Mapping::Data { .. } | Mapping::Compressed { .. } => ExtentKind::Data,
                Mapping::Zero { .. } => ExtentKind::Zero,
                Mapping::Unallocated if self.backing.is_some() => ExtentKind::Backing,
                Mapping::Unallocated => ExtentKind::Zero,
            };
            match out.last_mut() {
                Some(last) if last.kind == kind && last.offset + last.len == at => last.len += n,
                _ => out.push(Extent {
                    offset: at,
                    len: n,
                    kind,
                }),
            }
            at += n;
        }
        Ok(out)
    }

    /// Whether the image has a backing file.
    pub fn has_backing(&self) -> bool {
        self.backing.is_some()
    }
}
