//! Growing a closed qcow2 image's virtual size (`qemu-img resize` without
//! `--shrink`). Shrinking is refused: it would drop data past the new end.
//!
//! Crash safety: when the L1 table must grow, the new table is written at
//! the end of the file (its clusters counted first) and synced before one
//! 24-byte header write (size, L1 size and L1 offset are adjacent, inside
//! one sector) switches to it; the old table's clusters are released only
//! after that write is durable. A crash leaves the old size and table, or
//! the new ones, and at worst leaked clusters.

use std::os::unix::fs::FileExt;
use std::path::Path;

use super::super::disk::{open_file, DiskError};
use super::check_writable;
use super::header::Header;
use super::refcount::{read_table, Refcounts};

/// Header offset of the virtual size; the L1 size and offset follow it
/// (after the 4-byte encryption method, which is 0).
const OFF_SIZE: u64 = 24;
/// QEMU's limit on the L1 table.
const MAX_L1_BYTES: u64 = 32 << 20;

/// Grows the image at `path` to `new_size` bytes (a multiple of 512).
/// The caller holds the image's write lock (or knows nobody has it open).
pub fn grow(path: &Path, new_size: u64) -> Result<(), DiskError> {
    let bad = |why: String| DiskError::qcow2(path, why);
    let file = open_file(path, false, false)?;
    let len = file.metadata().map_err(|e| DiskError::io(path, e))?.len();
    let h = Header::read(&file, len).map_err(bad)?;
    check_writable(&h).map_err(bad)?;
    if new_size < h.size {
        return Err(bad(format!(
            "shrinking from {} to {new_size} bytes would drop data; only growing is supported",
            h.size
        )));
    }
    if !new_size.is_multiple_of(512) || new_size > 1 << 50 {
        return Err(bad(format!(
            "size {new_size} must be a multiple of 512 and at most 1 PiB"
        )));
    }
    let cs = h.cluster_size();
    let l1_needed = new_size.div_ceil(cs * (cs / 8)).max(1);
    if l1_needed * 8 > MAX_L1_BYTES {
        return Err(bad(
            "size too large for this cluster size (L1 table over 32 MiB)".into(),
        ));
    }
    let io = |e| DiskError::io(path, e);
    if l1_needed <= u64::from(h.l1_size) {
        file.write_all_at(&new_size.to_be_bytes(), OFF_SIZE)
            .and_then(|()| file.sync_data())
            .map_err(io)?;
        return Ok(());
    }
    move_l1(&file, &h, len, new_size, l1_needed).map_err(io)
}

/// Writes a bigger L1 table at the end of the file, switches the header
/// to it, then releases the old one.
fn move_l1(
    file: &std::fs::File,
    h: &Header,
    file_len: u64,
    new_size: u64,
    entries: u64,
) -> std::io::Result<()> {
    let cs = h.cluster_size();
    let mut refcounts = Refcounts::load(
        file,
        h.refcount_table_offset,
        h.refcount_table_clusters,
        h.cluster_bits,
        h.refcount_order,
        file_len,
    )
    .map_err(std::io::Error::other)?;
    let mut l1 = read_table(file, h.l1_table_offset, u64::from(h.l1_size))?;
    l1.resize(entries as usize, 0);
    let clusters = (entries * 8).div_ceil(cs);
    let offset = refcounts.allocate_contiguous(file, clusters)?;
    let mut raw: Vec<u8> = l1.iter().flat_map(|e| e.to_be_bytes()).collect();
    raw.resize((clusters * cs) as usize, 0);
    file.write_all_at(&raw, offset)?;
    file.sync_data()?;
    let mut header = [0u8; 24];
    header[..8].copy_from_slice(&new_size.to_be_bytes());
    header[12..16].copy_from_slice(&(entries as u32).to_be_bytes());
    header[16..].copy_from_slice(&offset.to_be_bytes());
    file.write_all_at(&header, OFF_SIZE)?;
    file.sync_data()?;
    let old_clusters = (u64::from(h.l1_size) * 8).div_ceil(cs);
    for i in 0..old_clusters {
        refcounts.release(file, h.l1_table_offset + i * cs)?;
    }
    file.sync_data()
}
