//! Backing files: opened read-only, named relative to the overlay's
//! directory, any depth of qcow2 over qcow2 over raw, loops refused.
//!
//! An image names its own backing file, so an untrusted image could name
//! `/dev/sda` or `../../etc/shadow` and show it to the guest. Every backing
//! file (after symlinks are resolved) must therefore lie in the directory
//! tree of the image the VM was given, or in a tree the operator allowed
//! (`--disk ...,backing-dir=DIR`; `backing-dir=/` trusts the image fully).

use std::path::{Path, PathBuf};

use super::super::disk::{open_file, DiskBackend, DiskError};
use super::super::raw::RawDisk;
use super::header::Header;
use super::{has_magic, Qcow2Disk};

/// Longest chain accepted; deeper ones are almost surely a mistake, and
/// each level holds open files and caches.
const MAX_DEPTH: usize = 64;

/// The images of a chain opened so far, and where backing files may be.
pub struct Chain {
    /// Canonical paths of the images above the one being opened.
    above: Vec<PathBuf>,
    /// Canonical directory trees backing files may lie in.
    allowed: Vec<PathBuf>,
}

impl Chain {
    /// For the top image at `top`: its own directory plus `extra_dirs`.
    pub fn new(top: &Path, extra_dirs: &[PathBuf]) -> Result<Self, DiskError> {
        let canonical = top.canonicalize().map_err(|e| DiskError::io(top, e))?;
        let mut allowed = vec![canonical.parent().unwrap_or(Path::new("/")).to_path_buf()];
        for dir in extra_dirs {
            let dir = dir.canonicalize().map_err(|e| {
                DiskError::qcow2(top, format!("backing-dir '{}': {e}", dir.display()))
            })?;
            allowed.push(dir);
        }
        Ok(Self {
            above: Vec::new(),
            allowed,
        })
    }

    fn permits(&self, canonical: &Path) -> bool {
        self.allowed.iter().any(|dir| canonical.starts_with(dir))
    }
}

/// Opens the backing file `h` names for the image at `path`, if any.
pub fn open(
    path: &Path,
    h: &Header,
    chain: &mut Chain,
) -> Result<Option<Box<dyn DiskBackend>>, DiskError> {
    let Some(name) = h.backing_file.as_deref() else {
        return Ok(None);
    };
    let me = path.canonicalize().map_err(|e| DiskError::io(path, e))?;
    chain.above.push(me);
    let target = resolve(path, name);
    let missing = |e: std::io::Error| {
        DiskError::qcow2(
            path,
            format!("cannot open its backing file '{}': {e}", target.display()),
        )
    };
    let canonical = target.canonicalize().map_err(missing)?;
    if !chain.permits(&canonical) {
        return Err(DiskError::qcow2(
            path,
            format!(
                "its backing file '{}' (really '{}') is outside the image's directory and every \
                 backing-dir; add backing-dir=DIR to the --disk if that file is meant to be used",
                target.display(),
                canonical.display()
            ),
        ));
    }
    if chain.above.contains(&canonical) {
        return Err(DiskError::qcow2(
            path,
            format!(
                "backing file '{}' loops back into its own chain",
                target.display()
            ),
        ));
    }
    if chain.above.len() >= MAX_DEPTH {
        return Err(DiskError::qcow2(
            path,
            format!("backing chain deeper than {MAX_DEPTH} images"),
        ));
    }
    let file = open_file(&target, true, false)?;
    // Shared: other overlays may read the same base; nobody may write it.
    super::super::disk::lock_or_explain(&file, &target, false)?;
    let is_qcow2 = match h.backing_format.as_deref() {
        Some("qcow2") => true,
        Some("raw") => false,
        Some(other) => {
            return Err(DiskError::qcow2(
                path,
                format!("backing format '{other}' is not supported (raw or qcow2)"),
            ));
        }
        // No format recorded: look at the file, as QEMU does.
        None => has_magic(&file).map_err(|e| DiskError::io(&target, e))?,
    };
    let disk: Box<dyn DiskBackend> = if is_qcow2 {
        Box::new(Qcow2Disk::open_in_chain(file, &target, true, chain)?)
    } else {
        Box::new(RawDisk::new(file, true, false)?)
    };
    Ok(Some(disk))
}

/// A relative backing name is relative to the overlay's directory.
fn resolve(overlay: &Path, name: &str) -> PathBuf {
    let name = Path::new(name);
    if name.is_absolute() {
        return name.to_path_buf();
    }
    overlay.parent().unwrap_or(Path::new(".")).join(name)
}
