//! Storage pools and their volumes. A VM's disks name volumes as
//! `POOL/VOLUME`; the VM code asks `Storage::resolve` for the file and
//! format behind one, and storage asks the VM code (through
//! `VolumeUsers`) who uses a volume before it deletes or changes it.
//!
//! Every node has the pool `local`: a directory under the state
//! directory. Other pools are defined in `pools.json`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::store::{self, Paths};

/// The pool every node has.
pub const LOCAL_POOL: &str = "local";

/// `POOL/VOLUME`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeRef {
    pub pool: String,
    pub name: String,
}

/// Names of pools and volumes: letters, digits, `.`, `_`, `-`; not
/// starting with `.` (no hidden files, no `..`), at most 64 bytes.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl FromStr for VolumeRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((pool, name)) if valid_name(pool) && valid_name(name) => Ok(Self {
                pool: pool.into(),
                name: name.into(),
            }),
            _ => Err(format!(
                "'{s}' is not POOL/VOLUME (letters, digits, '.', '_', '-')"
            )),
        }
    }
}

impl fmt::Display for VolumeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pool, self.name)
    }
}

impl Serialize for VolumeRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VolumeRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeFormat {
    Raw,
    Qcow2,
}

/// What a VM needs to use a volume as a disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedVolume {
    pub path: PathBuf,
    pub format: VolumeFormat,
    /// Directories its backing chain may use (its pool's, for linked clones).
    pub backing_dirs: Vec<PathBuf>,
}

/// How a pool stores its volumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PoolKind {
    /// A directory on this node (on VIREO-DATA or any path).
    Dir { path: PathBuf },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolDef {
    pub name: String,
    #[serde(flatten)]
    pub kind: PoolKind,
}

/// Who uses volumes: the VM manager answers, storage asks.
pub trait VolumeUsers: Send + Sync {
    /// Names of the VMs whose disks are (or whose overlays rest on) `v`.
    fn users_of(&self, v: &VolumeRef) -> Vec<String>;
}

/// The pools of this node.
#[derive(Clone)]
pub struct Storage {
    paths: Arc<Paths>,
    pools: Arc<RwLock<Vec<PoolDef>>>,
}

impl Storage {
    /// Loads `pools.json` (and makes the `local` pool's directory).
    pub fn load(paths: Arc<Paths>) -> std::io::Result<Self> {
        let defined: Vec<PoolDef> =
            store::read_json(&paths.state.join("pools.json"))?.unwrap_or_default();
        std::fs::create_dir_all(local_dir(&paths))?;
        Ok(Self {
            paths,
            pools: Arc::new(RwLock::new(defined)),
        })
    }

    /// Every pool, `local` first.
    pub fn pools(&self) -> Vec<PoolDef> {
        let mut all = vec![PoolDef {
            name: LOCAL_POOL.into(),
            kind: PoolKind::Dir {
                path: local_dir(&self.paths),
            },
        }];
        all.extend(
            self.pools
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        all
    }

    pub fn pool(&self, name: &str) -> Result<PoolDef, ApiError> {
        self.pools()
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ApiError::not_found(format!("no pool '{name}'")))
    }

    /// The directory a pool's volumes live in.
    pub fn pool_dir(&self, name: &str) -> Result<PathBuf, ApiError> {
        match self.pool(name)?.kind {
            PoolKind::Dir { path } => Ok(path),
        }
    }

    /// The file and format behind `v`, which must exist.
    pub fn resolve(&self, v: &VolumeRef) -> Result<ResolvedVolume, ApiError> {
        let dir = self.pool_dir(&v.pool)?;
        let path = dir.join(&v.name);
        if !path.is_file() {
            return Err(ApiError::not_found(format!("no volume '{v}'")));
        }
        let format =
            sniff_format(&path).map_err(|e| ApiError::internal(format!("volume '{v}': {e}")))?;
        Ok(ResolvedVolume {
            path,
            format,
            backing_dirs: vec![dir],
        })
    }
}

fn local_dir(paths: &Paths) -> PathBuf {
    paths.state.join("pools").join(LOCAL_POOL)
}

/// qcow2 if the file starts with its magic, else raw. (Only the agent's
/// own files are sniffed: volumes it created, so the guest never chose the
/// first bytes of a file it then sees in another format.)
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
