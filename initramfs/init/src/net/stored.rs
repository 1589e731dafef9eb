//! The node's uplink settings kept on VIREO-DATA (`node-network.json`,
//! written by the agent's PUT /node/network): bonds, 802.1Q VLANs and the
//! link under `vmbr0`. They join what the kernel command line says, which
//! wins where both speak: a bond of the same name, or an uplink named by
//! `vireo.ip=`/`ip=` or implied by a `vireo.bond=`. A file that cannot be
//! read or parsed is logged and ignored, so the node still comes up on the
//! command line's settings (or the first NIC with carrier).

use std::path::Path;

use serde::Deserialize;

use super::bond;
use crate::cmdline::{Cmdline, NetConfig};

/// The file's name in the state directory (the agent writes the same).
pub const FILE: &str = "node-network.json";

/// An 802.1Q sub-interface `LINK.ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanSpec {
    pub link: String,
    pub id: u16,
}

impl VlanSpec {
    pub fn name(&self) -> String {
        format!("{}.{}", self.link, self.id)
    }
}

#[derive(Deserialize)]
struct Stored {
    #[serde(default)]
    bonds: Vec<StoredBond>,
    #[serde(default)]
    vlans: Vec<StoredVlan>,
    #[serde(default)]
    uplink: Option<String>,
}

#[derive(Deserialize)]
struct StoredBond {
    name: String,
    mode: String,
    links: Vec<String>,
}

#[derive(Deserialize)]
struct StoredVlan {
    link: String,
    id: u16,
}

/// Adds the settings in `path` to `cmd`; what to log. No file: nothing.
pub fn load(cmd: &mut Cmdline, path: &Path) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![format!("{}: {e}; ignored", path.display())],
    };
    match merge(cmd, &text) {
        Ok(notes) => notes,
        Err(e) => vec![format!("{}: {e}; ignored", path.display())],
    }
}

/// The merge itself (pure, for the tests).
pub fn merge(cmd: &mut Cmdline, text: &str) -> Result<Vec<String>, String> {
    let stored: Stored = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut notes = Vec::new();
    let mut bonds = Vec::new();
    for b in stored.bonds {
        // The command line's own syntax, so both are checked alike.
        let spec = bond::parse(&format!("{}:{}:{}", b.name, b.mode, b.links.join(",")))
            .map_err(|e| format!("bond {}: {e}", b.name))?;
        if cmd.bonds.iter().any(|c| c.name == spec.name) {
            notes.push(format!("bond {}: the command line's wins", spec.name));
        } else {
            bonds.push(spec);
        }
    }
    let vlans: Vec<VlanSpec> = stored
        .vlans
        .into_iter()
        .map(|v| VlanSpec {
            link: v.link,
            id: v.id,
        })
        .collect();
    if let Some(bad) = vlans.iter().find(|v| !(1..=4094).contains(&v.id)) {
        return Err(format!("VLAN {}: ids are 1-4094", bad.name()));
    }
    let uplink = stored
        .uplink
        .or_else(|| bonds.first().map(|b| b.name.clone()));
    match &mut cmd.net {
        NetConfig::Dhcp { iface } => {
            if iface.is_none() {
                *iface = uplink;
            }
        }
        NetConfig::Static(s) => {
            if s.iface.is_none() {
                s.iface = uplink;
            }
        }
        NetConfig::Off => {}
    }
    cmd.bonds.extend(bonds);
    cmd.vlans.extend(vlans);
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::parse;

    const STORED: &str = r#"{"bonds": [{"name": "bond0", "mode": "active-backup",
        "links": ["eno1", "eno2"]}], "vlans": [{"link": "bond0", "id": 10}],
        "uplink": "bond0.10"}"#;

    #[test]
    fn stored_settings_join_the_command_line() {
        let (mut cmd, _) = parse("quiet");
        assert_eq!(merge(&mut cmd, STORED), Ok(Vec::new()));
        assert_eq!(cmd.bonds.len(), 1);
        assert_eq!(cmd.bonds[0].nics, ["eno1", "eno2"]);
        assert_eq!(cmd.vlans[0].name(), "bond0.10");
        assert_eq!(
            cmd.net,
            NetConfig::Dhcp {
                iface: Some("bond0.10".into())
            }
        );
        // No uplink stored: the first bond, as with `vireo.bond=`.
        let (mut cmd, _) = parse("vireo.ip=10.0.0.2/24");
        let text = r#"{"bonds": [{"name": "b1", "mode": "balance-rr", "links": ["a", "b"]}]}"#;
        merge(&mut cmd, text).unwrap();
        let NetConfig::Static(s) = &cmd.net else {
            panic!("{:?}", cmd.net)
        };
        assert_eq!(s.iface.as_deref(), Some("b1"));
    }

    #[test]
    fn the_command_line_wins_and_bad_files_are_refused() {
        let (mut cmd, _) = parse("vireo.bond=bond0:balance-rr:eth0,eth1");
        let notes = merge(&mut cmd, STORED).unwrap();
        assert!(notes[0].contains("command line's wins"), "{notes:?}");
        assert_eq!(cmd.bonds.len(), 1);
        assert_eq!(cmd.bonds[0].nics, ["eth0", "eth1"]);
        assert_eq!(
            cmd.net,
            NetConfig::Dhcp {
                iface: Some("bond0".into())
            }
        );
        let (mut cmd, _) = parse("");
        let before = cmd.clone();
        for bad in [
            "{",
            r#"{"bonds": [{"name": "b", "mode": "xor", "links": ["a"]}]}"#,
            r#"{"vlans": [{"link": "eth0", "id": 0}]}"#,
        ] {
            assert!(merge(&mut cmd, bad).is_err(), "{bad}");
            assert_eq!(cmd, before, "{bad} changed the settings");
        }
    }
}
