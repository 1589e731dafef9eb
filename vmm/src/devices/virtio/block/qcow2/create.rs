//! Creating qcow2 v3 images: header, one refcount table, one refcount
//! block, the L1 table; every data cluster is allocated later, on write.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::super::disk::{self, DiskError, DiskFormat, OpenOptions};
use super::header::{EXT_BACKING_FORMAT, MAGIC, MAX_CLUSTER_BITS, MIN_CLUSTER_BITS};

const HEADER_LEN: usize = 104;
const REFCOUNT_ORDER: u32 = 4;

#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Virtual size; defaults to the backing file's.
    pub size: Option<u64>,
    /// Backing file name as stored (relative names are relative to the new image).
    pub backing: Option<String>,
    pub backing_format: DiskFormat,
    pub cluster_bits: u32,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            size: None,
            backing: None,
            backing_format: DiskFormat::Qcow2,
            cluster_bits: 16,
        }
    }
}

/// Creates a new image at `path` (never overwriting a file).
pub fn create(path: &Path, opts: &CreateOptions) -> Result<(), DiskError> {
    let bad = |why: String| DiskError::qcow2(path, why);
    let cb = opts.cluster_bits;
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cb) {
        return Err(bad(format!(
            "cluster size 2^{cb} is out of range 512 bytes..2 MiB"
        )));
    }
    let size = match (opts.size, &opts.backing) {
        (Some(s), _) => s,
        (None, Some(b)) => backing_size(path, b, opts.backing_format)?,
        (None, None) => return Err(bad("a size is needed when there is no backing file".into())),
    };
    if !size.is_multiple_of(512) || size > 1 << 50 {
        return Err(bad(format!(
            "size {size} must be a multiple of 512 and at most 1 PiB"
        )));
    }
    let image = layout(size, cb, opts).map_err(bad)?;
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| DiskError::Open {
            path: path.display().to_string(),
            source: e,
        })?;
    file.write_all(&image)
        .and_then(|()| file.sync_all())
        .map_err(|e| DiskError::io(path, e))
}

/// The virtual size of the backing file, opened as the new image will open it.
fn backing_size(path: &Path, name: &str, format: DiskFormat) -> Result<u64, DiskError> {
    let full = match Path::new(name) {
        p if p.is_absolute() => p.to_path_buf(),
        p => path.parent().unwrap_or(Path::new(".")).join(p),
    };
    let opts = OpenOptions {
        format,
        readonly: true,
        direct: false,
        ..Default::default()
    };
    let backing = disk::open(&full, opts)
        .map_err(|e| DiskError::qcow2(path, format!("cannot open the backing file {e}")))?;
    Ok(backing.size())
}

/// The bytes of a new, empty image: header cluster, refcount table,
/// refcount block, L1 table.
fn layout(size: u64, cb: u32, opts: &CreateOptions) -> Result<Vec<u8>, String> {
    let cs = 1u64 << cb;
    let l1_size = size.div_ceil(cs * (cs / 8)).max(1);
    if l1_size * 8 > 32 << 20 {
        return Err("size too large for this cluster size (L1 table over 32 MiB)".into());
    }
    let l1_clusters = (l1_size * 8).div_ceil(cs);
    // Enough refcount blocks for the data, tables and some growth.
    let per_block = (cs * 8) >> REFCOUNT_ORDER;
    let blocks = (size * 2 / cs).div_ceil(per_block) + 1;
    let rt_clusters = (blocks * 8).div_ceil(cs);
    let meta_clusters = 1 + rt_clusters + 1 + l1_clusters;
    if meta_clusters > per_block {
        return Err("size too large for this cluster size".into());
    }
    let rt_offset = cs;
    let rb_offset = rt_offset + rt_clusters * cs;
    let l1_offset = rb_offset + cs;
    let mut image = vec![0u8; (meta_clusters * cs) as usize];
    write_header(
        &mut image,
        size,
        cb,
        l1_size,
        l1_offset,
        rt_offset,
        rt_clusters,
        opts,
    )?;
    image[rt_offset as usize..rt_offset as usize + 8].copy_from_slice(&rb_offset.to_be_bytes());
    for c in 0..meta_clusters as usize {
        let at = rb_offset as usize + c * 2;
        image[at..at + 2].copy_from_slice(&1u16.to_be_bytes());
    }
    Ok(image)
}

#[allow(clippy::too_many_arguments)]
fn write_header(
    b: &mut [u8],
    size: u64,
    cb: u32,
    l1_size: u64,
    l1_offset: u64,
    rt_offset: u64,
    rt_clusters: u64,
    opts: &CreateOptions,
) -> Result<(), String> {
    let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &MAGIC.to_be_bytes());
    put(4, &3u32.to_be_bytes());
    put(20, &cb.to_be_bytes());
    put(24, &size.to_be_bytes());
    put(36, &(l1_size as u32).to_be_bytes());
    put(40, &l1_offset.to_be_bytes());
    put(48, &rt_offset.to_be_bytes());
    put(56, &(rt_clusters as u32).to_be_bytes());
    put(96, &REFCOUNT_ORDER.to_be_bytes());
    put(100, &(HEADER_LEN as u32).to_be_bytes());
    let Some(name) = opts.backing.as_deref() else {
        return Ok(()); // the end-of-extensions marker is already zeros
    };
    if name.is_empty() || name.len() > 1023 {
        return Err("backing file name must be 1 to 1023 bytes".into());
    }
    let format: &[u8] = match opts.backing_format {
        DiskFormat::Raw => b"raw",
        DiskFormat::Qcow2 => b"qcow2",
    };
    put(HEADER_LEN, &EXT_BACKING_FORMAT.to_be_bytes());
    put(HEADER_LEN + 4, &(format.len() as u32).to_be_bytes());
    put(HEADER_LEN + 8, format);
    // Padded extension, then an 8-byte end marker (zeros), then the name.
    let name_at = HEADER_LEN + 8 + format.len().next_multiple_of(8) + 8;
    if (name_at + name.len()) as u64 > 1 << cb {
        return Err("backing file name does not fit in the first cluster".into());
    }
    put(name_at, name.as_bytes());
    put(8, &(name_at as u64).to_be_bytes());
    put(16, &(name.len() as u32).to_be_bytes());
    Ok(())
}
