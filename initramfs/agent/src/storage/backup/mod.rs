//! Backups of VMs, as vzdump does for Proxmox: one directory per backup
//! in the target pool (`DIR/.backups/VM-YYYYMMDD-HHMMSS/`), holding one
//! file per disk (zstd-compressed raw, or a sparse raw file) and
//! `manifest.json` (the VM's definition, each file's SHA-256). A backup
//! is written under a hidden name and renamed into place complete, so a
//! directory with a name is a finished backup.
//!
//! - `run.rs`: taking one (a running VM through overlays, see
//!   `crate::storage::backup::run`), retention.
//! - `restore.rs`: restoring (into scratch volumes, every checksum
//!   checked before anything is replaced) and verifying.

mod restore;
mod run;
mod vmm_api;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use restore::{RestoreJob, VerifyJob};
pub use run::BackupJob;

use super::{valid_name, Storage};
use crate::error::ApiError;
use crate::storage_api::BackupManifest;
use crate::store;

const BACKUPS_DIR: &str = ".backups";
const MANIFEST: &str = "manifest.json";

/// One entry of `GET /pools/{pool}/backups`: a manifest, or why it
/// cannot be read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupEntry {
    pub id: String,
    pub pool: String,
    pub manifest: Option<BackupManifest>,
    pub error: Option<String>,
}

pub fn backups_dir(pool_dir: &Path) -> PathBuf {
    pool_dir.join(BACKUPS_DIR)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYYMMDD-HHMMSS` (UTC) for seconds since the epoch.
pub fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Reads a backup's manifest; a missing or unreadable one is the reason
/// the backup cannot be used.
pub fn read_manifest(dir: &Path) -> Result<BackupManifest, String> {
    match store::read_json::<BackupManifest>(&dir.join(MANIFEST)) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err("it has no manifest.json".into()),
        Err(e) => Err(format!("its manifest is unreadable: {e}")),
    }
}

/// Commits the overlays a backup put on volume `v` (beside it, or in a
/// jailed VM's staging directory) if their VMM died before committing them
/// (nobody holds their lock); leaves one in use alone.
pub fn recover_overlay(dir: &Path, v: &super::VolumeRef) -> Result<(), ApiError> {
    for overlay in super::meta::backup_overlays(dir, &v.name) {
        recover_one(dir, v, &overlay)?;
    }
    Ok(())
}

fn recover_one(dir: &Path, v: &super::VolumeRef, overlay: &Path) -> Result<(), ApiError> {
    use super::image;
    let (Ok(overlay_lock), Ok(format)) = (
        image::lock_exclusive(overlay),
        super::volumes::format_of(dir, &v.name),
    ) else {
        return Ok(()); // a running VMM's: its own commit will remove it
    };
    drop(overlay_lock);
    // The base is opened here, not through the backing name the overlay
    // records (a jailed VMM recorded its path inside the jail).
    let base = image::open(&dir.join(&v.name), format, true, dir)?;
    let merged =
        vireo_vmm::devices::virtio::block::layers::commit_offline(overlay, base, |_, _| true)
            .map_err(|e| {
                ApiError::internal(format!("'{v}': committing a dead backup's overlay: {e}"))
            })?;
    drop(merged);
    std::fs::remove_file(overlay)
        .map_err(|e| ApiError::internal(format!("{}: {e}", overlay.display())))?;
    eprintln!(
        "vireo-agent: '{v}': committed the overlay an interrupted backup left ({})",
        overlay.display()
    );
    Ok(())
}

impl Storage {
    /// The directory of backup `id` in `pool`, which must exist.
    pub(super) fn backup_dir(&self, pool: &str, id: &str) -> Result<PathBuf, ApiError> {
        if !valid_name(id) {
            return Err(ApiError::bad_request(format!(
                "'{id}' is not a backup name"
            )));
        }
        let dir = backups_dir(&self.usable_dir(pool)?).join(id);
        if !dir.is_dir() {
            return Err(ApiError::not_found(format!(
                "no backup '{id}' in pool '{pool}'"
            )));
        }
        Ok(dir)
    }

    /// The backups in `pool` (of `vm` only, if given), oldest first.
    pub fn list_backups(&self, pool: &str, vm: Option<&str>) -> Result<Vec<BackupEntry>, ApiError> {
        let dir = backups_dir(&self.usable_dir(pool)?);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut all: Vec<BackupEntry> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| valid_name(id))
            .map(|id| {
                let read = read_manifest(&dir.join(&id));
                BackupEntry {
                    pool: pool.to_string(),
                    manifest: read.as_ref().ok().cloned(),
                    error: read.err(),
                    id,
                }
            })
            .filter(|e| vm.is_none_or(|vm| e.manifest.as_ref().is_none_or(|m| m.vm == vm)))
            .collect();
        all.sort_by_key(|e| (e.manifest.as_ref().map_or(0, |m| m.created), e.id.clone()));
        Ok(all)
    }

    /// The tenant of a backup: its VM's `tenant` tag when it was taken.
    pub fn backup_tenant(&self, pool: &str, id: &str) -> Result<Option<String>, ApiError> {
        let manifest = read_manifest(&self.backup_dir(pool, id)?).map_err(ApiError::internal)?;
        let tag = &manifest.definition["spec"]["tags"]["tenant"];
        Ok(tag.as_str().map(str::to_string))
    }

    pub fn delete_backup(&self, pool: &str, id: &str) -> Result<(), ApiError> {
        let dir = self.backup_dir(pool, id)?;
        std::fs::remove_dir_all(&dir)
            .map_err(|e| ApiError::internal(format!("deleting backup '{id}': {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::utc_stamp;

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_796_000_000), "20261130-005320");
    }
}
