//! A network definition checked whole before anything on the node changes:
//! its name, subnet (and that it overlaps no other network's), DHCP pool,
//! reservations, and that no other network already uses its uplink's VLAN.
//! What depends on the node's links now (does the uplink exist, what
//! addresses do interfaces carry) is checked by `apply`.

use std::net::Ipv4Addr;

use crate::net_types::{MacvtapMode, NetworkKind, NetworkSpec};

/// An IPv4 subnet: network address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub net: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// `A.B.C.D/N`; host bits must be zero, N 8-30 (room for a gateway and
    /// at least one guest).
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("subnet '{s}': write it as A.B.C.D/N"))?;
        let net: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("subnet '{s}': '{addr}' is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("subnet '{s}': the prefix must be 8-30"))?;
        let subnet = Subnet { net, prefix };
        if u32::from(net) & !subnet.mask() != 0 {
            return Err(format!(
                "subnet '{s}': host bits are set (did you mean {}/{prefix}?)",
                Ipv4Addr::from(u32::from(net) & subnet.mask())
            ));
        }
        Ok(subnet)
    }

    pub fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.net)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let shorter = self.prefix.min(other.prefix);
        let mask = u32::MAX << (32 - shorter);
        u32::from(self.net) & mask == u32::from(other.net) & mask
    }

    /// The node's address: the first host.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net) + 1)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net) | !self.mask())
    }

    /// The default DHCP pool: the gateway's next address to the last host.
    pub fn default_pool(&self) -> (Ipv4Addr, Ipv4Addr) {
        let first = u32::from(self.gateway()) + 1;
        (
            Ipv4Addr::from(first),
            Ipv4Addr::from(u32::from(self.broadcast()) - 1),
        )
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// 1-12 letters, digits, `-`: `vr-NAME` must fit an interface name (15).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 12
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// An interface name the kernel takes: 1-15 bytes, no '/', ':' or space.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The network's subnet, if it has one.
pub fn subnet_of(spec: &NetworkSpec) -> Option<Subnet> {
    spec.subnet.as_deref().and_then(|s| Subnet::parse(s).ok())
}

/// The link the network goes out through: the uplink, or its VLAN
/// sub-interface.
pub fn effective_uplink(spec: &NetworkSpec) -> Option<String> {
    let uplink = spec.uplink.as_ref()?;
    Some(match spec.vlan {
        Some(vid) => format!("{uplink}.{vid}"),
        None => uplink.clone(),
    })
}

/// Whether guests get a DHCP server on this network.
pub fn serves_dhcp(spec: &NetworkSpec) -> bool {
    let kind_can = matches!(
        spec.kind,
        NetworkKind::Nat | NetworkKind::Isolated | NetworkKind::Private
    );
    kind_can && spec.subnet.is_some() && spec.dhcp.unwrap_or(true)
}

/// Checks `spec` on its own and against the networks that exist.
pub fn validate(spec: &NetworkSpec, others: &[NetworkSpec]) -> Result<(), String> {
    if !valid_name(&spec.name) {
        return Err(format!(
            "name '{}': use 1-12 letters, digits and '-' (not starting with '-')",
            spec.name
        ));
    }
    if others.iter().any(|o| o.name == spec.name) {
        return Err(format!("a network named '{}' exists already", spec.name));
    }
    validate_kind(spec)?;
    validate_overlay(spec, others)?;
    validate_uplink(spec, others)?;
    if let Some(s) = &spec.subnet {
        let subnet = Subnet::parse(s)?;
        for o in others {
            if let Some(theirs) = subnet_of(o).filter(|t| t.overlaps(&subnet)) {
                return Err(format!(
                    "subnet {subnet} overlaps network '{}' ({theirs})",
                    o.name
                ));
            }
        }
        validate_dhcp(spec, &subnet)?;
    }
    Ok(())
}

fn validate_kind(spec: &NetworkSpec) -> Result<(), String> {
    let needs_uplink = matches!(
        spec.kind,
        NetworkKind::Bridge | NetworkKind::Macvtap | NetworkKind::Overlay
    );
    if needs_uplink && spec.uplink.is_none() {
        return Err(format!("a {:?} network needs an uplink", spec.kind).to_lowercase());
    }
    if spec.kind == NetworkKind::Nat && spec.subnet.is_none() {
        return Err("a nat network needs a subnet (e.g. 10.10.0.0/24)".into());
    }
    let lan_addresses = matches!(
        spec.kind,
        NetworkKind::Bridge | NetworkKind::Macvtap | NetworkKind::Overlay
    );
    if lan_addresses && spec.subnet.is_some() {
        return Err(
            "bridge, macvtap and overlay networks take no subnet: guests bring their own addresses"
                .into(),
        );
    }
    let private = matches!(spec.kind, NetworkKind::Isolated | NetworkKind::Private);
    if private && (spec.uplink.is_some() || spec.vlan.is_some()) {
        return Err("isolated and private networks have no uplink or VLAN".into());
    }
    if spec.macvtap_mode.is_some() && spec.kind != NetworkKind::Macvtap {
        return Err("macvtap_mode is only for macvtap networks".into());
    }
    Ok(())
}

/// An overlay needs its VNI (unique on the node) and either one peer or a
/// multicast group; other kinds none of these.
fn validate_overlay(spec: &NetworkSpec, others: &[NetworkSpec]) -> Result<(), String> {
    let has_any = spec.vni.is_some() || !spec.peers.is_empty() || spec.group.is_some();
    if spec.kind != NetworkKind::Overlay {
        return match has_any {
            true => Err("vni, peers and group are only for overlay networks".into()),
            false => Ok(()),
        };
    }
    let vni = spec
        .vni
        .ok_or("an overlay network needs a vni (1-16777215)")?;
    if !(1..=0xff_ffff).contains(&vni) {
        return Err(format!("vni {vni}: must be 1-16777215"));
    }
    if let Some(o) = others.iter().find(|o| o.vni == Some(vni)) {
        return Err(format!("vni {vni} is used by network '{}' already", o.name));
    }
    match (spec.peers.as_slice(), &spec.group) {
        ([peer], None) => peer
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| format!("peer '{peer}' is not an IPv4 address")),
        ([], Some(g)) => match g.parse::<Ipv4Addr>() {
            Ok(ip) if ip.is_multicast() => Ok(()),
            _ => Err(format!("group '{g}' is not an IPv4 multicast address")),
        },
        _ => Err(
            "an overlay network takes one peer (two nodes) or a multicast group (more nodes)"
                .into(),
        ),
    }
}

fn validate_uplink(spec: &NetworkSpec, others: &[NetworkSpec]) -> Result<(), String> {
    if let Some(uplink) = &spec.uplink {
        if !valid_ifname(uplink) {
            return Err(format!("uplink '{uplink}' is not an interface name"));
        }
    }
    if let Some(vid) = spec.vlan {
        if !(1..=4094).contains(&vid) {
            return Err(format!("vlan {vid}: must be 1-4094"));
        }
        let ifname = effective_uplink(spec).unwrap_or_default();
        if !valid_ifname(&ifname) {
            return Err(format!(
                "vlan {vid}: '{ifname}' is too long an interface name"
            ));
        }
        if let Some(o) = others
            .iter()
            .find(|o| o.vlan == Some(vid) && o.uplink == spec.uplink)
        {
            return Err(format!(
                "VLAN {vid} on {} is used by network '{}' already",
                spec.uplink.as_deref().unwrap_or("?"),
                o.name
            ));
        }
    }
    let passthru = spec.macvtap_mode == Some(MacvtapMode::Passthru);
    if let Some(o) = others.iter().find(|o| {
        o.kind == NetworkKind::Bridge
            && spec.vlan.is_none()
            && o.vlan.is_none()
            && o.uplink == spec.uplink
            && (spec.kind == NetworkKind::Bridge || passthru)
    }) {
        return Err(format!(
            "uplink {} is the port of network '{}' already",
            spec.uplink.as_deref().unwrap_or("?"),
            o.name
        ));
    }
    Ok(())
}

fn validate_dhcp(spec: &NetworkSpec, subnet: &Subnet) -> Result<(), String> {
    let inside = |what: &str, s: &str| -> Result<Ipv4Addr, String> {
        let ip: Ipv4Addr = s
            .parse()
            .map_err(|_| format!("{what} '{s}' is not an IPv4 address"))?;
        let usable = subnet.contains(ip)
            && ip != subnet.net
            && ip != subnet.broadcast()
            && ip != subnet.gateway();
        match usable {
            true => Ok(ip),
            false => Err(format!(
                "{what} {ip} is not a guest address of {subnet} (the gateway is {})",
                subnet.gateway()
            )),
        }
    };
    if let Some((first, last)) = &spec.dhcp_range {
        let (a, b) = (inside("dhcp_range", first)?, inside("dhcp_range", last)?);
        if a > b {
            return Err(format!("dhcp_range {a} - {b}: the first is after the last"));
        }
    }
    let mut seen_macs = std::collections::HashSet::new();
    let mut seen_ips = std::collections::HashSet::new();
    for r in &spec.reservations {
        let mac = super::mac::parse(&r.mac).map_err(|e| format!("reservation: {e}"))?;
        let ip = inside("reservation", &r.ip)?;
        if !seen_macs.insert(mac) || !seen_ips.insert(ip) {
            return Err(format!("reservation {} → {}: listed twice", r.mac, r.ip));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: NetworkKind) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            kind,
            uplink: None,
            vlan: None,
            subnet: None,
            dhcp_range: None,
            dhcp: None,
            reservations: Vec::new(),
            macvtap_mode: None,
            vni: None,
            peers: Vec::new(),
            group: None,
            cluster: false,
        }
    }

    #[test]
    fn subnets_parse_and_overlap() {
        let a = Subnet::parse("10.1.0.0/16").unwrap();
        let b = Subnet::parse("10.1.2.0/24").unwrap();
        let c = Subnet::parse("10.2.0.0/24").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert_eq!(b.gateway(), Ipv4Addr::new(10, 1, 2, 1));
        assert_eq!(
            b.default_pool(),
            (Ipv4Addr::new(10, 1, 2, 2), Ipv4Addr::new(10, 1, 2, 254))
        );
        assert!(Subnet::parse("10.1.2.3/24")
            .unwrap_err()
            .contains("10.1.2.0/24"));
        assert!(Subnet::parse("10.1.2.0/31").is_err());
        assert!(Subnet::parse("10.1.2.0").is_err());
    }

    #[test]
    fn bad_definitions_say_why() {
        let mut nat = spec("n1", NetworkKind::Nat);
        assert!(validate(&nat, &[]).unwrap_err().contains("needs a subnet"));
        nat.subnet = Some("10.9.0.0/24".into());
        validate(&nat, &[]).unwrap();
        let mut other = spec("n2", NetworkKind::Isolated);
        other.subnet = Some("10.9.0.128/25".into());
        assert!(validate(&other, &[nat.clone()])
            .unwrap_err()
            .contains("overlaps network 'n1'"));
        assert!(validate(&nat, &[nat.clone()])
            .unwrap_err()
            .contains("exists"));
        let mut v1 = spec("v1", NetworkKind::Bridge);
        v1.uplink = Some("eth0".into());
        v1.vlan = Some(10);
        let mut v2 = v1.clone();
        v2.name = "v2".into();
        assert!(validate(&v2, &[v1])
            .unwrap_err()
            .contains("VLAN 10 on eth0"));
        nat.reservations.push(crate::net_types::Reservation {
            mac: "02:00:00:00:00:01".into(),
            ip: "10.9.0.1".into(),
        });
        assert!(validate(&nat, &[]).unwrap_err().contains("gateway"));
        assert!(!valid_name("a-very-long-name"));
    }
}
