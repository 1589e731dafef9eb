//! The node's own uplink settings (bonds, VLANs, the link under `vmbr0`):
//! checked and kept on VIREO-DATA as `node-network.json`, which vireo-init
//! reads at boot before it makes `vmbr0`. They are not applied to the
//! running node: changing the link the management address sits on, live,
//! could cut the API off the very request that did it; at boot, a bond or
//! VLAN that cannot be made falls back to a plain NIC (docs/networks.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::net_types::NodeNetwork;

/// The file on the state disk (vireo-init reads the same name).
pub const FILE: &str = "node-network.json";
pub const MODES: [&str; 3] = ["active-backup", "balance-rr", "802.3ad"];

pub fn path(state: &Path) -> PathBuf {
    state.join(FILE)
}

/// A name the kernel takes for a link: 1-15 bytes of [A-Za-z0-9._-].
fn ifname_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    match ifname_ok(name) {
        true => Ok(()),
        false => Err(format!(
            "{what} '{name}' is not an interface name (1-15 of A-Z a-z 0-9 . _ -)"
        )),
    }
}

/// Every rule a boot would otherwise trip on; `exists` says whether a link
/// is on the node now (a bond's links, a VLAN's parent that is no bond,
/// an uplink that is neither a bond nor a VLAN).
pub fn validate(net: &NodeNetwork, exists: impl Fn(&str) -> bool) -> Result<(), String> {
    let bonds: BTreeSet<&str> = net.bonds.iter().map(|b| b.name.as_str()).collect();
    if bonds.len() != net.bonds.len() {
        return Err("a bond name is given twice".into());
    }
    let mut enslaved = BTreeSet::new();
    for b in &net.bonds {
        check_name("bond", &b.name)?;
        if !MODES.contains(&b.mode.as_str()) {
            return Err(format!(
                "bond {}: mode '{}': use {}",
                b.name,
                b.mode,
                MODES.join(", ")
            ));
        }
        if b.links.is_empty() {
            return Err(format!("bond {} has no links", b.name));
        }
        for l in &b.links {
            check_name("link", l)?;
            if bonds.contains(l.as_str()) {
                return Err(format!("bond {}: '{l}' is a bond", b.name));
            }
            if !enslaved.insert(l.as_str()) {
                return Err(format!("link '{l}' is named twice among the bonds"));
            }
            if !exists(l) {
                return Err(format!(
                    "bond {}: there is no interface '{l}' on this node",
                    b.name
                ));
            }
        }
    }
    let mut vlans = BTreeSet::new();
    for v in &net.vlans {
        if !(1..=4094).contains(&v.id) {
            return Err(format!("VLAN {} on {}: ids are 1-4094", v.id, v.link));
        }
        check_name("VLAN", &v.name())?;
        usable_base(&v.link, &bonds, &enslaved, &exists)?;
        if !vlans.insert(v.name()) {
            return Err(format!("VLAN {} on {} is given twice", v.id, v.link));
        }
    }
    if let Some(up) = &net.uplink {
        check_name("uplink", up)?;
        if !vlans.contains(up) {
            usable_base(up, &bonds, &enslaved, &exists)?;
        }
    }
    Ok(())
}

/// A link something may sit on: a bond, or a NIC of the node in no bond.
fn usable_base(
    link: &str,
    bonds: &BTreeSet<&str>,
    enslaved: &BTreeSet<&str>,
    exists: impl Fn(&str) -> bool,
) -> Result<(), String> {
    if enslaved.contains(link) {
        return Err(format!("'{link}' is a link of a bond; use the bond"));
    }
    if !bonds.contains(link) && !exists(link) {
        return Err(format!("there is no interface '{link}' on this node"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net_types::{NodeBond, NodeVlan};

    fn settings() -> NodeNetwork {
        NodeNetwork {
            bonds: vec![NodeBond {
                name: "bond0".into(),
                mode: "active-backup".into(),
                links: vec!["eno1".into(), "eno2".into()],
            }],
            vlans: vec![NodeVlan {
                link: "bond0".into(),
                id: 10,
            }],
            uplink: Some("bond0.10".into()),
        }
    }

    #[test]
    fn settings_are_checked() {
        let nics = |n: &str| ["eno1", "eno2", "eno3"].contains(&n);
        assert_eq!(validate(&settings(), nics), Ok(()));
        type Change = fn(&mut NodeNetwork);
        let bad: [(Change, &str); 8] = [
            (|s| s.bonds[0].mode = "xor".into(), "mode 'xor'"),
            (|s| s.bonds[0].links.clear(), "has no links"),
            (
                |s| s.bonds[0].links[1] = "eno9".into(),
                "no interface 'eno9'",
            ),
            (|s| s.bonds[0].links[1] = "eno1".into(), "named twice"),
            (|s| s.vlans[0].id = 4095, "ids are 1-4094"),
            (|s| s.vlans.push(s.vlans[0].clone()), "given twice"),
            (|s| s.uplink = Some("eno2".into()), "link of a bond"),
            (|s| s.bonds[0].name = "b/0".into(), "not an interface name"),
        ];
        for (change, why) in bad {
            let mut s = settings();
            change(&mut s);
            let err = validate(&s, nics).unwrap_err();
            assert!(err.contains(why), "{err} (wanted {why})");
        }
        let mut s = settings();
        s.uplink = Some("eno3".into());
        assert_eq!(validate(&s, nics), Ok(()));
        s.uplink = Some("bond0.20".into());
        assert!(validate(&s, nics).unwrap_err().contains("'bond0.20'"));
    }
}
