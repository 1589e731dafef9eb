//! Fuzz harness (feature `fuzz`): a qcow2 image from the fuzzer's bytes,
//! opened, read and (when the first byte says so) written, zeroed,
//! discarded and flushed. The image lives in an in-memory file; its path
//! (which open() canonicalizes to confine backing files to its directory)
//! is an empty placeholder in a directory of its own, so a backing name
//! finds nothing there but the placeholder, and no input reaches the
//! host's other files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::Qcow2Disk;
use crate::devices::virtio::block::disk::{DiskBackend, DiskFormat, OpenOptions};
use crate::fuzz::memfd;

/// The placeholder path the image is opened as (one for every run: it
/// stays empty, so runs side by side share it).
fn image_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join("vireo-fuzz-qcow2");
        std::fs::create_dir_all(&dir).expect("the fuzz image's directory");
        let path = dir.join("image.qcow2");
        std::fs::write(&path, b"").expect("the fuzz image's placeholder");
        path
    })
}

fn options(writable: bool) -> OpenOptions {
    OpenOptions {
        format: DiskFormat::Qcow2,
        readonly: !writable,
        direct: false,
        backing_dirs: Vec::new(),
    }
}

/// Byte 0: bit 0 read-write; the rest is the image file.
pub fn image(data: &[u8]) {
    let (&flags, bytes) = data.split_first().unwrap_or((&0, &[]));
    let writable = flags & 1 != 0;
    let file = memfd::file(bytes, 0);
    let Ok(mut disk) = Qcow2Disk::open(file, image_path(), options(writable)) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzzer mutates from this seed: unless it opens, every input
    /// stops at the header checks and the read and write paths go unfuzzed.
    #[test]
    fn the_seed_image_opens() {
        let seed = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fuzz/corpus/qcow2/rw-512-clusters"
        );
        let data = std::fs::read(seed).unwrap();
        let file = memfd::file(&data[1..], 0);
        if let Err(e) = Qcow2Disk::open(file, image_path(), options(true)) {
            panic!("the seed does not open: {e}");
        }
    }
}
