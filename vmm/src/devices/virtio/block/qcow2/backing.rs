//! Backing files: opened read-only, named relative to the overlay's
//! directory, any depth of qcow2 over qcow2 over raw, loops refused.

use std::path::{Path, PathBuf};

use super::super::disk::{open_file, DiskBackend, DiskError};
use super::super::raw::RawDisk;
use super::header::Header;
use super::{has_magic, Qcow2Disk};

/// Longest chain accepted; deeper ones are almost surely a mistake, and
/// each level holds open files and caches.
const MAX_DEPTH: usize = 64;

/// Opens the backing file `h` names for the image at `path`, if any.
/// `chain` lists the canonical paths of the images above it.
pub fn open(
    path: &Path,
    h: &Header,
    chain: &mut Vec<PathBuf>,
) -> Result<Option<Box<dyn DiskBackend>>, DiskError> {
    let Some(name) = h.backing_file.as_deref() else {
        return Ok(None);
    };
    let me = path.canonicalize().map_err(|e| DiskError::io(path, e))?;
    chain.push(me);
    let target = resolve(path, name);
    let missing = |e: std::io::Error| {
        DiskError::qcow2(
            path,
            format!("cannot open its backing file '{}': {e}", target.display()),
        )
    };
    let canonical = target.canonicalize().map_err(missing)?;
    if chain.contains(&canonical) {
        return Err(DiskError::qcow2(
            path,
            format!(
                "backing file '{}' loops back into its own chain",
                target.display()
            ),
        ));
    }
    if chain.len() >= MAX_DEPTH {
        return Err(DiskError::qcow2(
            path,
            format!("backing chain deeper than {MAX_DEPTH} images"),
        ));
    }
    let file = open_file(&target, true, false)?;
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
