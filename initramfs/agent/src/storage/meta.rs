//! What the agent records about a volume, beside it in its pool
//! (`DIR/.vireo/NAME.json`), so a pool carries its own description (an
//! NFS pool mounted on another node reads the same), and the names of the
//! hidden files that belong to a volume.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::VolumeFormat;
use crate::store;

/// The pool's directory of volume records.
const META_DIR: &str = ".vireo";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMeta {
    /// The format the agent wrote it in (never sniffed from the guest's bytes).
    pub format: VolumeFormat,
    #[serde(default)]
    pub template: bool,
    /// External snapshots, oldest first; the volume's file is an overlay
    /// on the newest one's frozen image.
    #[serde(default)]
    pub snapshots: Vec<String>,
    /// The format of the oldest snapshot's image (the volume's format
    /// before its first snapshot; every later image is a qcow2 overlay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_format: Option<VolumeFormat>,
    /// The tenant that owns it (docs/security.md); None: operators' only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl VolumeMeta {
    pub fn new(format: VolumeFormat) -> Self {
        Self {
            format,
            template: false,
            snapshots: Vec::new(),
            base_format: None,
            tenant: None,
        }
    }

    /// The format of snapshot number `i`'s image.
    pub fn snapshot_format(&self, i: usize) -> VolumeFormat {
        match i {
            0 => self.base_format.unwrap_or(self.format),
            _ => VolumeFormat::Qcow2,
        }
    }
}

fn meta_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(META_DIR).join(format!("{name}.json"))
}

pub fn load(dir: &Path, name: &str) -> io::Result<Option<VolumeMeta>> {
    store::read_json(&meta_path(dir, name))
}

pub fn save(dir: &Path, name: &str, meta: &VolumeMeta) -> io::Result<()> {
    store::write_json(&meta_path(dir, name), meta)
}

pub fn remove(dir: &Path, name: &str) -> io::Result<()> {
    // The volume's owner stamp (vms/owner_stamp.rs) goes with it.
    let _ = std::fs::remove_file(dir.join(META_DIR).join(format!("{name}.owner")));
    match std::fs::remove_file(meta_path(dir, name)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The file name of snapshot `snap` of volume `name` (its frozen image).
pub fn snapshot_name(name: &str, snap: &str) -> String {
    format!(".{name}@{snap}")
}

/// A hidden scratch file of volume `name` for `what` (a conversion, a
/// new overlay, ...).
pub fn scratch_path(dir: &Path, name: &str, what: &str) -> PathBuf {
    dir.join(format!(".{name}.{what}"))
}

/// The overlay a backup of a running VM puts on volume `name`.
pub fn backup_overlay_name(name: &str) -> String {
    format!(".{name}.backup-overlay")
}

/// Prefix of a jailed VM's staging directory in a pool
/// (`POOL/.jail-staging-UUID`, bound writable into its jail): a live backup
/// puts the overlays of that VM's disks in this pool there.
pub const JAIL_STAGING_PREFIX: &str = ".jail-staging-";

pub fn jail_staging_dir(pool_dir: &Path, uuid: &str) -> PathBuf {
    pool_dir.join(format!("{JAIL_STAGING_PREFIX}{uuid}"))
}

/// Every backup overlay on volume `name` of `pool_dir` that exists: beside
/// the disk (unjailed VMs) and in any jailed VM's staging directory.
pub fn backup_overlays(pool_dir: &Path, name: &str) -> Vec<PathBuf> {
    let file = backup_overlay_name(name);
    let staged = std::fs::read_dir(pool_dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(JAIL_STAGING_PREFIX))
        })
        .map(|e| e.path().join(&file));
    std::iter::once(pool_dir.join(&file))
        .chain(staged)
        .filter(|p| p.exists())
        .collect()
}
