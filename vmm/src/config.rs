//! The VM's configuration as the user gave it, validated before anything is created.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::devices::virtio::block::disk::DiskFormat;
pub mod net;
pub use net::{MacAddr, NetBackendConfig, NetConfig};

/// Largest vCPU count the boot tables (MP table, FDT) are sized for.
pub const MAX_VCPUS: u8 = 254;

/// Smallest guest the boot layout fits in (page tables, boot info, a kernel).
pub const MIN_MEMORY_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid memory size '{0}': use a number with an optional K, M, G or T suffix (e.g. 512M, 4G)")]
    MemorySyntax(String),
    #[error("memory size {0} bytes is below the minimum of {MIN_MEMORY_BYTES} bytes (16M)")]
    MemoryTooSmall(u64),
    #[error("memory size must be a multiple of 4 KiB, got {0} bytes")]
    MemoryUnaligned(u64),
    #[error("vCPU count must be between 1 and {MAX_VCPUS}, got {0}")]
    VcpuCount(u64),
    #[error("invalid serial '{0}': use stdio, none, file:PATH or socket:PATH")]
    SerialSyntax(String),
    #[error("invalid disk '{spec}': {why} (use path=FILE[,format=raw|qcow2][,readonly=on|off][,direct=on|off][,id=NAME])")]
    DiskSyntax { spec: String, why: String },
    #[error(
        "invalid net '{spec}': {why} (use tap=NAME|macvtap=NAME|fd=N[,mac=MAC][,mtu=N][,id=NAME])"
    )]
    NetSyntax { spec: String, why: String },
}

/// Longest disk ID: virtio-blk's GET_ID answers with 20 bytes.
pub const MAX_DISK_ID_LEN: usize = 20;

/// A virtio-blk disk backed by an image file (raw or qcow2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskConfig {
    pub path: PathBuf,
    /// Never guessed from the contents: a raw image the guest wrote a
    /// qcow2 header into must not turn into a qcow2 image on the next boot.
    pub format: DiskFormat,
    pub readonly: bool,
    /// O_DIRECT: bypass the host page cache (raw only).
    pub direct: bool,
    /// Serial number the guest reads with GET_ID (default `diskN`).
    pub id: Option<String>,
    /// Directory trees a qcow2 backing chain may use besides the image's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backing_dirs: Vec<PathBuf>,
}

impl FromStr for DiskConfig {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| ConfigError::DiskSyntax {
            spec: s.to_string(),
            why: why.to_string(),
        };
        let (mut path, mut readonly, mut id) = (None, false, None);
        let (mut format, mut direct) = (DiskFormat::Raw, false);
        let mut backing_dirs = Vec::new();
        for item in s.split(',') {
            match item.split_once('=') {
                Some(("path", p)) if !p.is_empty() => path = Some(PathBuf::from(p)),
                Some(("format", "raw")) => format = DiskFormat::Raw,
                Some(("format", "qcow2")) => format = DiskFormat::Qcow2,
                Some(("format", _)) => return Err(err("format takes raw or qcow2")),
                Some(("direct", v)) => {
                    direct = on_off(v).ok_or_else(|| err("direct takes on or off"))?
                }
                Some(("readonly", "on" | "true")) => readonly = true,
                Some(("readonly", "off" | "false")) => readonly = false,
                Some(("readonly", _)) => return Err(err("readonly takes on or off")),
                Some(("id", n)) if !n.is_empty() && n.len() <= MAX_DISK_ID_LEN => {
                    id = Some(n.to_string())
                }
                Some(("id", _)) => return Err(err("id must be 1 to 20 bytes")),
                Some(("backing-dir", d)) if !d.is_empty() => backing_dirs.push(PathBuf::from(d)),
                _ => return Err(err(&format!("unknown option '{item}'"))),
            }
        }
        let path = path.ok_or_else(|| err("path= is required"))?;
        Ok(Self {
            path,
            format,
            readonly,
            direct,
            id,
            backing_dirs,
        })
    }
}

fn on_off(v: &str) -> Option<bool> {
    match v {
        "on" | "true" => Some(true),
        "off" | "false" => Some(false),
        _ => None,
    }
}

/// Where the guest's 16550 console goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum SerialOutput {
    /// The VMM's own stdin/stdout (stdin in raw mode when it is a terminal).
    Stdio,
    /// Output appended to a file; no input.
    File(PathBuf),
    /// A Unix socket the VMM listens on; one client at a time reads and writes.
    Socket(PathBuf),
    /// Discarded.
    None,
}

impl FromStr for SerialOutput {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let nonempty = |p: &str| {
            if p.is_empty() {
                Err(ConfigError::SerialSyntax(s.to_string()))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        match s {
            "stdio" => Ok(Self::Stdio),
            "none" => Ok(Self::None),
            _ => match s.split_once(':') {
                Some(("file", p)) => Ok(Self::File(nonempty(p)?)),
                Some(("socket", p)) => Ok(Self::Socket(nonempty(p)?)),
                _ => Err(ConfigError::SerialSyntax(s.to_string())),
            },
        }
    }
}

/// A memory size in bytes, written as `512M`, `4G`, `65536K` or plain bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySize(pub u64);

impl FromStr for MemorySize {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ConfigError::MemorySyntax(s.to_string());
        let t = s.trim();
        let (digits, shift) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let shift = match c.to_ascii_uppercase() {
                    'K' => 10,
                    'M' => 20,
                    'G' => 30,
                    'T' => 40,
                    _ => return Err(err()),
                };
                (&t[..i], shift)
            }
            _ => (t, 0),
        };
        let n: u64 = digits.parse().map_err(|_| err())?;
        let bytes = n.checked_mul(1 << shift).ok_or_else(err)?;
        if bytes < MIN_MEMORY_BYTES {
            return Err(ConfigError::MemoryTooSmall(bytes));
        }
        if !bytes.is_multiple_of(4096) {
            return Err(ConfigError::MemoryUnaligned(bytes));
        }
        Ok(MemorySize(bytes))
    }
}

impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
            if b.is_multiple_of(1 << shift) {
                return write!(f, "{}{}", b >> shift, unit);
            }
        }
        write!(f, "{b}")
    }
}

/// Checks a vCPU count given on the command line or through the API.
pub fn parse_vcpus(s: &str) -> Result<u8, ConfigError> {
    let n: u64 = s.trim().parse().map_err(|_| ConfigError::VcpuCount(0))?;
    if n == 0 || n > u64::from(MAX_VCPUS) {
        return Err(ConfigError::VcpuCount(n));
    }
    Ok(n as u8)
}

/// Everything needed to build and boot one VM.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VmConfig {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub vcpus: u8,
    pub memory: MemorySize,
    pub serial: SerialOutput,
    pub api_socket: Option<PathBuf>,
    /// virtio-blk disks, in the order the guest discovers them.
    pub disks: Vec<DiskConfig>,
    /// virtio-net devices; their transports follow the disks'.
    pub nets: Vec<NetConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_with_suffixes() {
        assert_eq!("512M".parse::<MemorySize>(), Ok(MemorySize(512 << 20)));
        assert_eq!("4g".parse::<MemorySize>(), Ok(MemorySize(4 << 30)));
        assert_eq!("65536K".parse::<MemorySize>(), Ok(MemorySize(64 << 20)));
        assert_eq!("16777216".parse::<MemorySize>(), Ok(MemorySize(16 << 20)));
    }

    #[test]
    fn bad_memory_sizes_are_refused() {
        assert!(matches!(
            "12Q".parse::<MemorySize>(),
            Err(ConfigError::MemorySyntax(_))
        ));
        assert!(matches!(
            "".parse::<MemorySize>(),
            Err(ConfigError::MemorySyntax(_))
        ));
        assert!(matches!(
            "1M".parse::<MemorySize>(),
            Err(ConfigError::MemoryTooSmall(_))
        ));
        assert!(matches!(
            "99999999999T".parse::<MemorySize>(),
            Err(ConfigError::MemorySyntax(_))
        ));
        assert!(matches!(
            "16777217".parse::<MemorySize>(),
            Err(ConfigError::MemoryUnaligned(_))
        ));
    }

    #[test]
    fn memory_size_displays_in_largest_unit() {
        assert_eq!(MemorySize(4 << 30).to_string(), "4G");
        assert_eq!(MemorySize(1536 << 20).to_string(), "1536M");
    }

    #[test]
    fn vcpu_counts_are_bounded() {
        assert_eq!(parse_vcpus("8"), Ok(8));
        assert_eq!(parse_vcpus("0"), Err(ConfigError::VcpuCount(0)));
        assert_eq!(parse_vcpus("255"), Err(ConfigError::VcpuCount(255)));
        assert!(parse_vcpus("x").is_err());
    }

    #[test]
    fn disk_specs_parse() {
        let d: DiskConfig = "path=/d.img,readonly=on,id=root".parse().unwrap();
        assert_eq!(d.path, PathBuf::from("/d.img"));
        assert!(d.readonly);
        assert_eq!(d.id.as_deref(), Some("root"));
        let d: DiskConfig = "path=x".parse().unwrap();
        assert!(!d.readonly && d.id.is_none() && !d.direct);
        assert_eq!(d.format, DiskFormat::Raw);
        let d: DiskConfig = "path=x,format=qcow2,direct=on".parse().unwrap();
        assert_eq!(d.format, DiskFormat::Qcow2);
        assert!(d.direct);
        for bad in [
            "",
            "readonly=on",
            "path=",
            "path=x,ro",
            "path=x,readonly=yes",
            "path=x,cache=none",
            "path=x,format=vmdk",
            "path=x,direct=1",
            "path=x,id=",
            "path=x,id=123456789012345678901",
        ] {
            assert!(bad.parse::<DiskConfig>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serial_specs_parse() {
        assert_eq!("stdio".parse(), Ok(SerialOutput::Stdio));
        assert_eq!("none".parse(), Ok(SerialOutput::None));
        assert_eq!(
            "file:/tmp/x".parse(),
            Ok(SerialOutput::File("/tmp/x".into()))
        );
        assert_eq!(
            "socket:/tmp/s".parse(),
            Ok(SerialOutput::Socket("/tmp/s".into()))
        );
        assert!("file:".parse::<SerialOutput>().is_err());
        assert!("tcp:1".parse::<SerialOutput>().is_err());
    }
}
