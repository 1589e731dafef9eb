//! The file systems a boot partition may have, behind one small trait:
//! ext2/3/4 (ext4-view) and FAT (fatfs), both read-only. Paths are
//! absolute, `/` separated; symlinks are followed (ext4: Debian's
//! `/vmlinuz` is one).

use std::io::{Read, Write};
use std::path::Path;

use super::image::View;

pub trait BootFs {
    fn kind(&self) -> &'static str;
    /// A regular file at `path` (after symlinks).
    fn is_file(&self, path: &str) -> bool;
    /// The names in directory `path`; empty if there is none.
    fn list(&self, path: &str) -> Vec<String>;
    /// The whole file, refused above `max` bytes.
    fn read(&self, path: &str, max: u64) -> Result<Vec<u8>, String>;
    /// Copies the file to `dest`, refused above `max` bytes.
    fn copy_to(&self, path: &str, dest: &Path, max: u64) -> Result<u64, String>;
}

/// The file system on `view`, if Vireo reads it.
pub fn open(view: &View) -> Option<Box<dyn BootFs>> {
    if let Ok(fs) = ext4_view::Ext4::load(Box::new(view.clone())) {
        return Some(Box::new(Ext4Fs(fs)));
    }
    let fat = fatfs::FileSystem::new(view.clone(), fatfs::FsOptions::new()).ok()?;
    Some(Box::new(FatFs(fat)))
}

const COPY_CHUNK: usize = 1 << 20;

fn too_big(path: &str, len: u64, max: u64) -> String {
    format!("{path} is {len} bytes, more than the {max} a boot file may have")
}

struct Ext4Fs(ext4_view::Ext4);

impl BootFs for Ext4Fs {
    fn kind(&self) -> &'static str {
        "ext4"
    }

    fn is_file(&self, path: &str) -> bool {
        self.0
            .metadata(path)
            .is_ok_and(|m| m.file_type().is_regular_file())
    }

    fn list(&self, path: &str) -> Vec<String> {
        let Ok(dir) = self.0.read_dir(path) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().as_str().ok().map(String::from))
            .filter(|n| n != "." && n != "..")
            .collect()
    }

    fn read(&self, path: &str, max: u64) -> Result<Vec<u8>, String> {
        let len = self
            .0
            .metadata(path)
            .map_err(|e| format!("{path}: {e}"))?
            .len();
        if len > max {
            return Err(too_big(path, len, max));
        }
        self.0.read(path).map_err(|e| format!("{path}: {e}"))
    }

    fn copy_to(&self, path: &str, dest: &Path, max: u64) -> Result<u64, String> {
        let mut file = self.0.open(path).map_err(|e| format!("{path}: {e}"))?;
        let len = file.metadata().len();
        if len > max {
            return Err(too_big(path, len, max));
        }
        let mut out =
            std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut copied = 0;
        loop {
            let n = file
                .read_bytes(&mut buf)
                .map_err(|e| format!("{path}: {e}"))?;
            if n == 0 {
                return Ok(copied);
            }
            out.write_all(&buf[..n])
                .map_err(|e| format!("{}: {e}", dest.display()))?;
            copied += n as u64;
        }
    }
}

struct FatFs(fatfs::FileSystem<View>);

/// fatfs paths are relative to the root.
fn rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

impl BootFs for FatFs {
    fn kind(&self) -> &'static str {
        "fat"
    }

    fn is_file(&self, path: &str) -> bool {
        self.0.root_dir().open_file(rel(path)).is_ok()
    }

    fn list(&self, path: &str) -> Vec<String> {
        let root = self.0.root_dir();
        let dir = match rel(path) {
            "" => Ok(root),
            p => root.open_dir(p),
        };
        let Ok(dir) = dir else {
            return Vec::new();
        };
        dir.iter()
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .filter(|n| n != "." && n != "..")
            .collect()
    }

    fn read(&self, path: &str, max: u64) -> Result<Vec<u8>, String> {
        let mut file = self
            .0
            .root_dir()
            .open_file(rel(path))
            .map_err(|e| format!("{path}: {e}"))?;
        let mut out = Vec::new();
        (&mut file)
            .take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("{path}: {e}"))?;
        match out.len() as u64 > max {
            true => Err(too_big(path, out.len() as u64, max)),
            false => Ok(out),
        }
    }

    fn copy_to(&self, path: &str, dest: &Path, max: u64) -> Result<u64, String> {
        let mut file = self
            .0
            .root_dir()
            .open_file(rel(path))
            .map_err(|e| format!("{path}: {e}"))?;
        let mut out =
            std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        let copied = std::io::copy(&mut (&mut file).take(max + 1), &mut out)
            .map_err(|e| format!("{path}: {e}"))?;
        match copied > max {
            true => Err(too_big(path, copied, max)),
            false => Ok(copied),
        }
    }
}
