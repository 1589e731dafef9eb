//! Restoring a backup, and verifying one. A restore writes every disk
//! into a hidden scratch volume while it hashes the backup file as read;
//! only when every file's SHA-256 matches the manifest (and zstd's own
//! frame checksum held) are the scratch volumes renamed into place and the
//! VM defined. A corrupt backup is refused with the reason, nothing changed.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use serde_json::json;

use super::read_manifest;
use crate::error::ApiError;
use crate::storage::copy::{stream_to_disk, Hashing, Meter, CHUNK};
use crate::storage::image::{self, Scratch};
use crate::storage::meta::{self, VolumeMeta};
use crate::storage::volumes::meta_of;
use crate::storage::{valid_name, Claim, Storage, VmDisk, VolumeRef};
use crate::storage_api::{BackupDisk, BackupManifest, Compression, RestoreRequest};
use crate::tasks::TaskCtx;

/// Where one backed-up disk goes.
struct Target {
    disk: BackupDisk,
    volume: VolumeRef,
    dir: PathBuf,
}

pub struct RestoreJob {
    storage: Storage,
    backup: PathBuf,
    manifest: BackupManifest,
    vm: String,
    replace: bool,
    targets: Vec<Target>,
    _claims: Vec<Claim>,
}

pub struct VerifyJob {
    backup: PathBuf,
    manifest: BackupManifest,
}

impl Storage {
    pub fn prepare_restore(
        &self,
        pool: &str,
        id: &str,
        req: RestoreRequest,
    ) -> Result<RestoreJob, ApiError> {
        let backup = self.backup_dir(pool, id)?;
        let manifest = read_manifest(&backup).map_err(|why| {
            ApiError::bad_request(format!("backup '{id}' cannot be restored: {why}"))
        })?;
        let host = self.vm_host()?;
        let vm = req.vm.clone().unwrap_or_else(|| manifest.vm.clone());
        let replace = match host.vm(&vm) {
            Ok(view) if view.api_socket.is_some() => {
                return Err(ApiError::conflict(format!(
                    "VM '{vm}' is running: stop it first"
                )))
            }
            Ok(_) if vm != manifest.vm => {
                return Err(ApiError::conflict(format!(
                    "VM '{vm}' exists: restore into a new name, or into '{}' itself",
                    manifest.vm
                )))
            }
            Ok(_) => true,
            Err(e) if e.0 == axum::http::StatusCode::NOT_FOUND => false,
            Err(e) => return Err(e),
        };
        let mut claims = Vec::new();
        let mut targets = Vec::new();
        for disk in &manifest.disks {
            let volume = target_volume(&vm, &manifest, disk, req.storage.as_deref(), replace)?;
            let dir = self.usable_dir(&volume.pool)?;
            claims.push(self.claim_unchecked(&volume, "restore")?);
            let exists = dir.join(&volume.name).exists();
            if exists && !replace {
                return Err(ApiError::conflict(format!(
                    "volume '{volume}' exists already"
                )));
            }
            if exists {
                // Stopped, but nothing else may have it open either.
                drop(image::lock_exclusive(&dir.join(&volume.name))?);
            }
            targets.push(Target {
                disk: disk.clone(),
                volume,
                dir,
            });
        }
        Ok(RestoreJob {
            storage: self.clone(),
            backup,
            manifest,
            vm,
            replace,
            targets,
            _claims: claims,
        })
    }

    pub fn prepare_verify(&self, pool: &str, id: &str) -> Result<VerifyJob, ApiError> {
        let backup = self.backup_dir(pool, id)?;
        let manifest = read_manifest(&backup)
            .map_err(|why| ApiError::bad_request(format!("backup '{id}': {why}")))?;
        Ok(VerifyJob { backup, manifest })
    }
}

/// The volume a disk is restored to: the original one when the VM itself
/// is restored in place, else `VM-DISKID.FORMAT` in the chosen pool.
fn target_volume(
    vm: &str,
    manifest: &BackupManifest,
    disk: &BackupDisk,
    storage: Option<&str>,
    replace: bool,
) -> Result<VolumeRef, ApiError> {
    if replace && storage.is_none_or(|p| p == disk.volume.pool) && vm == manifest.vm {
        return Ok(disk.volume.clone());
    }
    let name = format!("{vm}-{}.{}", disk.id, disk.format.as_str());
    if !valid_name(&name) {
        return Err(ApiError::bad_request(format!(
            "'{name}' is not a volume name"
        )));
    }
    Ok(VolumeRef {
        pool: storage.unwrap_or(&disk.volume.pool).to_string(),
        name,
    })
}

/// Opens backup file `disk` for reading its raw contents; the hashing
/// reader underneath sees the stored bytes.
fn open_stored(
    backup: &std::path::Path,
    disk: &BackupDisk,
) -> Result<Hashing<BufReader<File>>, String> {
    if !valid_name(&disk.file) {
        return Err(format!("the manifest names a bad file '{}'", disk.file));
    }
    let path = backup.join(&disk.file);
    let file =
        File::open(&path).map_err(|e| format!("disk '{}': {}: {e}", disk.id, path.display()))?;
    Ok(Hashing::new(BufReader::with_capacity(CHUNK, file)))
}

/// Reads `disk`'s backup file through `consume` (the raw contents) and
/// checks its SHA-256 against the manifest.
fn read_checked(
    backup: &std::path::Path,
    disk: &BackupDisk,
    compress: Compression,
    consume: &mut dyn FnMut(&mut dyn Read) -> Result<(), String>,
) -> Result<(), String> {
    let corrupt = |why: String| format!("disk '{}': the backup is corrupt: {why}", disk.id);
    let mut stored = open_stored(backup, disk)?;
    match compress {
        Compression::None => consume(&mut stored).map_err(corrupt)?,
        Compression::Zstd => {
            let mut dec =
                zstd::stream::Decoder::new(&mut stored).map_err(|e| corrupt(e.to_string()))?;
            consume(&mut dec).map_err(corrupt)?;
        }
    }
    // Whatever follows the data (there should be nothing) is hashed too.
    std::io::copy(&mut stored, &mut std::io::sink()).map_err(|e| corrupt(e.to_string()))?;
    let got = stored.hex();
    if got != disk.sha256 {
        return Err(format!(
            "disk '{}': {} has SHA-256 {got}, the manifest says {}: the backup is corrupt",
            disk.id, disk.file, disk.sha256
        ));
    }
    Ok(())
}

impl RestoreJob {
    pub fn run(self, ctx: &TaskCtx) -> Result<serde_json::Value, String> {
        let total = self.targets.iter().map(|t| t.disk.virtual_size).sum();
        let mut meter = Meter::new(ctx, total);
        let mut scratches = Vec::new();
        for t in &self.targets {
            scratches.push(self.restore_disk(t, &mut meter)?);
        }
        // Every disk is restored and checked: now replace.
        let mut disks = Vec::new();
        for (t, scratch) in self.targets.iter().zip(scratches) {
            self.put_in_place(t, scratch)?;
            disks.push(VmDisk {
                id: t.disk.id.clone(),
                volume: t.volume.clone(),
            });
        }
        let host = self.storage.vm_host().map_err(|e| e.1)?;
        host.define_vm(&self.vm, &self.manifest.definition, &disks, self.replace)
            .map_err(|e| format!("defining VM '{}': {}", self.vm, e.1))?;
        Ok(json!({
            "vm": self.vm,
            "backup": self.manifest.id,
            "volumes": disks.iter().map(|d| d.volume.to_string()).collect::<Vec<_>>(),
            "bytes_per_second": meter.rate(),
        }))
    }

    fn restore_disk(&self, t: &Target, meter: &mut Meter) -> Result<Scratch, String> {
        let scratch = Scratch::new(meta::scratch_path(&t.dir, &t.volume.name, "restore"));
        image::create_image(&scratch.0, t.disk.format, t.disk.virtual_size, None)
            .map_err(|e| e.1)?;
        let mut dst = image::open(&scratch.0, t.disk.format, true, &t.dir).map_err(|e| e.1)?;
        let size = t.disk.virtual_size;
        read_checked(
            &self.backup,
            &t.disk,
            self.manifest.compress,
            &mut |input| stream_to_disk(input, &mut *dst, size, meter),
        )?;
        Ok(scratch)
    }

    /// The restored image becomes the volume (an old one's snapshots go).
    fn put_in_place(&self, t: &Target, scratch: Scratch) -> Result<(), String> {
        let path = t.dir.join(&t.volume.name);
        if let Ok(old) = meta_of(&t.dir, &t.volume.name) {
            for s in &old.snapshots {
                let _ = std::fs::remove_file(t.dir.join(meta::snapshot_name(&t.volume.name, s)));
            }
        }
        image::replace(&scratch.keep(), &path).map_err(|e| e.1)?;
        meta::save(&t.dir, &t.volume.name, &VolumeMeta::new(t.disk.format))
            .map_err(|e| format!("recording '{}': {e}", t.volume))
    }
}

impl VerifyJob {
    /// Reads every file, checks its SHA-256 (and zstd's frame checksum).
    pub fn run(self, ctx: &TaskCtx) -> Result<serde_json::Value, String> {
        let total = self.manifest.disks.iter().map(|d| d.virtual_size).sum();
        let mut meter = Meter::new(ctx, total);
        let mut buf = vec![0u8; CHUNK];
        for disk in &self.manifest.disks {
            let mut read = 0u64;
            read_checked(&self.backup, disk, self.manifest.compress, &mut |input| {
                loop {
                    let n = input.read(&mut buf).map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    read += n as u64;
                    meter.add(n as u64)?;
                }
                Ok(())
            })?;
            if read != disk.virtual_size {
                return Err(format!(
                    "disk '{}': the backup holds {read} bytes, the disk {}",
                    disk.id, disk.virtual_size
                ));
            }
        }
        Ok(
            json!({ "backup": self.manifest.id, "verified": true, "disks": self.manifest.disks.len() }),
        )
    }
}
