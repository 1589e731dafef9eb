//! One virtio-blk request (virtio 1.2, 5.2.6): a read-only header, data
//! buffers, and a one-byte status the device writes last. Everything the
//! driver wrote is untrusted: any inconsistency fails the request with
//! IOERR, never the VMM.

use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress};

use super::disk::DiskBackend;
use crate::memory::GuestRam;

pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;

pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

pub const SECTOR_SIZE: u64 = 512;
/// Length of the serial number GET_ID returns (no NUL when it is full).
pub const ID_LEN: usize = 20;
/// Longest chain accepted: header, status and 126 data buffers (Linux
/// sends at most seg_max + 2; we advertise no seg_max, so it stays below
/// the queue size anyway).
pub const MAX_DESCRIPTORS: usize = 128;
/// Longest transfer one request may carry: the used ring reports the bytes
/// written into the driver's buffers, plus the status byte, in a u32, so a
/// longer IN could not be reported (and summing it would overflow). Linux
/// never comes close (its requests are a few MiB at most).
pub const MAX_TRANSFER: u64 = (u32::MAX as u64 - 1) / SECTOR_SIZE * SECTOR_SIZE;
/// Copies go through a bounded bounce buffer: a hostile length never
/// becomes a huge allocation.
const CHUNK: usize = 64 << 10;
/// Ranges one DISCARD / WRITE_ZEROES request may carry, and sectors per range
/// (both advertised in the config space).
pub const MAX_RANGES: u32 = 32;
pub const MAX_RANGE_SECTORS: u32 = 1 << 22;
/// virtio_blk_discard_write_zeroes: le64 sector, le32 num_sectors, le32 flags.
const RANGE_LEN: usize = 16;
const RANGE_F_UNMAP: u32 = 1;

/// What the worker needs to serve a request.
pub struct Disk<'a> {
    pub backend: &'a mut dyn DiskBackend,
    pub readonly: bool,
    /// Capacity in bytes (a whole number of sectors).
    pub size: u64,
    pub id: &'a [u8; ID_LEN],
}

/// Serves the request in `chain`; returns the number of bytes written into
/// the driver's buffers (the used-ring length).
pub fn handle(disk: &mut Disk, mem: &GuestRam, chain: DescriptorChain<&GuestRam>) -> u32 {
    let descs: Vec<Descriptor> = chain.take(MAX_DESCRIPTORS + 1).collect();
    let Some(status) = status_descriptor(&descs) else {
        // Nowhere to put a status: complete it empty so the driver sees it fail.
        return 0;
    };
    let status_addr = GuestAddress(status.addr().0 + u64::from(status.len()) - 1);
    let (code, written) = match execute(disk, mem, &descs) {
        Ok(written) => (VIRTIO_BLK_S_OK, written),
        Err(code) => (code, 0),
    };
    if mem.write_obj(code, status_addr).is_err() {
        return 0;
    }
    written + 1
}

/// The last descriptor, if it can carry the status byte.
fn status_descriptor(descs: &[Descriptor]) -> Option<Descriptor> {
    let last = *descs.last()?;
    let ok = descs.len() >= 2
        && descs.len() <= MAX_DESCRIPTORS
        && last.is_write_only()
        && last.len() >= 1
        && last.addr().0.checked_add(u64::from(last.len())).is_some();
    ok.then_some(last)
}

fn execute(disk: &mut Disk, mem: &GuestRam, descs: &[Descriptor]) -> Result<u32, u8> {
    let header = descs[0];
    if header.is_write_only() || header.len() < 16 {
        return Err(VIRTIO_BLK_S_IOERR);
    }
    let mut raw = [0u8; 16];
    mem.read_slice(&mut raw, header.addr())
        .map_err(|_| VIRTIO_BLK_S_IOERR)?;
    let kind = u32::from_le_bytes(raw[0..4].try_into().unwrap());
    let sector = u64::from_le_bytes(raw[8..16].try_into().unwrap());
    let data = &descs[1..descs.len() - 1];
    match kind {
        VIRTIO_BLK_T_IN => read_sectors(disk, mem, sector, data),
        VIRTIO_BLK_T_OUT => write_sectors(disk, mem, sector, data),
        VIRTIO_BLK_T_FLUSH => flush(disk, data),
        VIRTIO_BLK_T_GET_ID => get_id(disk, mem, data),
        VIRTIO_BLK_T_DISCARD => zero_ranges(disk, mem, data, false),
        VIRTIO_BLK_T_WRITE_ZEROES => zero_ranges(disk, mem, data, true),
        _ => Err(VIRTIO_BLK_S_UNSUPP),
    }
}

/// Checks the data buffers point the right way, are non-empty, and that the
/// whole transfer is whole sectors inside the disk; returns its disk offset.
pub(super) fn check_transfer(
    disk: &Disk,
    sector: u64,
    data: &[Descriptor],
    write_only: bool,
) -> Result<u64, u8> {
    let err = VIRTIO_BLK_S_IOERR;
    if data.is_empty()
        || data
            .iter()
            .any(|d| d.len() == 0 || d.is_write_only() != write_only)
    {
        return Err(err);
    }
    let total: u64 = data.iter().map(|d| u64::from(d.len())).sum();
    let start = sector.checked_mul(SECTOR_SIZE).ok_or(err)?;
    let end = start.checked_add(total).ok_or(err)?;
    if !total.is_multiple_of(SECTOR_SIZE) || total > MAX_TRANSFER || end > disk.size {
        return Err(err);
    }
    Ok(start)
}

pub(super) fn read_sectors(
    disk: &mut Disk,
    mem: &GuestRam,
    sector: u64,
    data: &[Descriptor],
) -> Result<u32, u8> {
    let mut pos = check_transfer(disk, sector, data, true)?;
    let mut buf = vec![0u8; CHUNK];
    let mut written = 0u64;
    for d in data {
        for (addr, len) in chunks(d) {
            let buf = &mut buf[..len];
            disk.backend.read_at(buf, pos).map_err(host_error)?;
            mem.write_slice(buf, addr).map_err(|_| VIRTIO_BLK_S_IOERR)?;
            pos += len as u64;
            written += len as u64;
        }
    }
    // At most MAX_TRANSFER (check_transfer), so it fits with the status byte.
    u32::try_from(written).map_err(|_| VIRTIO_BLK_S_IOERR)
}

fn write_sectors(
    disk: &mut Disk,
    mem: &GuestRam,
    sector: u64,
    data: &[Descriptor],
) -> Result<u32, u8> {
    let mut pos = check_transfer(disk, sector, data, false)?;
    if disk.readonly {
        return Err(VIRTIO_BLK_S_IOERR);
    }
    let mut buf = vec![0u8; CHUNK];
    for d in data {
        for (addr, len) in chunks(d) {
            let buf = &mut buf[..len];
            mem.read_slice(buf, addr).map_err(|_| VIRTIO_BLK_S_IOERR)?;
            disk.backend.write_at(buf, pos).map_err(host_error)?;
            pos += len as u64;
        }
    }
    Ok(0)
}

/// FLUSH completes only once the data is on stable storage.
fn flush(disk: &mut Disk, data: &[Descriptor]) -> Result<u32, u8> {
    if !data.is_empty() {
        return Err(VIRTIO_BLK_S_IOERR);
    }
    if !disk.readonly {
        disk.backend.flush().map_err(host_error)?;
    }
    Ok(0)
}

/// DISCARD (`zeroes` false) and WRITE_ZEROES: every range is checked
/// before any is carried out, so a bad request changes nothing.
fn zero_ranges(
    disk: &mut Disk,
    mem: &GuestRam,
    data: &[Descriptor],
    zeroes: bool,
) -> Result<u32, u8> {
    let err = VIRTIO_BLK_S_IOERR;
    let [d] = data else {
        return Err(err);
    };
    let len = d.len() as usize;
    if d.is_write_only()
        || len == 0
        || !len.is_multiple_of(RANGE_LEN)
        || len / RANGE_LEN > MAX_RANGES as usize
    {
        return Err(err);
    }
    let mut raw = vec![0u8; len];
    mem.read_slice(&mut raw, d.addr()).map_err(|_| err)?;
    let mut ranges = Vec::with_capacity(len / RANGE_LEN);
    for r in raw.chunks_exact(RANGE_LEN) {
        let sector = u64::from_le_bytes(r[0..8].try_into().unwrap());
        let count = u32::from_le_bytes(r[8..12].try_into().unwrap());
        let flags = u32::from_le_bytes(r[12..16].try_into().unwrap());
        // Unknown flags, or unmap on a discard, are not ours to guess (5.2.6.2).
        if flags & !RANGE_F_UNMAP != 0 || (!zeroes && flags != 0) {
            return Err(VIRTIO_BLK_S_UNSUPP);
        }
        let start = sector.checked_mul(SECTOR_SIZE).ok_or(err)?;
        let bytes = u64::from(count) * SECTOR_SIZE;
        let end = start.checked_add(bytes).ok_or(err)?;
        if count == 0 || count > MAX_RANGE_SECTORS || end > disk.size {
            return Err(err);
        }
        ranges.push((start, bytes, flags & RANGE_F_UNMAP != 0));
    }
    if disk.readonly {
        return Err(err);
    }
    for (start, bytes, unmap) in ranges {
        let done = if zeroes {
            disk.backend.write_zeroes(start, bytes, unmap)
        } else {
            disk.backend.discard(start, bytes)
        };
        done.map_err(host_error)?;
    }
    Ok(0)
}

fn get_id(disk: &Disk, mem: &GuestRam, data: &[Descriptor]) -> Result<u32, u8> {
    let [d] = data else {
        return Err(VIRTIO_BLK_S_IOERR);
    };
    if !d.is_write_only() || d.len() == 0 {
        return Err(VIRTIO_BLK_S_IOERR);
    }
    let n = (d.len() as usize).min(ID_LEN);
    mem.write_slice(&disk.id[..n], d.addr())
        .map_err(|_| VIRTIO_BLK_S_IOERR)?;
    Ok(n as u32)
}

/// Host I/O errors the guest cannot explain are logged (the first few:
/// a failing disk must not flood the log), then reported as IOERR.
fn host_error(e: std::io::Error) -> u8 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static LOGGED: AtomicU32 = AtomicU32::new(0);
    if LOGGED.fetch_add(1, Ordering::Relaxed) < 16 {
        eprintln!("vireo-vmm: disk I/O error: {e}");
    }
    VIRTIO_BLK_S_IOERR
}

/// Splits a descriptor's buffer into bounce-buffer sized pieces.
fn chunks(d: &Descriptor) -> impl Iterator<Item = (GuestAddress, usize)> {
    let (base, len) = (d.addr().0, u64::from(d.len()));
    (0..len).step_by(CHUNK).map(move |off| {
        let n = (len - off).min(CHUNK as u64) as usize;
        (GuestAddress(base.wrapping_add(off)), n)
    })
}
