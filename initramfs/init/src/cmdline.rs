//! The kernel command line, as far as Vireo's init cares. Pure: `parse` takes
//! the text of /proc/cmdline and returns what to do plus warnings to log, so a
//! typo never stops the boot (the node falls back to DHCP and says so).

use std::net::Ipv4Addr;

use crate::net::bond::{self, BondSpec};
use crate::net::stored::VlanSpec;

/// How the uplink gets its IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetConfig {
    /// DHCP on the bridge over `iface` (or the first link with carrier).
    Dhcp {
        iface: Option<String>,
    },
    Static(StaticIp),
    /// `vireo.ip=off` / `ip=off`: leave networking alone (lo only).
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub iface: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    pub hostname: Option<String>,
    pub debug_shell: bool,
    pub net: NetConfig,
    /// `vireo.modules=a,b`: loaded by name after coldplug.
    pub modules: Vec<String>,
    /// `vireo.agent.listen=ADDR:PORT` for the agent's REST API.
    pub agent_listen: Option<String>,
    /// `vireo.admin_token=T`: an admin API token the agent accepts this
    /// boot (tests and automated provisioning; docs/security.md).
    pub admin_token: Option<String>,
    /// `vireo.cluster=ADDR[:PORT]` with `vireo.join_token=T`: join that
    /// member's cluster at boot unless this node is in a cluster already.
    pub cluster_join: Option<ClusterJoin>,
    /// `vireo.bond=NAME:MODE:NIC1,NIC2` (once per bond): made before vmbr0,
    /// the first one is the uplink unless `vireo.ip=` names another.
    pub bonds: Vec<BondSpec>,
    /// VLAN sub-interfaces, from the stored node settings (`net::stored`).
    pub vlans: Vec<VlanSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterJoin {
    pub member: String,
    pub token: String,
}

impl Default for Cmdline {
    fn default() -> Self {
        Cmdline {
            hostname: None,
            debug_shell: false,
            net: NetConfig::Dhcp { iface: None },
            modules: Vec::new(),
            agent_listen: None,
            admin_token: None,
            cluster_join: None,
            bonds: Vec::new(),
            vlans: Vec::new(),
        }
    }
}

/// Splits like the kernel does: on whitespace, with double quotes grouping
/// (`a="b c"` is one word, quotes removed).
pub fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Parses the whole command line. `vireo.ip=` wins over the kernel's `ip=`,
/// and `vireo.hostname=` over the hostname field of `ip=`.
pub fn parse(text: &str) -> (Cmdline, Vec<String>) {
    let mut cmd = Cmdline::default();
    let mut warnings = Vec::new();
    let (mut vireo_ip, mut kernel_ip) = (None, None);
    let (mut member, mut token) = (None, None);
    for word in split_words(text) {
        let (key, value) = word.split_once('=').unwrap_or((word.as_str(), ""));
        match key {
            "vireo.hostname" => match valid_hostname(value) {
                true => cmd.hostname = Some(value.to_string()),
                false => warnings.push(format!("ignoring invalid vireo.hostname={value:?}")),
            },
            "vireo.debug" => match value {
                "shell" => cmd.debug_shell = true,
                _ => warnings.push(format!("unknown vireo.debug={value:?} (known: shell)")),
            },
            "vireo.modules" => cmd.modules.extend(
                value
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string),
            ),
            "vireo.agent.listen" => cmd.agent_listen = Some(value.to_string()),
            "vireo.admin_token" => cmd.admin_token = Some(value.to_string()),
            "vireo.cluster" => member = Some(value.to_string()),
            "vireo.join_token" => token = Some(value.to_string()),
            "vireo.ip" => vireo_ip = Some(value.to_string()),
            "vireo.bond" => match bond::parse(value) {
                Ok(b) => cmd.bonds.push(b),
                Err(e) => warnings.push(format!("ignoring vireo.bond={value:?}: {e}")),
            },
            "ip" => kernel_ip = Some(value.to_string()),
            k if k.starts_with("vireo.") => warnings.push(format!("unknown option {word:?}")),
            _ => {}
        }
    }
    cmd.cluster_join = cluster_join(member, token, &mut warnings);
    if let Some(v) = vireo_ip {
        match parse_vireo_ip(&v) {
            Ok(net) => cmd.net = net,
            Err(e) => warnings.push(format!("vireo.ip={v:?}: {e}; using DHCP")),
        }
    } else if let Some(v) = kernel_ip {
        match parse_kernel_ip(&v) {
            Ok((net, host)) => {
                cmd.net = net;
                if cmd.hostname.is_none() {
                    cmd.hostname = host;
                }
            }
            Err(e) => warnings.push(format!("ip={v:?}: {e}; using DHCP")),
        }
    }
    if let (Some(first), NetConfig::Dhcp { iface: None }) = (cmd.bonds.first(), &cmd.net) {
        cmd.net = NetConfig::Dhcp {
            iface: Some(first.name.clone()),
        };
    }
    if let (Some(first), NetConfig::Static(s)) = (cmd.bonds.first(), &mut cmd.net) {
        s.iface.get_or_insert_with(|| first.name.clone());
    }
    (cmd, warnings)
}

/// Both words or neither; the token's shape is checked here so a typo is
/// logged at boot rather than refused by the member later.
fn cluster_join(
    member: Option<String>,
    token: Option<String>,
    warnings: &mut Vec<String>,
) -> Option<ClusterJoin> {
    match (member, token) {
        (None, None) => None,
        (Some(m), Some(t)) if !m.is_empty() && t.starts_with("vireo1-") => Some(ClusterJoin {
            member: m,
            token: t,
        }),
        (Some(_), Some(_)) => {
            warnings.push(
                "ignoring vireo.cluster: vireo.join_token is not a join token (vireo1-...)".into(),
            );
            None
        }
        (Some(_), None) => {
            warnings.push("ignoring vireo.cluster without vireo.join_token".into());
            None
        }
        (None, Some(_)) => {
            warnings.push("ignoring vireo.join_token without vireo.cluster".into());
            None
        }
    }
}

/// RFC 1123 host name: labels of [A-Za-z0-9-], not starting or ending with '-'.
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `dhcp`, `off`, or `ADDR/PREFIX[,GATEWAY[,IFACE]]`.
pub fn parse_vireo_ip(value: &str) -> Result<NetConfig, String> {
    match value {
        "dhcp" => return Ok(NetConfig::Dhcp { iface: None }),
        "off" | "none" => return Ok(NetConfig::Off),
        _ => {}
    }
    let mut parts = value.split(',');
    let cidr = parts.next().unwrap_or_default();
    let (addr, prefix) = cidr.split_once('/').ok_or("expected ADDR/PREFIX")?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| format!("bad address {addr:?}"))?;
    let prefix: u8 = match prefix.parse() {
        Ok(p) if p <= 32 => p,
        _ => return Err(format!("bad prefix {prefix:?}")),
    };
    let gateway = match parts.next().filter(|g| !g.is_empty()) {
        Some(g) => Some(g.parse().map_err(|_| format!("bad gateway {g:?}"))?),
        None => None,
    };
    let iface = parts.next().filter(|i| !i.is_empty()).map(str::to_string);
    Ok(NetConfig::Static(StaticIp {
        addr,
        prefix,
        gateway,
        iface,
    }))
}

/// The kernel's nfsroot format:
/// `ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:...`,
/// or one of `dhcp|on|any|off|none`. Returns the config and the host name.
pub fn parse_kernel_ip(value: &str) -> Result<(NetConfig, Option<String>), String> {
    match value {
        "dhcp" | "on" | "any" | "bootp" | "rarp" | "both" => {
            return Ok((NetConfig::Dhcp { iface: None }, None))
        }
        "off" | "none" => return Ok((NetConfig::Off, None)),
        _ => {}
    }
    let f: Vec<&str> = value.split(':').collect();
    let field = |i: usize| f.get(i).copied().filter(|s| !s.is_empty());
    let host = field(4).filter(|h| valid_hostname(h)).map(str::to_string);
    let iface = field(5).map(str::to_string);
    let autoconf = field(6).unwrap_or("");
    let wants_dhcp = matches!(autoconf, "dhcp" | "on" | "any" | "bootp" | "both");
    let Some(client) = field(0).filter(|_| !wants_dhcp) else {
        return Ok((NetConfig::Dhcp { iface }, host));
    };
    let addr: Ipv4Addr = client
        .parse()
        .map_err(|_| format!("bad client address {client:?}"))?;
    let gateway = match field(2) {
        Some(g) => Some(g.parse().map_err(|_| format!("bad gateway {g:?}"))?),
        None => None,
    };
    let prefix = match field(3) {
        Some(m) => netmask_prefix(m.parse().map_err(|_| format!("bad netmask {m:?}"))?)
            .ok_or(format!("netmask {m} is not contiguous"))?,
        None => classful_prefix(addr),
    };
    let net = NetConfig::Static(StaticIp {
        addr,
        prefix,
        gateway,
        iface,
    });
    Ok((net, host))
}

/// 255.255.255.0 → 24; None when the ones are not contiguous.
pub fn netmask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The kernel's default when `ip=` gives no netmask: the old address class.
fn classful_prefix(addr: Ipv4Addr) -> u8 {
    match addr.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_with_quotes() {
        assert_eq!(
            split_words("console=ttyS0  a=\"b c\" quiet\n"),
            vec!["console=ttyS0", "a=b c", "quiet"]
        );
    }

    #[test]
    fn defaults_to_dhcp() {
        let (c, w) = parse("console=ttyS0 quiet");
        assert_eq!(c, Cmdline::default());
        assert!(w.is_empty());
    }

    #[test]
    fn vireo_options() {
        let (c, w) = parse(
            "vireo.hostname=node1 vireo.debug=shell vireo.modules=tun,8021q vireo.agent.listen=0.0.0.0:9000",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.hostname.as_deref(), Some("node1"));
        assert!(c.debug_shell);
        assert_eq!(c.modules, vec!["tun", "8021q"]);
        assert_eq!(c.agent_listen.as_deref(), Some("0.0.0.0:9000"));
        let (c, _) = parse("vireo.admin_token=s3cret");
        assert_eq!(c.admin_token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn bad_values_warn_and_fall_back() {
        let (c, w) = parse("vireo.hostname=-bad- vireo.debug=gdb vireo.ip=10.0.0.1 vireo.nope=1");
        assert_eq!(c.hostname, None);
        assert!(!c.debug_shell);
        assert_eq!(c.net, NetConfig::Dhcp { iface: None });
        assert_eq!(w.len(), 4, "{w:?}");
    }

    #[test]
    fn vireo_ip_static() {
        let (c, _) = parse("vireo.ip=192.168.1.10/24,192.168.1.1");
        let want = StaticIp {
            addr: Ipv4Addr::new(192, 168, 1, 10),
            prefix: 24,
            gateway: Some(Ipv4Addr::new(192, 168, 1, 1)),
            iface: None,
        };
        assert_eq!(c.net, NetConfig::Static(want));
        let net = parse_vireo_ip("10.1.0.2/16,,eno1").unwrap();
        let NetConfig::Static(s) = net else { panic!() };
        assert_eq!(
            (s.prefix, s.gateway, s.iface.as_deref()),
            (16, None, Some("eno1"))
        );
        assert!(parse_vireo_ip("10.1.0.2/33").is_err());
        assert!(parse_vireo_ip("10.1.0.300/24").is_err());
        assert_eq!(parse_vireo_ip("off").unwrap(), NetConfig::Off);
    }

    #[test]
    fn kernel_ip_format() {
        let (c, w) = parse("ip=10.0.2.20::10.0.2.2:255.255.255.0:n2:eth0:off");
        assert!(w.is_empty());
        assert_eq!(c.hostname.as_deref(), Some("n2"));
        let want = StaticIp {
            addr: Ipv4Addr::new(10, 0, 2, 20),
            prefix: 24,
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            iface: Some("eth0".into()),
        };
        assert_eq!(c.net, NetConfig::Static(want));
        let (net, _) = parse_kernel_ip(":::::eth1:dhcp").unwrap();
        assert_eq!(
            net,
            NetConfig::Dhcp {
                iface: Some("eth1".into())
            }
        );
        let (net, _) = parse_kernel_ip("172.16.0.5:::::").unwrap();
        let NetConfig::Static(s) = net else { panic!() };
        assert_eq!(s.prefix, 16);
        assert!(parse_kernel_ip("1.2.3.4:::255.0.255.0::").is_err());
    }

    #[test]
    fn vireo_ip_wins_and_hostname_precedence() {
        let (c, _) = parse("ip=10.0.0.5::::kname:: vireo.ip=dhcp vireo.hostname=vname");
        assert_eq!(c.net, NetConfig::Dhcp { iface: None });
        assert_eq!(c.hostname.as_deref(), Some("vname"));
    }

    #[test]
    fn bonds_become_the_uplink() {
        let (c, w) = parse("vireo.bond=bond0:active-backup:eno1,eno2 vireo.bond=b1:xor:a");
        assert_eq!(c.bonds.len(), 1);
        assert!(w[0].contains("mode 'xor'"), "{w:?}");
        assert_eq!(
            c.net,
            NetConfig::Dhcp {
                iface: Some("bond0".into())
            }
        );
        let (c, _) = parse("vireo.bond=bond0:balance-rr:a,b vireo.ip=10.0.0.2/24");
        let NetConfig::Static(s) = c.net else {
            panic!("static expected")
        };
        assert_eq!(s.iface.as_deref(), Some("bond0"));
        let (c, _) = parse("vireo.bond=bond0:balance-rr:a,b vireo.ip=10.0.0.2/24,,eth9");
        let NetConfig::Static(s) = c.net else {
            panic!("static expected")
        };
        assert_eq!(s.iface.as_deref(), Some("eth9"));
    }

    #[test]
    fn cluster_words() {
        let (c, w) = parse("vireo.cluster=10.0.0.1 vireo.join_token=vireo1-00ff");
        assert!(w.is_empty(), "{w:?}");
        let j = c.cluster_join.unwrap();
        assert_eq!(
            (j.member.as_str(), j.token.as_str()),
            ("10.0.0.1", "vireo1-00ff")
        );
        for bad in [
            "vireo.cluster=10.0.0.1",
            "vireo.join_token=vireo1-00",
            "vireo.cluster=10.0.0.1 vireo.join_token=secret",
        ] {
            let (c, w) = parse(bad);
            assert_eq!((c.cluster_join, w.len()), (None, 1), "{bad}");
        }
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(netmask_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(netmask_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(netmask_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
    }
}
