//! Storage pools and their volumes. A VM's disks name volumes as
//! `POOL/VOLUME`; the VM code asks `Storage::resolve` for the file and
//! format behind one, and storage asks the VM code (through
//! `VolumeUsers`) who uses a volume before it deletes or changes it.
//!
//! Every node has the pool `local`: a directory under the state
//! directory. Other pools are defined in `pools.json`: directories (`dir`)
//! and NFS exports (`nfs`, mounted by the agent). See docs/storage.md.
//!
//! A pool is one directory. A volume is the file `DIR/NAME`; everything
//! else the agent keeps there is hidden (volume names never start with a
//! dot): `.vireo/NAME.json` (format, template flag, snapshots),
//! `.NAME@SNAP` (a snapshot's frozen image, in the same directory so a
//! chain's backing names are plain file names), `.backups/` (backups).

pub mod backup;
mod clones;
mod copy;
mod image;
mod meta;
pub use meta::jail_staging_dir;
mod nfs;
mod pools;
pub mod routes;
mod snapshots;
mod templates;
mod transfer;
mod volumes;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::ApiError;
pub use crate::storage_api::{valid_name, PoolDef, PoolKind, VolumeFormat, VolumeRef};
use crate::store::{self, Paths};

/// The pool every node has.
pub const LOCAL_POOL: &str = "local";

/// What a VM needs to use a volume as a disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedVolume {
    pub path: PathBuf,
    pub format: VolumeFormat,
    /// Directories its backing chain may use (its pool's, for linked clones).
    pub backing_dirs: Vec<PathBuf>,
}

/// Who uses volumes: the VM manager answers, storage asks.
pub trait VolumeUsers: Send + Sync {
    /// Names of the VMs whose disks are (or whose overlays rest on) `v`.
    fn users_of(&self, v: &VolumeRef) -> Vec<String>;
}

/// A VM as backups and templates see it (the VM manager's answer).
#[derive(Clone, Debug)]
pub struct VmView {
    /// The definition as the VM manager stores it (kept in backups).
    pub definition: serde_json::Value,
    pub disks: Vec<VmDisk>,
    /// Its VMM's API socket while it runs.
    pub api_socket: Option<PathBuf>,
    /// A jailed running VM's staging directories (host path, path in its
    /// jail), one per pool of its writable disks; None unjailed.
    pub jail_staging: Option<Vec<(PathBuf, PathBuf)>>,
    pub template: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmDisk {
    /// The disk's id (the VMM's `--disk id=`).
    pub id: String,
    pub volume: VolumeRef,
}

/// What backups, restores and templates need from the VM manager, which
/// implements it and hands it over at startup (`Storage::set_vm_host`).
pub trait VmHost: Send + Sync {
    /// VM `name` (404 if there is none).
    fn vm(&self, name: &str) -> Result<VmView, ApiError>;
    /// Defines VM `name` from `definition` with its disks on `disks`
    /// (disk id → volume; the VM manager rewrites its own definition). An
    /// existing VM is replaced only with `replace` (and must be stopped).
    fn define_vm(
        &self,
        name: &str,
        definition: &serde_json::Value,
        disks: &[VmDisk],
        replace: bool,
    ) -> Result<(), ApiError>;
    /// Marks VM `name` as a template: it is never started again, only cloned.
    fn mark_template(&self, name: &str) -> Result<(), ApiError>;
}

/// The pools of this node.
#[derive(Clone)]
pub struct Storage {
    paths: Arc<Paths>,
    pools: Arc<RwLock<Vec<PoolDef>>>,
    users: Arc<RwLock<Option<Arc<dyn VolumeUsers>>>>,
    vms: Arc<RwLock<Option<Arc<dyn VmHost>>>>,
    /// `POOL/VOLUME` keys an operation is working on.
    busy: Arc<Mutex<HashSet<String>>>,
    /// Serialises changes to `pools.json`.
    defining: Arc<Mutex<()>>,
}

fn read<T: ?Sized>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An operation's hold on a volume; released when dropped.
pub struct Claim {
    key: String,
    busy: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.busy).remove(&self.key);
    }
}

impl Storage {
    /// Loads `pools.json` (and makes the `local` pool's directory). NFS
    /// pools are mounted; one that cannot be is reported as unavailable.
    pub fn load(paths: Arc<Paths>) -> std::io::Result<Self> {
        let defined: Vec<PoolDef> =
            store::read_json(&paths.state.join("pools.json"))?.unwrap_or_default();
        std::fs::create_dir_all(local_dir(&paths))?;
        let storage = Self {
            paths,
            pools: Arc::new(RwLock::new(defined)),
            users: Arc::default(),
            vms: Arc::default(),
            busy: Arc::default(),
            defining: Arc::default(),
        };
        storage.mount_all();
        Ok(storage)
    }

    /// The VM manager, once it exists: asked who uses a volume.
    pub fn set_volume_users(&self, users: Arc<dyn VolumeUsers>) {
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = Some(users);
    }

    /// The VM manager, for backups and templates.
    pub fn set_vm_host(&self, vms: Arc<dyn VmHost>) {
        *self.vms.write().unwrap_or_else(|e| e.into_inner()) = Some(vms);
    }

    fn vm_host(&self) -> Result<Arc<dyn VmHost>, ApiError> {
        read(&self.vms)
            .clone()
            .ok_or_else(|| ApiError::unavailable("this agent has no VM manager"))
    }

    /// VMs using `v`, as the VM manager says (none without one).
    pub fn users_of(&self, v: &VolumeRef) -> Vec<String> {
        read(&self.users)
            .as_ref()
            .map_or_else(Vec::new, |u| u.users_of(v))
    }

    /// Every pool, `local` first.
    pub fn pools(&self) -> Vec<PoolDef> {
        let mut all = vec![PoolDef {
            name: LOCAL_POOL.into(),
            kind: PoolKind::Dir {
                path: local_dir(&self.paths),
            },
            cluster: false,
        }];
        all.extend(read(&self.pools).iter().cloned());
        all
    }

    pub fn pool(&self, name: &str) -> Result<PoolDef, ApiError> {
        self.pools()
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ApiError::not_found(format!("no pool '{name}'")))
    }

    /// The directory a pool's volumes live in (for NFS, its mount point).
    pub fn pool_dir(&self, name: &str) -> Result<PathBuf, ApiError> {
        Ok(self.dir_of(&self.pool(name)?))
    }

    fn dir_of(&self, pool: &PoolDef) -> PathBuf {
        match &pool.kind {
            PoolKind::Dir { path } => path.clone(),
            PoolKind::Nfs { .. } => nfs::mount_point(&self.paths, &pool.name),
        }
    }

    /// The pool's directory, which must be there (a vanished directory or
    /// an NFS pool that is not mounted is a clear 503).
    pub fn usable_dir(&self, name: &str) -> Result<PathBuf, ApiError> {
        let pool = self.pool(name)?;
        let dir = self.dir_of(&pool);
        pools::check_usable(&pool, &dir)?;
        Ok(dir)
    }

    /// The file and format behind `v`, which must exist. A backup overlay
    /// that a dead VMM left on it (no process holds it) is committed into
    /// it first: the writes the guest made during that backup are in it.
    pub fn resolve(&self, v: &VolumeRef) -> Result<ResolvedVolume, ApiError> {
        let dir = self.usable_dir(&v.pool)?;
        let path = dir.join(&v.name);
        if !path.is_file() {
            return Err(ApiError::not_found(format!("no volume '{v}'")));
        }
        backup::recover_overlay(&dir, v)?;
        let format = volumes::format_of(&dir, &v.name)
            .map_err(|e| ApiError::internal(format!("volume '{v}': {e}")))?;
        Ok(ResolvedVolume {
            path,
            format,
            backing_dirs: vec![dir],
        })
    }

    /// Marks `v` as being worked on by `what` (409 if something else is),
    /// and refuses if a VM uses it.
    pub fn claim(&self, v: &VolumeRef, what: &str) -> Result<Claim, ApiError> {
        let users = self.users_of(v);
        if !users.is_empty() {
            return Err(ApiError::conflict(format!(
                "cannot {what} '{v}': it is used by VM {}",
                users.join(", ")
            )));
        }
        self.claim_unchecked(v, what)
    }

    /// `claim` without asking the VM manager (a backup copies a disk its
    /// VM is using, with the VMM's cooperation).
    fn claim_unchecked(&self, v: &VolumeRef, what: &str) -> Result<Claim, ApiError> {
        let key = v.to_string();
        if !lock(&self.busy).insert(key.clone()) {
            return Err(ApiError::conflict(format!(
                "cannot {what} '{v}': another operation on it is running"
            )));
        }
        Ok(Claim {
            key,
            busy: self.busy.clone(),
        })
    }

    fn state_dir(&self) -> &Path {
        &self.paths.state
    }
}

fn local_dir(paths: &Paths) -> PathBuf {
    paths.state.join("pools").join(LOCAL_POOL)
}

/// qcow2 if the file starts with its magic, else raw. Only for files the
/// agent has no record of (put into a pool by hand): a raw volume's first
/// bytes are the guest's, so a volume the agent made is never sniffed.
pub fn sniff_format(path: &std::path::Path) -> std::io::Result<VolumeFormat> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(path)?.read(&mut magic)?;
    Ok(if n == 4 && &magic == b"QFI\xfb" {
        VolumeFormat::Qcow2
    } else {
        VolumeFormat::Raw
    })
}

/// Runs blocking file work off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("the worker failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_refs_parse_and_refuse_path_tricks() {
        let v: VolumeRef = "local/web-1.qcow2".parse().unwrap();
        assert_eq!((v.pool.as_str(), v.name.as_str()), ("local", "web-1.qcow2"));
        assert_eq!(v.to_string(), "local/web-1.qcow2");
        for bad in [
            "local",
            "local/",
            "/x",
            "local/../etc",
            "local/a/b",
            "local/.hidden",
            "a b/c",
        ] {
            assert!(bad.parse::<VolumeRef>().is_err(), "{bad}");
        }
    }
}
