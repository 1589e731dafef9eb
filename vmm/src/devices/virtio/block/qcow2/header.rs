//! The qcow2 header (QEMU's docs/interop/qcow2.txt), parsed and checked
//! before anything else is read: every field that later code trusts as an
//! offset, size or shift is bounded here, so a corrupt image fails at open
//! with a message and is never written.

use std::fs::File;
use std::os::unix::fs::FileExt;

pub const MAGIC: u32 = 0x5146_49fb;
/// v3 header size without the compression-type byte and padding.
const V3_HEADER_MIN: u32 = 104;
const V2_HEADER_LEN: u32 = 72;
pub const MIN_CLUSTER_BITS: u32 = 9;
pub const MAX_CLUSTER_BITS: u32 = 21;
/// QEMU's limits on the L1 and refcount tables (32 MiB and 8 MiB); bigger
/// ones only come from corrupt headers, and would be huge allocations.
const MAX_L1_BYTES: u64 = 32 << 20;
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;
const MAX_BACKING_NAME: u32 = 1023;

pub const INCOMPAT_DIRTY: u64 = 1 << 0;
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_EXTERNAL_DATA: u64 = 1 << 2;
const INCOMPAT_COMPRESSION_TYPE: u64 = 1 << 3;
const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;
/// Incompatible features this implementation understands.
const INCOMPAT_KNOWN: u64 = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION_TYPE;

const EXT_END: u32 = 0;
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;

/// Header field offsets this crate writes back.
pub const OFF_AUTOCLEAR: u64 = 88;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
    pub cluster_bits: u32,
    pub size: u64,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub incompatible: u64,
    pub compatible: u64,
    pub autoclear: u64,
    pub refcount_order: u32,
    pub header_length: u32,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Reads and validates the header of `file` (`file_len` bytes long).
    pub fn read(file: &File, file_len: u64) -> Result<Self, String> {
        let mut first = vec![0u8; 1 << MIN_CLUSTER_BITS];
        let n = read_prefix(file, &mut first)?;
        if n < V2_HEADER_LEN as usize || be32(&first, 0) != MAGIC {
            return Err("not a qcow2 image (bad magic)".into());
        }
        let version = be32(&first, 4);
        let cluster_bits = be32(&first, 20);
        if !(2..=3).contains(&version) {
            return Err(format!("qcow2 version {version} is not supported (2 or 3)"));
        }
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(format!(
                "cluster_bits {cluster_bits} is out of range 9..=21"
            ));
        }
        // The header and its extensions live in the first cluster.
        let mut cluster = vec![0u8; 1 << cluster_bits];
        read_prefix(file, &mut cluster)?;
        let h = Self::parse_fields(&cluster, version, cluster_bits)?;
        h.check_features()?;
        h.check_tables(file_len)?;
        Ok(h)
    }

    fn parse_fields(b: &[u8], version: u32, cluster_bits: u32) -> Result<Self, String> {
        if be32(b, 32) != 0 {
            return Err("encrypted images are not supported".into());
        }
        let v3 = version == 3;
        let header_length = if v3 { be32(b, 100) } else { V2_HEADER_LEN };
        if v3 && (header_length < V3_HEADER_MIN || !header_length.is_multiple_of(8)) {
            return Err(format!("header_length {header_length} is invalid"));
        }
        if u64::from(header_length) >= 1 << cluster_bits {
            return Err("header does not fit in the first cluster".into());
        }
        let refcount_order = if v3 { be32(b, 96) } else { 4 };
        if refcount_order > 6 {
            return Err(format!(
                "refcount_order {refcount_order} is out of range 0..=6"
            ));
        }
        let compression_type = if header_length > V3_HEADER_MIN {
            b[104]
        } else {
            0
        };
        if compression_type != 0 {
            return Err(format!(
                "compression type {compression_type} (zstd) is not supported"
            ));
        }
        let mut h = Self {
            version,
            backing_file: None,
            backing_format: None,
            cluster_bits,
            size: be64(b, 24),
            l1_size: be32(b, 36),
            l1_table_offset: be64(b, 40),
            refcount_table_offset: be64(b, 48),
            refcount_table_clusters: be32(b, 56),
            nb_snapshots: be32(b, 60),
            incompatible: if v3 { be64(b, 72) } else { 0 },
            compatible: if v3 { be64(b, 80) } else { 0 },
            autoclear: if v3 { be64(b, 88) } else { 0 },
            refcount_order,
            header_length,
        };
        h.backing_format = parse_extensions(b, header_length as usize)?;
        h.backing_file = parse_backing_name(b, be64(b, 8), be32(b, 16))?;
        Ok(h)
    }

    fn check_features(&self) -> Result<(), String> {
        let unknown = self.incompatible & !INCOMPAT_KNOWN;
        if unknown & INCOMPAT_EXTERNAL_DATA != 0 {
            return Err("external data files are not supported".into());
        }
        if unknown & INCOMPAT_EXTENDED_L2 != 0 {
            return Err("extended L2 entries (subclusters) are not supported".into());
        }
        if unknown != 0 {
            return Err(format!("unknown incompatible features {unknown:#x}"));
        }
        Ok(())
    }

    fn check_tables(&self, file_len: u64) -> Result<(), String> {
        let cs = self.cluster_size();
        // Guest offsets must fit the 56-bit host offsets of L2 entries.
        if self.size > 1 << 55 {
            return Err(format!("virtual size {} is too large", self.size));
        }
        let l2_span = cs * (cs / 8);
        let l1_needed = self.size.div_ceil(l2_span);
        let l1_bytes = u64::from(self.l1_size) * 8;
        if u64::from(self.l1_size) < l1_needed {
            return Err(format!(
                "L1 table ({} entries) is too small for the virtual size",
                self.l1_size
            ));
        }
        if l1_bytes > MAX_L1_BYTES {
            return Err(format!("L1 table of {l1_bytes} bytes is too large"));
        }
        check_area("L1 table", self.l1_table_offset, l1_bytes, cs, file_len)?;
        let rt_bytes = u64::from(self.refcount_table_clusters) * cs;
        if self.refcount_table_clusters == 0 || rt_bytes > MAX_REFTABLE_BYTES {
            return Err(format!(
                "refcount table of {} clusters is invalid",
                self.refcount_table_clusters
            ));
        }
        check_area(
            "refcount table",
            self.refcount_table_offset,
            rt_bytes,
            cs,
            file_len,
        )
    }
}

/// An on-disk area must be cluster aligned and lie inside the file.
pub fn check_area(what: &str, offset: u64, len: u64, cs: u64, file_len: u64) -> Result<(), String> {
    let inside = offset.checked_add(len).is_some_and(|end| end <= file_len);
    if !offset.is_multiple_of(cs) || offset == 0 || !inside {
        return Err(format!(
            "{what} at offset {offset:#x} (+{len} bytes) lies outside the image or is misaligned"
        ));
    }
    Ok(())
}

/// Reads as much of `buf` as the file has; returns the bytes read.
fn read_prefix(file: &File, buf: &mut [u8]) -> Result<usize, String> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the header: {e}")),
        }
    }
    Ok(done)
}

/// Walks the header extensions (inside the first cluster); returns the
/// backing file format, if one is named.
fn parse_extensions(b: &[u8], start: usize) -> Result<Option<String>, String> {
    let mut at = start;
    let mut format = None;
    loop {
        if at + 8 > b.len() {
            return Err("header extensions run past the first cluster".into());
        }
        let (kind, len) = (be32(b, at), be32(b, at + 4) as usize);
        if kind == EXT_END {
            return Ok(format);
        }
        let data = at + 8;
        let end = data.checked_add(len).filter(|&e| e <= b.len());
        let end = end.ok_or("a header extension runs past the first cluster")?;
        if kind == EXT_BACKING_FORMAT {
            let name =
                std::str::from_utf8(&b[data..end]).map_err(|_| "backing format is not UTF-8")?;
            format = Some(name.to_string());
        }
        at = end.next_multiple_of(8);
    }
}

fn parse_backing_name(b: &[u8], offset: u64, len: u32) -> Result<Option<String>, String> {
    if offset == 0 {
        return Ok(None);
    }
    if len == 0 || len > MAX_BACKING_NAME {
        return Err(format!("backing file name length {len} is invalid"));
    }
    let end = offset
        .checked_add(u64::from(len))
        .filter(|&e| e <= b.len() as u64);
    let end = end.ok_or("backing file name lies outside the first cluster")? as usize;
    let name = std::str::from_utf8(&b[offset as usize..end])
        .map_err(|_| "backing file name is not UTF-8")?;
    Ok(Some(name.to_string()))
}
