//! What the storage routes take and return (pools, volumes, snapshots,
//! clones, templates, backups), shared with the `vireo` CLI.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `POOL/VOLUME`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeRef {
    pub pool: String,
    pub name: String,
}

/// Names of pools, volumes, snapshots and backups: letters, digits, `.`,
/// `_`, `-`; not starting with `.` (no hidden files, no `..`), at most 64
/// bytes.
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

impl VolumeFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeFormat::Raw => "raw",
            VolumeFormat::Qcow2 => "qcow2",
        }
    }
}

/// How a pool stores its volumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum PoolKind {
    /// A directory on this node (on VIREO-DATA or any path).
    Dir { path: PathBuf },
    /// An NFS export, mounted by the agent with the kernel's client.
    Nfs {
        /// The server's IPv4/IPv6 address or name.
        server: String,
        /// The exported path, e.g. `/srv/vireo`.
        export: String,
        /// NFS version (`4.2`, `4.1`, `4`, `3`); default 4.2.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        /// More mount options, e.g. `timeo=100,retrans=3` (the defaults,
        /// `soft,timeo=50,retrans=2`, turn a vanished server into I/O
        /// errors after about 30 s instead of hanging).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        options: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolDef {
    pub name: String,
    #[serde(flatten)]
    pub kind: PoolKind,
    /// Defined on every node of the cluster (docs/cluster.md, "Shared
    /// definitions"): a directory every node sees, or an NFS export.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster: bool,
}

/// `GET /pools`, `GET /pools/{pool}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolInfo {
    #[serde(flatten)]
    pub def: PoolDef,
    /// Where its volumes are (the directory, or the NFS mount point).
    pub dir: PathBuf,
    pub available: bool,
    /// Why it is not available.
    pub error: Option<String>,
    pub total_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
}

/// `POST /pools/{pool}/volumes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    pub name: String,
    pub format: VolumeFormat,
    /// Virtual size in bytes (a multiple of 512).
    pub size: u64,
    /// The tenant that owns it (set to the caller's own for a tenant).
    #[serde(default)]
    pub tenant: Option<String>,
}

/// A volume's external snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub name: String,
    /// Bytes the snapshot's file takes on disk.
    pub real_size: u64,
}

/// `GET /pools/{pool}/volumes[/{volume}]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub volume: VolumeRef,
    pub format: VolumeFormat,
    /// The size the guest sees.
    pub virtual_size: u64,
    /// Bytes its file (without snapshots) takes on disk.
    pub real_size: u64,
    pub template: bool,
    /// Oldest first.
    pub snapshots: Vec<SnapshotInfo>,
    /// The template this linked clone rests on (a volume of the same pool).
    pub linked_to: Option<String>,
    /// VMs using it (as the VM manager says).
    pub used_by: Vec<String>,
    /// The tenant that owns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// `POST .../resize`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeVolume {
    /// The new virtual size in bytes: larger, a multiple of 512.
    pub size: u64,
}

/// `POST .../convert`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvertVolume {
    pub format: VolumeFormat,
}

/// `POST .../clone`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneVolume {
    /// The new volume's name.
    pub name: String,
    /// Its pool (default: the source's; a linked clone stays there).
    #[serde(default)]
    pub pool: Option<String>,
    /// A qcow2 overlay on the source (which must be a template), instead
    /// of a copy.
    #[serde(default)]
    pub linked: bool,
    /// The full copy's format (default: the source's).
    #[serde(default)]
    pub format: Option<VolumeFormat>,
}

/// `POST .../snapshots`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshot {
    pub name: String,
}

/// How a backup's disk images are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Raw, sparse where the disk reads zeros.
    None,
    #[default]
    Zstd,
}

/// `POST /backups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    pub vm: String,
    /// The pool the backup goes to.
    pub storage: String,
    #[serde(default)]
    pub compress: Compression,
    /// Keep at most this many backups of the VM in that pool (older ones
    /// are removed once this one is complete).
    #[serde(default)]
    pub max_backups: Option<u32>,
}

/// One disk in a backup's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupDisk {
    /// The VM's name for the disk.
    pub id: String,
    pub volume: VolumeRef,
    pub format: VolumeFormat,
    pub virtual_size: u64,
    /// The file in the backup directory.
    pub file: String,
    /// SHA-256 of that file, as stored (hex).
    pub sha256: String,
    /// Bytes of that file.
    pub stored_bytes: u64,
}

/// A backup's `manifest.json`, which `GET .../backups` lists too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// `VM-YYYYMMDD-HHMMSS`: the directory's name.
    pub id: String,
    pub vm: String,
    /// Seconds since the epoch.
    pub created: u64,
    pub compress: Compression,
    /// Whether the VM was running (the copy is of one instant, taken
    /// through overlays).
    pub live: bool,
    /// How long the guest was paused to take that instant, if it ran.
    pub pause_ms: Option<f64>,
    /// The VM's definition as the VM manager keeps it.
    pub definition: serde_json::Value,
    pub disks: Vec<BackupDisk>,
}

/// `POST /pools/{pool}/backups/{id}/restore`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The VM to restore into (default: the backed-up VM itself, which
    /// must be stopped; its volumes are replaced).
    #[serde(default)]
    pub vm: Option<String>,
    /// The pool for the restored volumes (default: each disk's own).
    #[serde(default)]
    pub storage: Option<String>,
}

/// `POST /templates`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MakeTemplate {
    pub vm: String,
}

/// `POST /templates/{vm}/clone`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneTemplate {
    /// The new VM.
    pub name: String,
    /// Copies instead of linked clones.
    #[serde(default)]
    pub full: bool,
    /// The pool for full copies (default: each disk's own).
    #[serde(default)]
    pub storage: Option<String>,
}
