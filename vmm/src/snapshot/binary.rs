//! The state in a compact binary form, for the migration's State frame:
//! the same `VmSnapshot` and the same serde code beside each device as
//! `state.json`, encoded with bincode instead of JSON. Decoding it sits in
//! the guest's downtime; JSON spells the XSAVE area, the LAPIC page and the
//! MSRs as arrays of decimal numbers, which was the destination's largest
//! single step in the rig (53-194 ms of nested emulation).
//!
//! The compatibility check stays explicit: the encoding's first fields are
//! the format, version and architecture (`VmSnapshot`'s first three), read
//! and checked before anything else is decoded.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{check_fields, SnapshotError, VmSnapshot};

/// Bounds what a hostile or corrupt frame can make the decoder allocate
/// (a frame is at most 16 MiB anyway).
const LIMIT: usize = 16 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// `snap` encoded.
pub fn encode(snap: &VmSnapshot) -> Result<Vec<u8>, SnapshotError> {
    bincode::serde::encode_to_vec(snap, config()).map_err(|e| SnapshotError::NotASnapshot {
        path: "migration state".into(),
        why: e.to_string(),
    })
}

/// Checks the header of `bytes`, then decodes the whole state. `source`
/// names where the bytes came from in errors.
pub fn decode(source: &Path, bytes: &[u8]) -> Result<VmSnapshot, SnapshotError> {
    #[derive(Deserialize)]
    struct Header {
        format: String,
        version: u32,
        arch: String,
    }
    let not_ours = |why: String| SnapshotError::NotASnapshot {
        path: source.to_path_buf(),
        why,
    };
    let (header, _): (Header, usize) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| not_ours(e.to_string()))?;
    check_fields(source, &header.format, header.version, &header.arch)?;
    let (snap, used): (VmSnapshot, usize) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| not_ours(e.to_string()))?;
    if used != bytes.len() {
        return Err(not_ours(format!(
            "{} bytes after the state",
            bytes.len() - used
        )));
    }
    Ok(snap)
}

/// The VM's description (`VmSnapshot::config`) travels as JSON text inside
/// the binary encoding: bincode cannot carry its tagged enums, and it is a
/// few hundred bytes. `state.json` keeps it as an object.
pub mod config_text {
    use serde::de::Error;
    use serde::{Deserializer, Serializer};

    use super::*;
    use crate::config::VmConfig;

    pub fn serialize<S: Serializer>(config: &VmConfig, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return config.serialize(s);
        }
        let text = serde_json::to_string(config).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VmConfig, D::Error> {
        if d.is_human_readable() {
            return VmConfig::deserialize(d);
        }
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{FORMAT, VERSION};

    fn header(format: &str, version: u32, arch: &str) -> Vec<u8> {
        bincode::serde::encode_to_vec((format, version, arch), config()).unwrap()
    }

    #[test]
    fn another_version_or_architecture_is_refused_before_the_rest() {
        let src = Path::new("migration state");
        let arch = std::env::consts::ARCH;
        let err = decode(src, &header(FORMAT, VERSION + 1, arch))
            .err()
            .unwrap();
        assert!(
            matches!(err, SnapshotError::Version { found, .. } if found == VERSION + 1),
            "{err}"
        );
        let other = if arch == "x86_64" {
            "aarch64"
        } else {
            "x86_64"
        };
        let err = decode(src, &header(FORMAT, VERSION, other)).err().unwrap();
        assert!(matches!(err, SnapshotError::WrongArch { .. }), "{err}");
        let err = decode(src, &header("qemu", VERSION, arch)).err().unwrap();
        assert!(err.to_string().contains("format 'qemu'"), "{err}");
        // The header is right but the state is cut short.
        let err = decode(src, &header(FORMAT, VERSION, arch)).err().unwrap();
        assert!(matches!(err, SnapshotError::NotASnapshot { .. }), "{err}");
        assert!(decode(src, &[0xff; 3]).is_err());
    }
}
