//! Fuzz harness (feature `fuzz`): a qcow2 image from the fuzzer's bytes,
//! opened, read and (when the first byte says so) written, zeroed,
//! discarded and flushed. The image lives in an in-memory file; its
//! backing names resolve under a directory that does not exist, so no
//! input reaches the host's files.

use std::path::Path;

use super::Qcow2Disk;
use crate::devices::virtio::block::disk::{DiskBackend, DiskFormat, OpenOptions};
use crate::fuzz::memfd;

/// Byte 0: bit 0 read-write; the rest is the image file.
pub fn image(data: &[u8]) {
    let (&flags, bytes) = data.split_first().unwrap_or((&0, &[]));
    let writable = flags & 1 != 0;
    let file = memfd::file(bytes, 0);
    let opts = OpenOptions {
        format: DiskFormat::Qcow2,
        readonly: !writable,
        direct: false,
        backing_dirs: Vec::new(),
    };
    let path = Path::new("/nonexistent/vireo-fuzz/image.qcow2");
    let Ok(mut disk) = Qcow2Disk::open(file, path, opts) else {
        return;
    };
    let size = disk.size();
    let mut buf = vec![0u8; 4096];
    let offsets = [0, size / 2, size.saturating_sub(4096)];
    for &at in &offsets {
        let len = (size - at.min(size)).min(4096) as usize;
        let _ = disk.read_at(&mut buf[..len], at);
    }
    if !writable {
        return;
    }
    for &at in &offsets {
        let len = (size - at.min(size)).min(4096) as usize;
        let _ = disk.write_at(&buf[..len], at);
    }
    let _ = disk.write_zeroes(0, size.min(1 << 20), true);
    let _ = disk.discard(size / 2, (size / 2).min(1 << 20));
    let _ = disk.flush();
}
