//! What a qcow2 image says about itself (`qemu-img info`), read from its
//! validated header without opening its backing chain or taking a lock:
//! listing volumes must work while VMs run on them.

use std::path::Path;

use super::super::disk::{open_file, DiskError};
use super::header::Header;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Virtual size in bytes.
    pub size: u64,
    pub cluster_size: u64,
    /// The backing file's name as stored (relative to the image's directory).
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
}

pub fn read_info(path: &Path) -> Result<ImageInfo, DiskError> {
    let file = open_file(path, true, false)?;
    let len = file.metadata().map_err(|e| DiskError::io(path, e))?.len();
    let h = Header::read(&file, len).map_err(|why| DiskError::qcow2(path, why))?;
    Ok(ImageInfo {
        size: h.size,
        cluster_size: h.cluster_size(),
        backing_file: h.backing_file,
        backing_format: h.backing_format,
    })
}
