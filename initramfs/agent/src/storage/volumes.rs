//! Volumes: list (real and virtual sizes), create, delete, resize. Every
//! change claims the volume (one operation at a time, none while a VM uses
//! it) and holds its image lock while it works.

use std::io;
use std::path::Path;

use vireo_vmm::devices::virtio::block::qcow2::resize;

use super::image::{self, disk_error};
use super::meta::{self, VolumeMeta};
use super::{sniff_format, valid_name, Storage, VolumeFormat, VolumeRef};
use crate::error::ApiError;
use crate::storage_api::{CreateVolume, SnapshotInfo, VolumeInfo};

/// The format the agent recorded for volume `name`, else the file's magic
/// (a file put into the pool by hand).
pub fn format_of(dir: &Path, name: &str) -> io::Result<VolumeFormat> {
    match meta::load(dir, name)? {
        Some(m) => Ok(m.format),
        None => sniff_format(&dir.join(name)),
    }
}

/// The volume record, made up from the file for volumes without one.
pub fn meta_of(dir: &Path, name: &str) -> Result<VolumeMeta, ApiError> {
    let fail = |e: io::Error| ApiError::internal(format!("volume '{name}': {e}"));
    match meta::load(dir, name).map_err(fail)? {
        Some(m) => Ok(m),
        None => Ok(VolumeMeta::new(
            sniff_format(&dir.join(name)).map_err(fail)?,
        )),
    }
}

/// Names of the volumes in `dir` (regular files with volume names).
pub fn volume_names(dir: &Path) -> Result<Vec<String>, ApiError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ApiError::unavailable(format!("cannot read {}: {e}", dir.display())))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| valid_name(n))
        .collect();
    names.sort();
    Ok(names)
}

/// The volumes of `dir` that are linked clones of `name` (qcow2 overlays
/// naming it as their backing file).
pub fn linked_clones_of(dir: &Path, name: &str) -> Result<Vec<String>, ApiError> {
    let mut clones = Vec::new();
    for other in volume_names(dir)? {
        if other == name || format_of(dir, &other).ok() != Some(VolumeFormat::Qcow2) {
            continue;
        }
        let backing = image::virtual_size(&dir.join(&other), VolumeFormat::Qcow2)
            .ok()
            .and_then(|(_, b)| b);
        if backing.as_deref() == Some(name) {
            clones.push(other);
        }
    }
    Ok(clones)
}

fn check_size(size: u64) -> Result<(), ApiError> {
    if size == 0 || !size.is_multiple_of(512) || size > 1 << 50 {
        return Err(ApiError::bad_request(format!(
            "size {size} must be a positive multiple of 512 bytes, at most 1 PiB"
        )));
    }
    Ok(())
}

impl Storage {
    pub fn list_volumes(&self, pool: &str) -> Result<Vec<VolumeInfo>, ApiError> {
        let dir = self.usable_dir(pool)?;
        volume_names(&dir)?
            .into_iter()
            .map(|name| {
                self.info_in(
                    &dir,
                    &VolumeRef {
                        pool: pool.into(),
                        name,
                    },
                )
            })
            .collect()
    }

    pub fn volume_info(&self, v: &VolumeRef) -> Result<VolumeInfo, ApiError> {
        let dir = self.existing(v)?;
        self.info_in(&dir, v)
    }

    /// The pool directory of `v`, which must exist (404 otherwise).
    pub(super) fn existing(&self, v: &VolumeRef) -> Result<std::path::PathBuf, ApiError> {
        let dir = self.usable_dir(&v.pool)?;
        if !dir.join(&v.name).is_file() {
            return Err(ApiError::not_found(format!("no volume '{v}'")));
        }
        Ok(dir)
    }

    fn info_in(&self, dir: &Path, v: &VolumeRef) -> Result<VolumeInfo, ApiError> {
        let m = meta_of(dir, &v.name)?;
        let path = dir.join(&v.name);
        let (virtual_size, backing) = image::virtual_size(&path, m.format)?;
        let snapshots = m
            .snapshots
            .iter()
            .map(|s| SnapshotInfo {
                name: s.clone(),
                real_size: image::real_size(&dir.join(meta::snapshot_name(&v.name, s))),
            })
            .collect();
        Ok(VolumeInfo {
            volume: v.clone(),
            format: m.format,
            virtual_size,
            real_size: image::real_size(&path),
            template: m.template,
            snapshots,
            linked_to: backing.filter(|b| valid_name(b)),
            used_by: self.users_of(v),
            tenant: m.tenant,
        })
    }

    pub fn create_volume(&self, pool: &str, req: CreateVolume) -> Result<VolumeInfo, ApiError> {
        if !valid_name(&req.name) {
            return Err(ApiError::bad_request(format!(
                "'{}' is not a volume name (letters, digits, '.', '_', '-'; not starting with '.')",
                req.name
            )));
        }
        check_size(req.size)?;
        let dir = self.usable_dir(pool)?;
        let v = VolumeRef {
            pool: pool.into(),
            name: req.name.clone(),
        };
        let _claim = self.claim(&v, "create")?;
        image::create_image(&dir.join(&v.name), req.format, req.size, None)?;
        let meta = VolumeMeta {
            tenant: req.tenant,
            ..VolumeMeta::new(req.format)
        };
        self.record_meta(&dir, &v, &meta)?;
        self.info_in(&dir, &v)
    }

    /// The tenant a volume belongs to (from its record).
    pub fn volume_tenant(&self, v: &VolumeRef) -> Result<Option<String>, ApiError> {
        let dir = self.existing(v)?;
        Ok(meta_of(&dir, &v.name)?.tenant)
    }

    /// Writes a new volume's record; on failure the file goes too.
    pub(super) fn record(
        &self,
        dir: &Path,
        v: &VolumeRef,
        format: VolumeFormat,
    ) -> Result<(), ApiError> {
        self.record_meta(dir, v, &VolumeMeta::new(format))
    }

    fn record_meta(&self, dir: &Path, v: &VolumeRef, m: &VolumeMeta) -> Result<(), ApiError> {
        meta::save(dir, &v.name, m).map_err(|e| {
            let _ = std::fs::remove_file(dir.join(&v.name));
            ApiError::internal(format!("recording '{v}': {e}"))
        })
    }

    /// Deletes a volume and its snapshots; refused while a VM uses it or
    /// linked clones rest on it.
    pub fn delete_volume(&self, v: &VolumeRef) -> Result<(), ApiError> {
        let _claim = self.claim(v, "delete")?;
        let dir = self.existing(v)?;
        let clones = linked_clones_of(&dir, &v.name)?;
        if !clones.is_empty() {
            return Err(ApiError::conflict(format!(
                "cannot delete '{v}': linked clones rest on it ({})",
                clones.join(", ")
            )));
        }
        let path = dir.join(&v.name);
        let _lock = image::lock_exclusive(&path)?;
        let m = meta_of(&dir, &v.name)?;
        let fail = |e: io::Error| ApiError::internal(format!("deleting '{v}': {e}"));
        std::fs::remove_file(&path).map_err(fail)?;
        for s in &m.snapshots {
            let _ = std::fs::remove_file(dir.join(meta::snapshot_name(&v.name, s)));
        }
        meta::remove(&dir, &v.name).map_err(fail)?;
        image::sync_dir(&path).map_err(fail)
    }

    /// Grows a volume (offline: no VM may have it open).
    pub fn resize_volume(&self, v: &VolumeRef, size: u64) -> Result<VolumeInfo, ApiError> {
        check_size(size)?;
        let _claim = self.claim(v, "resize")?;
        let dir = self.existing(v)?;
        let m = meta_of(&dir, &v.name)?;
        if m.template {
            return Err(ApiError::conflict(format!(
                "'{v}' is a template: its linked clones see its size"
            )));
        }
        let path = dir.join(&v.name);
        let (now, _) = image::virtual_size(&path, m.format)?;
        if size <= now {
            return Err(ApiError::bad_request(format!(
                "'{v}' is {now} bytes: only growing is supported (asked for {size})"
            )));
        }
        let lock = image::lock_exclusive(&path)?;
        match m.format {
            VolumeFormat::Raw => lock
                .set_len(size)
                .and_then(|()| lock.sync_all())
                .map_err(|e| ApiError::internal(format!("resizing '{v}': {e}")))?,
            VolumeFormat::Qcow2 => resize::grow(&path, size).map_err(disk_error)?,
        }
        drop(lock);
        self.info_in(&dir, v)
    }
}
