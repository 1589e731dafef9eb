//! Defining and removing pools, and whether each is usable: a `dir` pool
//! whose directory vanished, or an NFS pool that is not mounted, answers
//! with a clear 503 on every route rather than a confusing file error.

use std::path::Path;

use super::volumes::volume_names;
use super::{lock, nfs, valid_name, Storage, LOCAL_POOL};
use crate::error::ApiError;
use crate::storage_api::{PoolDef, PoolInfo, PoolKind};
use crate::store;

/// `Ok` if the pool's directory can be used now.
pub fn check_usable(pool: &PoolDef, dir: &Path) -> Result<(), ApiError> {
    match &pool.kind {
        PoolKind::Dir { path } if !path.is_dir() => Err(ApiError::unavailable(format!(
            "pool '{}': its directory {} is gone",
            pool.name,
            path.display()
        ))),
        PoolKind::Nfs { server, export, .. } if !nfs::is_mounted(dir) => {
            Err(ApiError::unavailable(format!(
                "pool '{}': {server}:{export} is not mounted (redefine the pool to mount it again)",
                pool.name
            )))
        }
        _ => Ok(()),
    }
}

/// (total, free) bytes of the file system holding `dir`.
fn capacity(dir: &Path) -> std::io::Result<(u64, u64)> {
    let c = std::ffi::CString::new(dir.to_string_lossy().as_bytes())?;
    // SAFETY: an all-zero statvfs is valid; statvfs fills it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated, st is ours.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

impl Storage {
    pub fn pool_info(&self, def: PoolDef) -> PoolInfo {
        let dir = self.dir_of(&def);
        let checked = check_usable(&def, &dir).and_then(|()| {
            capacity(&dir).map_err(|e| ApiError::unavailable(format!("{}: {e}", dir.display())))
        });
        let (available, error, total, free) = match checked {
            Ok((t, f)) => (true, None, Some(t), Some(f)),
            Err(e) => (false, Some(e.1), None, None),
        };
        PoolInfo {
            def,
            dir,
            available,
            error,
            total_bytes: total,
            free_bytes: free,
        }
    }

    /// Mounts every NFS pool (at startup); failures are logged, the pool
    /// then shows as unavailable.
    pub(super) fn mount_all(&self) {
        for pool in self.pools() {
            if let PoolKind::Nfs {
                server,
                export,
                version,
                options,
            } = &pool.kind
            {
                let at = self.dir_of(&pool);
                if nfs::is_mounted(&at) {
                    continue;
                }
                if let Err(e) =
                    nfs::mount(server, export, version.as_deref(), options.as_deref(), &at)
                {
                    eprintln!("vireo-agent: pool '{}': {e}", pool.name);
                }
            }
        }
    }

    pub fn define_pool(&self, def: PoolDef) -> Result<PoolInfo, ApiError> {
        if !valid_name(&def.name) {
            return Err(ApiError::bad_request(format!(
                "'{}' is not a pool name",
                def.name
            )));
        }
        let _defining = lock(&self.defining);
        if self.pool(&def.name).is_ok() {
            return Err(ApiError::conflict(format!(
                "pool '{}' exists already",
                def.name
            )));
        }
        match &def.kind {
            PoolKind::Dir { path } => check_new_dir(path)?,
            PoolKind::Nfs {
                server,
                export,
                version,
                options,
            } => {
                let at = nfs::mount_point(&self.paths, &def.name);
                if !nfs::is_mounted(&at) {
                    nfs::mount(server, export, version.as_deref(), options.as_deref(), &at)
                        .map_err(|e| ApiError::bad_request(format!("pool '{}': {e}", def.name)))?;
                }
            }
        }
        let mut all = self.pools.write().unwrap_or_else(|e| e.into_inner());
        let mut next = all.clone();
        next.push(def.clone());
        if let Err(e) = store::write_json(&self.state_dir().join("pools.json"), &next) {
            drop(all);
            self.forget_mount(&def);
            return Err(ApiError::internal(format!("saving pools.json: {e}")));
        }
        *all = next;
        drop(all);
        Ok(self.pool_info(def))
    }

    fn forget_mount(&self, def: &PoolDef) {
        if let PoolKind::Nfs { .. } = def.kind {
            let _ = nfs::unmount(&self.dir_of(def));
        }
    }

    /// Removes a pool's definition (its files stay); refused while one of
    /// its volumes is in use or being worked on.
    pub fn remove_pool(&self, name: &str) -> Result<(), ApiError> {
        if name == LOCAL_POOL {
            return Err(ApiError::bad_request("the local pool cannot be removed"));
        }
        let _defining = lock(&self.defining);
        let def = self.pool(name)?;
        let dir = self.dir_of(&def);
        if check_usable(&def, &dir).is_ok() {
            self.refuse_pool_in_use(name, &dir)?;
        }
        if let PoolKind::Nfs { .. } = def.kind {
            if nfs::is_mounted(&dir) {
                nfs::unmount(&dir)
                    .map_err(|e| ApiError::conflict(format!("pool '{name}': {e}")))?;
            }
        }
        let mut all = self.pools.write().unwrap_or_else(|e| e.into_inner());
        let next: Vec<PoolDef> = all.iter().filter(|p| p.name != name).cloned().collect();
        store::write_json(&self.state_dir().join("pools.json"), &next)
            .map_err(|e| ApiError::internal(format!("saving pools.json: {e}")))?;
        *all = next;
        Ok(())
    }

    fn refuse_pool_in_use(&self, name: &str, dir: &Path) -> Result<(), ApiError> {
        let prefix = format!("{name}/");
        if lock(&self.busy).iter().any(|k| k.starts_with(&prefix)) {
            return Err(ApiError::conflict(format!(
                "pool '{name}': an operation on one of its volumes is running"
            )));
        }
        for volume in volume_names(dir)? {
            let v = super::VolumeRef {
                pool: name.into(),
                name: volume,
            };
            let users = self.users_of(&v);
            if !users.is_empty() {
                return Err(ApiError::conflict(format!(
                    "pool '{name}': volume '{v}' is used by VM {}",
                    users.join(", ")
                )));
            }
        }
        Ok(())
    }
}

fn check_new_dir(path: &Path) -> Result<(), ApiError> {
    if !path.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "the pool's path '{}' must be absolute",
            path.display()
        )));
    }
    if !path.is_dir() {
        return Err(ApiError::bad_request(format!(
            "the pool's path {} is not a directory",
            path.display()
        )));
    }
    Ok(())
}
