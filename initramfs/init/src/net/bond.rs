//! Bonds of uplinks from `vireo.bond=NAME:MODE:NIC1,NIC2[,...]` (the
//! option may be given once per bond), made before `vmbr0` so the bridge
//! can sit on a bond. Modes: `active-backup` (one link carries the traffic,
//! another takes over when it loses carrier), `balance-rr` (frames spread
//! over every link in turn) and `802.3ad` (LACP; the switch must agree).
//! Link monitoring: carrier checked every 100 ms (`miimon`), so a pulled
//! cable moves the traffic within about a tenth of a second.

use rtnetlink::packet_route::link::BondMode;
use rtnetlink::{Handle, LinkBond, LinkUnspec};

use super::link;

/// How often the bond checks its links' carrier, in ms.
const MIIMON_MS: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BondSpec {
    pub name: String,
    pub mode: Mode,
    pub nics: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ActiveBackup,
    BalanceRr,
    Lacp,
}

impl Mode {
    /// As written in `vireo.bond=`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::ActiveBackup => "active-backup",
            Mode::BalanceRr => "balance-rr",
            Mode::Lacp => "802.3ad",
        }
    }

    fn netlink(self) -> BondMode {
        match self {
            Mode::ActiveBackup => BondMode::ActiveBackup,
            Mode::BalanceRr => BondMode::BalanceRr,
            Mode::Lacp => BondMode::Ieee8023Ad,
        }
    }
}

/// An interface name the kernel takes: 1-15 bytes, no '/', ':' or space.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Parses the value of `vireo.bond=`.
pub fn parse(value: &str) -> Result<BondSpec, String> {
    let mut parts = value.splitn(3, ':');
    let (name, mode, nics) = match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(m), Some(l)) => (n, m, l),
        _ => return Err("write it as NAME:MODE:NIC1,NIC2".into()),
    };
    if !valid_ifname(name) {
        return Err(format!("'{name}' is not an interface name"));
    }
    let modes = [Mode::ActiveBackup, Mode::BalanceRr, Mode::Lacp];
    let mode = modes
        .into_iter()
        .find(|m| m.name() == mode)
        .ok_or_else(|| format!("mode '{mode}': use active-backup, balance-rr or 802.3ad"))?;
    let nics: Vec<String> = nics.split(',').map(str::to_string).collect();
    if let Some(bad) = nics.iter().find(|n| !valid_ifname(n) || *n == name) {
        return Err(format!("'{bad}' cannot be a link of bond {name}"));
    }
    let mut unique = nics.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != nics.len() {
        return Err(format!("bond {name} names a link twice"));
    }
    Ok(BondSpec {
        name: name.to_string(),
        mode,
        nics,
    })
}

/// Makes the bond (or takes the one there), enslaves its links (each
/// brought down first: the kernel enslaves only links that are down, and
/// opens them itself) and brings it up. A link that is missing or refused is logged and skipped;
/// a bond left without links is an error.
pub async fn create(h: &Handle, bond: &BondSpec) -> Result<(), String> {
    let settings = || {
        LinkBond::new(&bond.name)
            .mode(bond.mode.netlink())
            .miimon(MIIMON_MS)
    };
    if let Err(e) = h.link().add(settings().build()).execute().await {
        // Loading the bonding module makes a `bond0` of its own (balance-rr):
        // take it, down, with our settings (the mode changes only while the
        // bond is down and has no links).
        let index = link::index_of(h, &bond.name)
            .await
            .map_err(|_| format!("bond {}: {e} (is the bonding module there?)", bond.name))?;
        let down = LinkUnspec::new_with_index(index).down().build();
        let again = settings().index(index).build();
        for msg in [down, again] {
            h.link()
                .set(msg)
                .execute()
                .await
                .map_err(|e| format!("bond {}: {e}", bond.name))?;
        }
    }
    let index = link::index_of(h, &bond.name).await?;
    let mut enslaved = 0;
    for nic in &bond.nics {
        match enslave(h, nic, index).await {
            Ok(()) => enslaved += 1,
            Err(e) => crate::log!("network: bond {}: {e}", bond.name),
        }
    }
    if enslaved == 0 {
        return Err(format!("bond {}: none of its links could join", bond.name));
    }
    link::set_up(h, &bond.name).await
}

async fn enslave(h: &Handle, nic: &str, bond: u32) -> Result<(), String> {
    let down = LinkUnspec::new_with_name(nic).down().build();
    h.link()
        .set(down)
        .execute()
        .await
        .map_err(|e| format!("{nic}: {e}"))?;
    // No `up` in this message: the kernel applies flags before the master,
    // and refuses to enslave a link that is up; the bond opens it itself.
    let join = LinkUnspec::new_with_name(nic).controller(bond).build();
    h.link()
        .set(join)
        .execute()
        .await
        .map_err(|e| format!("{nic} into the bond: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bond_options() {
        let b = parse("bond0:active-backup:eno1,eno2").unwrap();
        assert_eq!(b.name, "bond0");
        assert_eq!(b.mode, Mode::ActiveBackup);
        assert_eq!(b.nics, ["eno1", "eno2"]);
        assert_eq!(parse("b1:802.3ad:a,b,c").unwrap().mode, Mode::Lacp);
        assert_eq!(parse("b1:balance-rr:a").unwrap().mode, Mode::BalanceRr);
        assert!(parse("bond0:active-backup")
            .unwrap_err()
            .contains("NAME:MODE"));
        assert!(parse("bond0:xor:a,b").unwrap_err().contains("mode 'xor'"));
        assert!(parse("bond0:balance-rr:a,a").unwrap_err().contains("twice"));
        assert!(parse("bond0:balance-rr:a,,b").is_err());
        assert!(parse("bond0:balance-rr:bond0").is_err());
        assert!(parse("a/b:balance-rr:x").is_err());
    }
}
