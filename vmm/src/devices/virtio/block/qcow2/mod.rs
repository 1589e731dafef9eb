//! qcow2 images (versions 2 and 3): L1/L2 lookup, allocation at the end
//! of the file, refcounts, zero clusters, compressed clusters (read),
//! backing chains with copy-on-write of partial clusters.
//!
//! Crash safety comes from write ordering, with `fdatasync` as the
//! barrier (see docs/ARCHITECTURE.md, "qcow2"):
//! 1. guest data and refcounts go straight to the file;
//! 2. new L2/L1 pointers stay in memory until a flush, which syncs (1),
//!    then writes the L2 tables, syncs, writes the L1 table, syncs;
//! 3. clusters no longer referenced lose their refcount only after (2).
//!
//! At every instant the on-disk image is consistent; a crash loses
//! unflushed writes and may leak clusters, never corrupts.

mod backing;
pub mod create;
#[cfg(feature = "fuzz")]
pub mod fuzz_harness;
mod header;
pub mod info;
pub mod overlay;
mod refcount;
pub mod resize;
mod tables;
mod zero;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use flate2::{Decompress, FlushDecompress, Status};

use super::disk::{DiskBackend, DiskError, OpenOptions};
pub use header::MAGIC;
use header::{Header, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, OFF_AUTOCLEAR};
use refcount::Refcounts;
use tables::{Mapping, Tables, COPIED};

/// An I/O error for metadata that does not make sense.
pub(crate) fn corrupt(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt qcow2 metadata: {why}"),
    )
}

/// Whether `file` starts with the qcow2 magic.
pub fn has_magic(file: &File) -> io::Result<bool> {
    let mut magic = [0u8; 4];
    match file.read_exact_at(&mut magic, 0) {
        Ok(()) => Ok(u32::from_be_bytes(magic) == MAGIC),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

pub struct Qcow2Disk {
    file: File,
    readonly: bool,
    size: u64,
    version: u32,
    cluster_bits: u32,
    tables: Tables,
    refcounts: Refcounts,
    backing: Option<Box<dyn DiskBackend>>,
    /// Host clusters a durable pointer no longer names once the pending
    /// pointers are written back (replaced compressed clusters).
    released: Vec<u64>,
}

impl Qcow2Disk {
    /// Opens and validates the image; nothing is written unless it is
    /// valid and opened read-write.
    pub fn open(file: File, path: &Path, opts: OpenOptions) -> Result<Self, DiskError> {
        if opts.direct {
            return Err(DiskError::qcow2(
                path,
                "direct=on is supported for raw disks only",
            ));
        }
        let mut chain = backing::Chain::new(path, &opts.backing_dirs)?;
        Self::open_in_chain(file, path, opts.readonly, &mut chain)
    }

    /// `chain` holds the images already open above this one (loop check)
    /// and where their backing files may be.
    fn open_in_chain(
        file: File,
        path: &Path,
        readonly: bool,
        chain: &mut backing::Chain,
    ) -> Result<Self, DiskError> {
        Self::open_with(file, path, readonly, |h| backing::open(path, h, chain))
    }

    /// Opens the image, its backing file (if the header names one) coming
    /// from `open_backing`: the chain by name, or an image already open
    /// (`overlay::open_over`).
    fn open_with(
        file: File,
        path: &Path,
        readonly: bool,
        open_backing: impl FnOnce(&Header) -> Result<Option<Box<dyn DiskBackend>>, DiskError>,
    ) -> Result<Self, DiskError> {
        let bad = |why: String| DiskError::qcow2(path, why);
        let file_len = file.metadata().map_err(|e| DiskError::io(path, e))?.len();
        let h = Header::read(&file, file_len).map_err(bad)?;
        if !readonly {
            check_writable(&h).map_err(bad)?;
        }
        let tables = Tables::load(
            &file,
            h.l1_table_offset,
            h.l1_size,
            h.cluster_bits,
            h.version,
            file_len,
        )
        .map_err(bad)?;
        let refcounts = Refcounts::load(
            &file,
            h.refcount_table_offset,
            h.refcount_table_clusters,
            h.cluster_bits,
            h.refcount_order,
            file_len,
        )
        .map_err(bad)?;
        let backing = open_backing(&h)?;
        if !readonly && h.autoclear != 0 {
            // Autoclear features (bitmaps, raw external data) are ones this
            // writer does not maintain: the spec says to clear them.
            file.write_all_at(&0u64.to_be_bytes(), OFF_AUTOCLEAR)
                .and_then(|()| file.sync_data())
                .map_err(|e| DiskError::io(path, e))?;
        }
        Ok(Self {
            file,
            readonly,
            size: h.size,
            version: h.version,
            cluster_bits: h.cluster_bits,
            tables,
            refcounts,
            backing,
            released: Vec::new(),
        })
    }

    fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Fills `buf` with the contents of the guest cluster range starting at
    /// `guest` (inside one cluster) as `mapping` describes it.
    fn read_mapped(&mut self, mapping: Mapping, buf: &mut [u8], guest: u64) -> io::Result<()> {
        let within = guest & (self.cluster_size() - 1);
        match mapping {
            Mapping::Data { host } => self.file.read_exact_at(buf, host + within),
            Mapping::Zero { .. } => {
                buf.fill(0);
                Ok(())
            }
            Mapping::Unallocated => self.read_backing(buf, guest),
            Mapping::Compressed { host, len } => {
                let cluster = self.decompress(host, len)?;
                buf.copy_from_slice(&cluster[within as usize..within as usize + buf.len()]);
                Ok(())
            }
        }
    }

    /// The backing file's bytes at `guest`; zeros past its end (an overlay
    /// may be larger than its backing file).
    fn read_backing(&mut self, buf: &mut [u8], guest: u64) -> io::Result<()> {
        buf.fill(0);
        let Some(backing) = self.backing.as_mut() else {
            return Ok(());
        };
        let size = backing.size();
        if guest >= size {
            return Ok(());
        }
        let n = (size - guest).min(buf.len() as u64) as usize;
        backing.read_at(&mut buf[..n], guest)
    }

    fn decompress(&self, host: u64, len: u64) -> io::Result<Vec<u8>> {
        let mut input = vec![0u8; len as usize];
        self.file.read_exact_at(&mut input, host)?;
        let mut out = vec![0u8; self.cluster_size() as usize];
        let mut inflate = Decompress::new(false);
        let status = inflate
            .decompress(&input, &mut out, FlushDecompress::Finish)
            .map_err(|_| corrupt("compressed cluster does not inflate"))?;
        // QEMU stops once the cluster is full; trailing input is padding.
        let full = inflate.total_out() == self.cluster_size();
        if !full || !matches!(status, Status::StreamEnd | Status::Ok | Status::BufError) {
            return Err(corrupt("compressed cluster inflates to the wrong size"));
        }
        Ok(out)
    }

    /// Writes `data` into the guest cluster holding `guest` (the range
    /// stays inside that cluster).
    fn write_cluster(&mut self, data: &[u8], guest: u64) -> io::Result<()> {
        let cs = self.cluster_size();
        let within = guest & (cs - 1);
        let start = guest - within;
        if !self.tables.has_l2(guest) {
            let l2 = self.allocate_zeroed()?;
            self.tables.add_l2(guest, l2);
        }
        let mapping = self
            .tables
            .lookup(&self.file, guest, self.refcounts.end())?;
        if let Mapping::Data { host } = mapping {
            // A data pointer into the image's own metadata is corruption:
            // writing through it would destroy the image.
            if host < cs || self.tables.is_metadata(host) || self.refcounts.is_block(host) {
                return Err(corrupt("data cluster overlaps metadata"));
            }
            return self.file.write_all_at(data, host + within);
        }
        // Copy-on-write: the new cluster gets the old contents around the data.
        let mut cluster = vec![0u8; cs as usize];
        if data.len() as u64 != cs {
            self.read_mapped(mapping, &mut cluster, start)?;
        }
        cluster[within as usize..within as usize + data.len()].copy_from_slice(data);
        let host = match mapping {
            Mapping::Zero { host: Some(h) } => h,
            _ => self.refcounts.allocate(&self.file)?,
        };
        self.file.write_all_at(&cluster, host)?;
        if let Mapping::Compressed { host, len } = mapping {
            self.release_later(host, len);
        }
        self.tables.set(&self.file, guest, host | COPIED)?;
        if self.tables.needs_write_back() {
            self.flush_all()?;
        }
        Ok(())
    }

    /// Makes every write durable: data and refcounts, then the L2 tables,
    /// then the L1 table, then releases clusters nothing durable names.
    fn flush_all(&mut self) -> io::Result<()> {
        // Data and refcounts first, then the pointers to them.
        self.file.sync_data()?;
        if !self.tables.is_dirty() {
            return Ok(());
        }
        let file = &self.file;
        self.tables.write_back(file, || file.sync_data())?;
        self.file.sync_data()?;
        for host in std::mem::take(&mut self.released) {
            if self.refcounts.release(&self.file, host)? == 0 {
                // Give the space back; failure only costs space.
                let _ = punch_hole(&self.file, host, self.cluster_size());
            }
        }
        Ok(())
    }

    /// A new cluster, zeroed on disk (for an L2 table not yet published).
    fn allocate_zeroed(&mut self) -> io::Result<u64> {
        let host = self.refcounts.allocate(&self.file)?;
        self.file
            .write_all_at(&vec![0u8; self.cluster_size() as usize], host)?;
        Ok(host)
    }

    /// Every host cluster a compressed cluster's bytes touch holds one reference for it.
    fn release_later(&mut self, host: u64, len: u64) {
        let first = host >> self.cluster_bits;
        let last = (host + len.max(1) - 1) >> self.cluster_bits;
        self.released
            .extend((first..=last).map(|c| c << self.cluster_bits));
    }
}

impl Qcow2Disk {
    fn writable(&self) -> io::Result<()> {
        if self.readonly {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        Ok(())
    }
}

fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: plain syscall on an owned fd.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as i64, len as i64) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Images this writer must not change.
fn check_writable(h: &Header) -> Result<(), String> {
    if h.incompatible & INCOMPAT_CORRUPT != 0 {
        return Err("image is marked corrupt: repair it (qemu-img check -r all) or open it with readonly=on".into());
    }
    if h.incompatible & INCOMPAT_DIRTY != 0 {
        return Err(
            "image is marked dirty (lazy refcounts): repair it with qemu-img check -r all first"
                .into(),
        );
    }
    if h.nb_snapshots != 0 {
        return Err(
            "image has internal snapshots: writing them is not supported, open it with readonly=on"
                .into(),
        );
    }
    Ok(())
}

impl DiskBackend for Qcow2Disk {
    fn size(&self) -> u64 {
        self.size
    }

    /// The top image only: the backing chain keeps its shared locks, which
    /// a destination's shared locks do not conflict with.
    fn set_locked(&mut self, locked: bool) -> io::Result<()> {
        match locked {
            true => super::disk::lock_image(&self.file, !self.readonly),
            false => super::disk::unlock_image(&self.file),
        }
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let cs = self.cluster_size();
        let mut done = 0;
        while done < buf.len() {
            let guest = offset + done as u64;
            let n = ((cs - (guest & (cs - 1))) as usize).min(buf.len() - done);
            let mapping = self
                .tables
                .lookup(&self.file, guest, self.refcounts.end())?;
            self.read_mapped(mapping, &mut buf[done..done + n], guest)?;
            done += n;
        }
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.writable()?;
        let cs = self.cluster_size();
        let mut done = 0;
        while done < buf.len() {
            let guest = offset + done as u64;
            let n = ((cs - (guest & (cs - 1))) as usize).min(buf.len() - done);
            self.write_cluster(&buf[done..done + n], guest)?;
            done += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.readonly {
            return Ok(());
        }
        self.flush_all()
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, _unmap: bool) -> io::Result<()> {
        self.writable()?;
        self.zero_range(offset, len, true)
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.writable()?;
        self.zero_range(offset, len, false)
    }

    fn discard_granularity(&self) -> u64 {
        self.cluster_size()
    }
}

#[cfg(test)]
mod tests;
