//! Taking a backup. A stopped VM's disks are read under their shared
//! image lock (the VM cannot start writing them meanwhile). A running
//! VM's disks are frozen at one instant, as vzdump's snapshot mode does,
//! with external overlays: pause the VM, switch every disk onto a new
//! overlay (`PUT /vm/disks/{id}/overlay`), resume (the guest is paused
//! only for that), copy the frozen base images, then have the VMM commit
//! each overlay back while the guest runs. The overlays are committed
//! whatever happens to the copy, so the VM never stays on them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use vireo_vmm::devices::virtio::block::disk::DiskBackend;
use vireo_vmm::devices::virtio::block::layers::open_frozen;

use super::{backups_dir, now, utc_stamp, vmm_api, MANIFEST};
use crate::error::ApiError;
use crate::storage::copy::{disk_to_stream, is_zero, Hashing, Meter};
use crate::storage::image::{self, disk_format};
use crate::storage::meta;
use crate::storage::{Claim, Storage, VmDisk, VmView, VolumeFormat};
use crate::storage_api::{BackupDisk, BackupManifest, BackupRequest, Compression};
use crate::store;
use crate::tasks::TaskCtx;

/// A disk to back up, resolved.
struct Source {
    disk: VmDisk,
    path: PathBuf,
    dir: PathBuf,
    format: VolumeFormat,
}

pub struct BackupJob {
    storage: Storage,
    req: BackupRequest,
    view: VmView,
    sources: Vec<Source>,
    target: PathBuf,
    _claims: Vec<Claim>,
}

impl Storage {
    pub fn prepare_backup(&self, req: BackupRequest) -> Result<BackupJob, ApiError> {
        let view = self.vm_host()?.vm(&req.vm)?;
        let target = self.usable_dir(&req.storage)?;
        if req.max_backups == Some(0) {
            return Err(ApiError::bad_request("max_backups must be at least 1"));
        }
        let whole = crate::storage::VolumeRef {
            pool: req.storage.clone(),
            name: format!("backup-of-{}", req.vm),
        };
        let mut claims = vec![self.claim_unchecked(&whole, "back up")?];
        let mut sources = Vec::new();
        for disk in &view.disks {
            claims.push(self.claim_unchecked(&disk.volume, "back up")?);
            let r = self.resolve(&disk.volume)?;
            if let Some(overlay) =
                meta::backup_overlays(&r.backing_dirs[0], &disk.volume.name).first()
            {
                return Err(ApiError::conflict(format!(
                    "'{}': the overlay of a backup still running ({}) is on it",
                    disk.volume,
                    overlay.display()
                )));
            }
            sources.push(Source {
                disk: disk.clone(),
                dir: r.backing_dirs[0].clone(),
                path: r.path,
                format: r.format,
            });
        }
        Ok(BackupJob {
            storage: self.clone(),
            req,
            view,
            sources,
            target,
            _claims: claims,
        })
    }
}

impl BackupJob {
    pub fn run(self, ctx: &TaskCtx) -> Result<serde_json::Value, String> {
        let created = now();
        let root = backups_dir(&self.target);
        let stamp = format!("{}-{}", self.req.vm, utc_stamp(created));
        // Two backups within one second get -2, -3, ... (claims keep two
        // backups of one VM from racing for the same name).
        let id = (1..)
            .map(|n| match n {
                1 => stamp.clone(),
                n => format!("{stamp}-{n}"),
            })
            .find(|id| !root.join(id).exists())
            .expect("an unused name");
        let partial = root.join(format!(".{id}.partial"));
        let done = root.join(&id);
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
        let result = self.write_backup(ctx, &id, created, &partial);
        let (manifest, rate) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(e);
            }
        };
        std::fs::rename(&partial, &done)
            .and_then(|()| image::sync_dir(&done))
            .map_err(|e| format!("publishing the backup: {e}"))?;
        let removed = self.retain()?;
        Ok(serde_json::json!({
            "backup": manifest,
            "pool": self.req.storage,
            "bytes_per_second": rate,
            "removed": removed,
        }))
    }

    /// Copies every disk into `dir` and writes the manifest.
    fn write_backup(
        &self,
        ctx: &TaskCtx,
        id: &str,
        created: u64,
        dir: &Path,
    ) -> Result<(BackupManifest, f64), String> {
        let total = self.sources.iter().map(disk_size).sum::<Result<u64, _>>()?;
        let mut meter = Meter::new(ctx, total);
        let (disks, pause_ms) = match &self.view.api_socket {
            Some(socket) => self.copy_live(socket, dir, &mut meter)?,
            None => (self.copy_stopped(dir, &mut meter)?, None),
        };
        let manifest = BackupManifest {
            id: id.to_string(),
            vm: self.req.vm.clone(),
            created,
            compress: self.req.compress,
            live: self.view.api_socket.is_some(),
            pause_ms,
            definition: self.view.definition.clone(),
            disks,
        };
        store::write_json(&dir.join(MANIFEST), &manifest).map_err(|e| format!("manifest: {e}"))?;
        Ok((manifest, meter.rate()))
    }

    fn copy_stopped(&self, dir: &Path, meter: &mut Meter) -> Result<Vec<BackupDisk>, String> {
        self.sources
            .iter()
            .map(|s| {
                let mut disk = image::open(&s.path, s.format, false, &s.dir).map_err(|e| e.1)?;
                self.store_disk(s, &mut *disk, dir, meter)
            })
            .collect()
    }

    /// Freezes the disks through overlays, copies them, commits.
    fn copy_live(
        &self,
        socket: &Path,
        dir: &Path,
        meter: &mut Meter,
    ) -> Result<(Vec<BackupDisk>, Option<f64>), String> {
        let (layered, paused) = self.freeze(socket);
        let copied = paused.and_then(|pause_ms| {
            let disks = self
                .sources
                .iter()
                .map(|s| {
                    let mut base =
                        open_frozen(&s.path, disk_format(s.format), std::slice::from_ref(&s.dir))
                            .map_err(|e| e.to_string())?;
                    self.store_disk(s, &mut *base, dir, meter)
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok((disks, Some(pause_ms)))
        });
        let committed: Result<(), String> = layered
            .iter()
            .try_for_each(|s| vmm_api::commit(socket, &s.disk.id));
        let copied = copied?;
        committed?;
        Ok(copied)
    }

    /// pause → an overlay on every disk → resume. Returns the disks put
    /// on overlays (to commit, even if a later one failed) and the pause.
    fn freeze<'a>(&'a self, socket: &Path) -> (Vec<&'a Source>, Result<f64, String>) {
        let mut layered = Vec::new();
        let started = Instant::now();
        let paused = match vmm_api::call(socket, "PUT", "/vm/pause", "") {
            Ok((204, _)) => true,
            // Paused by someone else already: it stays paused.
            Ok((409, _)) => false,
            Ok((status, body)) => {
                return (layered, Err(format!("pausing the VM ({status}): {body}")))
            }
            Err(e) => return (layered, Err(e)),
        };
        let mut outcome = Ok(());
        for s in &self.sources {
            let overlay = match self.overlay_path(s) {
                Ok(p) => p,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            let body = serde_json::json!({ "path": overlay }).to_string();
            let path = format!("/vm/disks/{}/overlay", s.disk.id);
            match vmm_api::expect(socket, "PUT", &path, &body, 204) {
                Ok(_) => layered.push(s),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if paused {
            if let Err(e) = vmm_api::expect(socket, "PUT", "/vm/resume", "", 204) {
                outcome = outcome.and(Err(e));
            }
        }
        let pause_ms = started.elapsed().as_secs_f64() * 1000.0;
        (layered, outcome.map(|()| pause_ms))
    }

    /// Where the VMM is to create disk `s`'s overlay, as it sees paths:
    /// beside the disk, or for a jailed VM in its staging directory in the
    /// disk's pool (bound into its jail at start; durable, unlike the run
    /// directory on tmpfs).
    fn overlay_path(&self, s: &Source) -> Result<PathBuf, String> {
        let file = meta::backup_overlay_name(&s.disk.volume.name);
        let Some(staging) = &self.view.jail_staging else {
            return Ok(s.path.with_file_name(file));
        };
        staging
            .iter()
            .find(|(host, _)| host.parent() == Some(s.dir.as_path()))
            .map(|(_, inside)| inside.join(file))
            .ok_or_else(|| {
                format!(
                    "disk '{}': its pool has no staging directory in the VM's jail (restart the VM)",
                    s.disk.id
                )
            })
    }

    /// Streams one disk into its backup file; its manifest entry.
    fn store_disk(
        &self,
        s: &Source,
        disk: &mut dyn DiskBackend,
        dir: &Path,
        meter: &mut Meter,
    ) -> Result<BackupDisk, String> {
        let (file_name, sha256, stored_bytes) = match self.req.compress {
            Compression::Zstd => {
                write_zstd(disk, &dir.join(format!("{}.raw.zst", s.disk.id)), meter)
                    .map(|(h, n)| (format!("{}.raw.zst", s.disk.id), h, n))?
            }
            Compression::None => write_sparse(disk, &dir.join(format!("{}.raw", s.disk.id)), meter)
                .map(|(h, n)| (format!("{}.raw", s.disk.id), h, n))?,
        };
        Ok(BackupDisk {
            id: s.disk.id.clone(),
            volume: s.disk.volume.clone(),
            format: s.format,
            virtual_size: disk.size(),
            file: file_name,
            sha256,
            stored_bytes,
        })
    }

    /// Keeps the newest `max_backups` of this VM in the pool; returns the
    /// ids removed.
    fn retain(&self) -> Result<Vec<String>, String> {
        let Some(keep) = self.req.max_backups else {
            return Ok(Vec::new());
        };
        let all = self
            .storage
            .list_backups(&self.req.storage, Some(&self.req.vm))
            .map_err(|e| e.1)?;
        let mine: Vec<_> = all.into_iter().filter(|e| e.manifest.is_some()).collect();
        let excess = mine.len().saturating_sub(keep as usize);
        let mut removed = Vec::new();
        for old in &mine[..excess] {
            self.storage
                .delete_backup(&self.req.storage, &old.id)
                .map_err(|e| e.1)?;
            removed.push(old.id.clone());
        }
        Ok(removed)
    }
}

fn disk_size(s: &Source) -> Result<u64, String> {
    image::virtual_size(&s.path, s.format)
        .map(|(size, _)| size)
        .map_err(|e| e.1)
}

/// zstd (level 3, with the frame's content checksum) of the raw disk.
fn write_zstd(
    disk: &mut dyn DiskBackend,
    path: &Path,
    meter: &mut Meter,
) -> Result<(String, u64), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = File::create_new(path).map_err(fail)?;
    let mut enc =
        zstd::stream::Encoder::new(Hashing::new(BufWriter::new(file)), 3).map_err(fail)?;
    enc.include_checksum(true).map_err(fail)?;
    disk_to_stream(disk, &mut enc, meter)?;
    let mut hashed = enc.finish().map_err(fail)?;
    hashed.flush().map_err(fail)?;
    let (hex, bytes) = (hashed.hex(), hashed.bytes);
    let file = hashed
        .inner
        .into_inner()
        .map_err(|e| fail(e.into_error()))?;
    file.sync_all().map_err(fail)?;
    Ok((hex, bytes))
}

/// A raw file of the disk's size whose zero chunks are holes; the hash
/// covers every byte (holes read as zeros).
fn write_sparse(
    disk: &mut dyn DiskBackend,
    path: &Path,
    meter: &mut Meter,
) -> Result<(String, u64), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = File::create_new(path).map_err(fail)?;
    let mut out = Hashing::new(Sparse { file: &file, at: 0 });
    disk_to_stream(disk, &mut out, meter)?;
    let len = out.bytes;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(fail)?;
    Ok((out.hex(), len))
}

/// Writes only the chunks that are not all zeros.
struct Sparse<'a> {
    file: &'a File,
    at: u64,
}

impl Write for Sparse<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !is_zero(buf) {
            self.file.write_all_at(buf, self.at)?;
        }
        self.at += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
