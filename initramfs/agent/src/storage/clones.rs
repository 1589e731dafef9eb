//! Copies of volumes: converting raw ↔ qcow2, full clones (a copy of what
//! the guest sees, in any pool and format) and linked clones (a qcow2
//! overlay whose backing file is a template volume of the same pool);
//! marking a volume as a template (frozen: no VM writes it, no resize, no
//! snapshot, no delete while linked clones rest on it).
//!
//! The long ones are tasks: `prepare_*` checks and claims what the
//! operation needs (so a conflict is answered at once), the returned job
//! runs in the task and copies into a hidden scratch file that becomes the
//! volume by an atomic rename only once it is complete.

use std::path::PathBuf;

use serde_json::json;

use super::copy::{copy_disk, Meter};
use super::image::{self, Scratch};
use super::meta::{self, VolumeMeta};
use super::volumes::{linked_clones_of, meta_of};
use super::{valid_name, Claim, Storage, VolumeFormat, VolumeRef};
use crate::error::ApiError;
use crate::storage_api::{CloneVolume, VolumeInfo};
use crate::tasks::TaskCtx;

/// A copy of `source` into a new image that becomes `target`.
pub struct CopyJob {
    storage: Storage,
    source: VolumeRef,
    source_dir: PathBuf,
    source_format: VolumeFormat,
    target: VolumeRef,
    target_dir: PathBuf,
    format: VolumeFormat,
    /// Conversion replaces the source itself.
    replaces_source: bool,
    _claims: Vec<Claim>,
}

impl Storage {
    pub fn prepare_convert(
        &self,
        v: &VolumeRef,
        format: VolumeFormat,
    ) -> Result<CopyJob, ApiError> {
        let claim = self.claim(v, "convert")?;
        let dir = self.existing(v)?;
        let m = meta_of(&dir, &v.name)?;
        if m.format == format {
            return Err(ApiError::bad_request(format!(
                "'{v}' is {} already",
                format.as_str()
            )));
        }
        refuse_frozen(v, &m, &dir, "convert")?;
        if !m.snapshots.is_empty() {
            return Err(ApiError::conflict(format!(
                "'{v}' has snapshots ({}): delete them first, a conversion would flatten them",
                m.snapshots.join(", ")
            )));
        }
        Ok(CopyJob {
            storage: self.clone(),
            source: v.clone(),
            source_dir: dir.clone(),
            source_format: m.format,
            target: v.clone(),
            target_dir: dir,
            format,
            replaces_source: true,
            _claims: vec![claim],
        })
    }

    pub fn prepare_full_clone(
        &self,
        v: &VolumeRef,
        req: &CloneVolume,
    ) -> Result<CopyJob, ApiError> {
        let target = self.clone_target(v, req)?;
        let source_claim = self.claim_unchecked(v, "clone")?;
        let dir = self.existing(v)?;
        let target_dir = self.usable_dir(&target.pool)?;
        let target_claim = self.new_volume_claim(&target, &target_dir)?;
        let m = meta_of(&dir, &v.name)?;
        Ok(CopyJob {
            storage: self.clone(),
            source: v.clone(),
            source_dir: dir,
            source_format: m.format,
            target,
            target_dir,
            format: req.format.unwrap_or(m.format),
            replaces_source: false,
            _claims: vec![source_claim, target_claim],
        })
    }

    fn clone_target(&self, v: &VolumeRef, req: &CloneVolume) -> Result<VolumeRef, ApiError> {
        if !valid_name(&req.name) {
            return Err(ApiError::bad_request(format!(
                "'{}' is not a volume name",
                req.name
            )));
        }
        Ok(VolumeRef {
            pool: req.pool.clone().unwrap_or_else(|| v.pool.clone()),
            name: req.name.clone(),
        })
    }

    /// Claims the name of a volume about to be made (409 if it exists).
    fn new_volume_claim(
        &self,
        target: &VolumeRef,
        dir: &std::path::Path,
    ) -> Result<Claim, ApiError> {
        let claim = self.claim_unchecked(target, "create")?;
        if dir.join(&target.name).exists() {
            return Err(ApiError::conflict(format!(
                "volume '{target}' exists already"
            )));
        }
        Ok(claim)
    }

    /// A qcow2 overlay on template `v`, in its pool.
    pub fn linked_clone(&self, v: &VolumeRef, req: &CloneVolume) -> Result<VolumeInfo, ApiError> {
        let target = self.clone_target(v, req)?;
        if target.pool != v.pool {
            return Err(ApiError::bad_request(
                "a linked clone stays in its template's pool (its backing file is there); make a full clone to copy it elsewhere",
            ));
        }
        if req.format == Some(VolumeFormat::Raw) {
            return Err(ApiError::bad_request("a linked clone is a qcow2 overlay"));
        }
        let _source = self.claim_unchecked(v, "clone")?;
        let dir = self.existing(v)?;
        let m = meta_of(&dir, &v.name)?;
        if !m.template {
            return Err(ApiError::conflict(format!(
                "'{v}' is not a template: mark it as one first (its VMs could change what the clone reads)"
            )));
        }
        let _target = self.new_volume_claim(&target, &dir)?;
        let (size, _) = image::virtual_size(&dir.join(&v.name), m.format)?;
        let backing = Some((v.name.as_str(), m.format));
        image::create_image(&dir.join(&target.name), VolumeFormat::Qcow2, size, backing)?;
        self.record(&dir, &target, VolumeFormat::Qcow2)?;
        self.volume_info(&target)
    }

    /// Marks `v` as a template (`on`), or back (only without linked clones).
    pub fn set_template(&self, v: &VolumeRef, on: bool) -> Result<VolumeInfo, ApiError> {
        let _claim = self.claim(v, "change the template flag of")?;
        let dir = self.existing(v)?;
        let mut m = meta_of(&dir, &v.name)?;
        if on {
            // Nobody may be writing it at this moment.
            drop(image::lock_exclusive(&dir.join(&v.name))?);
        } else {
            let clones = linked_clones_of(&dir, &v.name)?;
            if !clones.is_empty() {
                return Err(ApiError::conflict(format!(
                    "linked clones rest on '{v}' ({})",
                    clones.join(", ")
                )));
            }
        }
        m.template = on;
        meta::save(&dir, &v.name, &m)
            .map_err(|e| ApiError::internal(format!("recording '{v}': {e}")))?;
        self.volume_info(v)
    }
}

/// Templates and volumes under linked clones are never changed in place.
pub fn refuse_frozen(
    v: &VolumeRef,
    m: &VolumeMeta,
    dir: &std::path::Path,
    what: &str,
) -> Result<(), ApiError> {
    if m.template {
        return Err(ApiError::conflict(format!(
            "cannot {what} '{v}': it is a template"
        )));
    }
    let clones = linked_clones_of(dir, &v.name)?;
    if !clones.is_empty() {
        return Err(ApiError::conflict(format!(
            "cannot {what} '{v}': linked clones rest on it ({})",
            clones.join(", ")
        )));
    }
    Ok(())
}

impl CopyJob {
    /// The task's body: copy, then rename into place.
    pub fn run(self, ctx: &TaskCtx) -> Result<serde_json::Value, String> {
        let what = if self.replaces_source {
            "convert"
        } else {
            "clone"
        };
        let src_path = self.source_dir.join(&self.source.name);
        // Converting holds the write lock (the result replaces the file);
        // cloning reads under the shared lock (no VM may write it meanwhile).
        let mut src = image::open(
            &src_path,
            self.source_format,
            self.replaces_source,
            &self.source_dir,
        )
        .map_err(|e| e.1)?;
        let size = src.size();
        let scratch = Scratch::new(meta::scratch_path(
            &self.target_dir,
            &self.target.name,
            what,
        ));
        image::create_image(&scratch.0, self.format, size, None).map_err(|e| e.1)?;
        let mut dst =
            image::open(&scratch.0, self.format, true, &self.target_dir).map_err(|e| e.1)?;
        let mut meter = Meter::new(ctx, size);
        copy_disk(&mut *src, &mut *dst, &mut meter)?;
        drop(dst);
        let rate = meter.rate();
        let final_path = self.target_dir.join(&self.target.name);
        if !self.replaces_source && final_path.exists() {
            return Err(format!("volume '{}' appeared meanwhile", self.target));
        }
        image::replace(&scratch.keep(), &final_path).map_err(|e| e.1)?;
        drop(src);
        if self.replaces_source {
            let mut m = meta_of(&self.target_dir, &self.target.name).map_err(|e| e.1)?;
            m.format = self.format;
            meta::save(&self.target_dir, &self.target.name, &m)
                .map_err(|e| format!("recording the new format: {e}"))?;
        } else {
            self.storage
                .record(&self.target_dir, &self.target, self.format)
                .map_err(|e| e.1)?;
        }
        let info = self.storage.volume_info(&self.target).map_err(|e| e.1)?;
        Ok(json!({ "volume": info, "bytes": size, "bytes_per_second": rate }))
    }
}
