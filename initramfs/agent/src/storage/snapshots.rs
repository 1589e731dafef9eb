//! External snapshots of a volume no VM is running on. The volume's path
//! never changes (VM definitions name it): a snapshot gives the volume's
//! current image a second, hidden name (`.NAME@SNAP`, a hard link) and
//! atomically renames a new qcow2 overlay on it over `NAME`. So the chain
//! is `.NAME@s0 ← .NAME@s1 ← … ← NAME`, all in one directory, each image
//! naming the one below by its plain file name.
//!
//! - revert (to the newest snapshot): a fresh overlay on its image is
//!   renamed over `NAME`; what was written since is gone.
//! - delete (commit into the base): the layer above the snapshot's image
//!   (the next snapshot's image, or the volume) is copied into it, and the
//!   merged image is renamed over that layer. Until the rename the layer
//!   above shadows every cluster that was copied, so a crash at any point
//!   leaves the volume reading as before.

use std::path::{Path, PathBuf};

use serde_json::json;
use vireo_vmm::devices::virtio::block::layers::commit_offline;
use vireo_vmm::devices::virtio::block::qcow2::resize;

use super::clones::refuse_frozen;
use super::copy::{copy_disk, Meter};
use super::image::{self, disk_error, Scratch};
use super::meta::{self, VolumeMeta};
use super::volumes::meta_of;
use super::{valid_name, Claim, Storage, VolumeFormat, VolumeRef};
use crate::error::ApiError;
use crate::storage_api::VolumeInfo;
use crate::tasks::TaskCtx;

/// Deleting a snapshot: the commit of the layer above it into its image.
pub struct CommitJob {
    storage: Storage,
    volume: VolumeRef,
    dir: PathBuf,
    snapshot: String,
    _claim: Claim,
}

fn save(dir: &Path, v: &VolumeRef, m: &VolumeMeta) -> Result<(), ApiError> {
    meta::save(dir, &v.name, m).map_err(|e| ApiError::internal(format!("recording '{v}': {e}")))
}

impl Storage {
    /// The volume's record, for a snapshot operation on it (claimed, not
    /// a template, no linked clones, not open anywhere while `lock` lives).
    fn snapshot_target(
        &self,
        v: &VolumeRef,
        what: &str,
    ) -> Result<(Claim, PathBuf, VolumeMeta), ApiError> {
        let claim = self.claim(v, what)?;
        let dir = self.existing(v)?;
        let m = meta_of(&dir, &v.name)?;
        refuse_frozen(v, &m, &dir, what)?;
        Ok((claim, dir, m))
    }

    pub fn create_snapshot(&self, v: &VolumeRef, snap: &str) -> Result<VolumeInfo, ApiError> {
        if !valid_name(snap) || snap.contains('@') {
            return Err(ApiError::bad_request(format!(
                "'{snap}' is not a snapshot name"
            )));
        }
        let (_claim, dir, mut m) = self.snapshot_target(v, "snapshot")?;
        if m.snapshots.iter().any(|s| s == snap) {
            return Err(ApiError::conflict(format!(
                "'{v}' has a snapshot '{snap}' already"
            )));
        }
        let path = dir.join(&v.name);
        let _lock = image::lock_exclusive(&path)?;
        let (size, _) = image::virtual_size(&path, m.format)?;
        let frozen_name = meta::snapshot_name(&v.name, snap);
        let frozen = dir.join(&frozen_name);
        // A leftover of a snapshot that crashed before it was recorded.
        let _ = std::fs::remove_file(&frozen);
        let overlay = Scratch::new(meta::scratch_path(&dir, &v.name, "snapshot-new"));
        image::create_image(
            &overlay.0,
            VolumeFormat::Qcow2,
            size,
            Some((&frozen_name, m.format)),
        )?;
        let fail = |e: std::io::Error| ApiError::internal(format!("snapshotting '{v}': {e}"));
        std::fs::hard_link(&path, &frozen).map_err(fail)?;
        image::replace(&overlay.keep(), &path)?;
        if m.snapshots.is_empty() {
            m.base_format = Some(m.format);
        }
        m.snapshots.push(snap.to_string());
        m.format = VolumeFormat::Qcow2;
        save(&dir, v, &m)?;
        self.volume_info(v)
    }

    /// Drops what was written since the newest snapshot `snap`.
    pub fn revert_snapshot(&self, v: &VolumeRef, snap: &str) -> Result<VolumeInfo, ApiError> {
        let (_claim, dir, m) = self.snapshot_target(v, "revert")?;
        let index = snapshot_index(v, &m, snap)?;
        if index + 1 != m.snapshots.len() {
            return Err(ApiError::conflict(format!(
                "'{snap}' is not the newest snapshot of '{v}': delete the newer ones first ({})",
                m.snapshots[index + 1..].join(", ")
            )));
        }
        let path = dir.join(&v.name);
        let _lock = image::lock_exclusive(&path)?;
        let frozen_name = meta::snapshot_name(&v.name, snap);
        let format = m.snapshot_format(index);
        let (size, _) = image::virtual_size(&dir.join(&frozen_name), format)?;
        let overlay = Scratch::new(meta::scratch_path(&dir, &v.name, "revert"));
        image::create_image(
            &overlay.0,
            VolumeFormat::Qcow2,
            size,
            Some((&frozen_name, format)),
        )?;
        image::replace(&overlay.keep(), &path)?;
        self.volume_info(v)
    }

    pub fn prepare_delete_snapshot(
        &self,
        v: &VolumeRef,
        snap: &str,
    ) -> Result<CommitJob, ApiError> {
        let (claim, dir, m) = self.snapshot_target(v, "delete a snapshot of")?;
        snapshot_index(v, &m, snap)?;
        drop(image::lock_exclusive(&dir.join(&v.name))?);
        Ok(CommitJob {
            storage: self.clone(),
            volume: v.clone(),
            dir,
            snapshot: snap.to_string(),
            _claim: claim,
        })
    }
}

fn snapshot_index(v: &VolumeRef, m: &VolumeMeta, snap: &str) -> Result<usize, ApiError> {
    m.snapshots
        .iter()
        .position(|s| s == snap)
        .ok_or_else(|| ApiError::not_found(format!("'{v}' has no snapshot '{snap}'")))
}

impl CommitJob {
    pub fn run(self, ctx: &TaskCtx) -> Result<serde_json::Value, String> {
        let (v, dir) = (&self.volume, &self.dir);
        let mut m = meta_of(dir, &v.name).map_err(|e| e.1)?;
        let index = snapshot_index(v, &m, &self.snapshot).map_err(|e| e.1)?;
        let volume_path = dir.join(&v.name);
        // Held to the end, so no VM starts on the volume meanwhile; when the
        // volume itself is committed, the commit's own lock on it takes over.
        let mut lock = Some(image::lock_exclusive(&volume_path).map_err(|e| e.1)?);
        let base = dir.join(meta::snapshot_name(&v.name, &self.snapshot));
        let upper = match m.snapshots.get(index + 1) {
            Some(next) => dir.join(meta::snapshot_name(&v.name, next)),
            None => {
                lock = None;
                volume_path.clone()
            }
        };
        let base_format = m.snapshot_format(index);
        if base_format == VolumeFormat::Raw && upper != volume_path {
            // The raw image cannot take the qcow2 snapshot's name: the image
            // above names that file as qcow2. Flatten the two into a qcow2.
            flatten_into(ctx, dir, &base, &upper)?;
            m.snapshots.remove(index);
            m.base_format = Some(VolumeFormat::Qcow2);
            meta::save(dir, &v.name, &m).map_err(|e| format!("recording '{v}': {e}"))?;
            drop(lock);
            let info = self.storage.volume_info(v).map_err(|e| e.1)?;
            return Ok(json!({ "volume": info, "flattened": true }));
        }
        grow_to_upper(&base, base_format, &upper)?;
        let base_disk = image::open(&base, base_format, true, dir).map_err(|e| e.1)?;
        let mut meter = Meter::new(ctx, 0);
        let merged = commit_offline(&upper, base_disk, |done, total| {
            meter.set(done, total).is_ok()
        })
        .map_err(|e| disk_error(e).1)?;
        drop(merged);
        image::replace(&base, &upper).map_err(|e| e.1)?;
        m.snapshots.remove(index);
        if index == 0 {
            // The merged image is the oldest now, in the old base's format.
            if m.snapshots.is_empty() {
                m.format = base_format;
                m.base_format = None;
            } else {
                m.base_format = Some(base_format);
            }
        }
        meta::save(dir, &v.name, &m).map_err(|e| format!("recording '{v}': {e}"))?;
        drop(lock);
        let info = self.storage.volume_info(v).map_err(|e| e.1)?;
        Ok(json!({ "volume": info, "committed_bytes": meter.total }))
    }
}

/// Replaces the qcow2 image `upper` (an overlay on the raw `base`) by a
/// standalone qcow2 copy of what it reads, then drops `base`.
fn flatten_into(ctx: &TaskCtx, dir: &Path, base: &Path, upper: &Path) -> Result<(), String> {
    let mut src = image::open(upper, VolumeFormat::Qcow2, true, dir).map_err(|e| e.1)?;
    let size = src.size();
    let name = upper
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("snapshot");
    let scratch = Scratch::new(dir.join(format!("{name}.flatten")));
    image::create_image(&scratch.0, VolumeFormat::Qcow2, size, None).map_err(|e| e.1)?;
    let mut dst = image::open(&scratch.0, VolumeFormat::Qcow2, true, dir).map_err(|e| e.1)?;
    copy_disk(&mut *src, &mut *dst, &mut Meter::new(ctx, size))?;
    drop((src, dst));
    image::replace(&scratch.keep(), upper).map_err(|e| e.1)?;
    std::fs::remove_file(base).map_err(|e| format!("removing {}: {e}", base.display()))
}

/// The base must be as large as the layer committed into it (a volume
/// grown after its snapshot).
fn grow_to_upper(base: &Path, format: VolumeFormat, upper: &Path) -> Result<(), String> {
    let (base_size, _) = image::virtual_size(base, format).map_err(|e| e.1)?;
    let (upper_size, _) = image::virtual_size(upper, VolumeFormat::Qcow2).map_err(|e| e.1)?;
    if upper_size <= base_size {
        return Ok(());
    }
    match format {
        VolumeFormat::Qcow2 => resize::grow(base, upper_size).map_err(|e| e.to_string()),
        VolumeFormat::Raw => std::fs::OpenOptions::new()
            .write(true)
            .open(base)
            .and_then(|f| f.set_len(upper_size))
            .map_err(|e| format!("growing {}: {e}", base.display())),
    }
}
