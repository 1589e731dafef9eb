//! `--net tap=NAME|macvtap=NAME|fd=N[,mac=XX:XX:XX:XX:XX:XX][,mtu=N][,id=NAME]`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ConfigError;

/// Where a virtio-net device's frames go on the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum NetBackendConfig {
    /// A tap interface, created if it does not exist.
    Tap(String),
    /// A macvtap link: its /dev/tapN character device.
    Macvtap(String),
    /// A tap the parent process opened (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR).
    Fd(i32),
}

/// A MAC address, shown as `02:00:00:00:00:01`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|()| serde::de::Error::custom(format!("not a unicast MAC: {text}")))
    }
}

impl FromStr for MacAddr {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut mac {
            let p = parts.next().ok_or(())?;
            if p.len() != 2 {
                return Err(());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| ())?;
        }
        // Multicast addresses cannot be a station's own.
        if parts.next().is_some() || mac[0] & 1 != 0 {
            return Err(());
        }
        Ok(Self(mac))
    }
}

/// Longest network device ID (same bound as disks).
pub const MAX_NET_ID_LEN: usize = 20;
/// Smallest MTU an IPv4 host must carry (RFC 791).
const MIN_MTU: u16 = 68;

/// A virtio-net device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConfig {
    pub backend: NetBackendConfig,
    /// The guest's MAC; default a locally administered one derived from the slot.
    pub mac: Option<MacAddr>,
    /// MTU the guest is told (VIRTIO_NET_F_MTU); default 1500.
    pub mtu: Option<u16>,
    pub id: Option<String>,
}

impl FromStr for NetConfig {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| ConfigError::NetSyntax {
            spec: s.to_string(),
            why: why.to_string(),
        };
        let mut backend = None;
        let (mut mac, mut mtu, mut id) = (None, None, None);
        for item in s.split(',') {
            let set = |b: &mut Option<NetBackendConfig>, v| match b.replace(v) {
                None => Ok(()),
                Some(_) => Err(err("give one of tap=, macvtap=, fd=")),
            };
            match item.split_once('=') {
                Some(("tap", n)) if valid_ifname(n) => {
                    set(&mut backend, NetBackendConfig::Tap(n.into()))?
                }
                Some(("macvtap", n)) if valid_ifname(n) => {
                    set(&mut backend, NetBackendConfig::Macvtap(n.into()))?
                }
                Some(("tap" | "macvtap", _)) => {
                    return Err(err("interface names are 1 to 15 bytes, no '/'"))
                }
                Some(("fd", n)) => {
                    let fd = n.parse().ok().filter(|&fd: &i32| fd >= 0);
                    let fd = fd.ok_or_else(|| err("fd takes a file descriptor number"))?;
                    set(&mut backend, NetBackendConfig::Fd(fd))?
                }
                Some(("mac", m)) => {
                    mac = Some(m.parse().map_err(|()| {
                        err("mac takes six hex bytes like 02:00:00:00:00:01, not multicast")
                    })?)
                }
                Some(("mtu", m)) => {
                    let v = m.parse().ok().filter(|&v: &u16| v >= MIN_MTU);
                    mtu = Some(v.ok_or_else(|| err("mtu takes 68 to 65535"))?)
                }
                Some(("id", n)) if !n.is_empty() && n.len() <= MAX_NET_ID_LEN => {
                    id = Some(n.to_string())
                }
                Some(("id", _)) => return Err(err("id must be 1 to 20 bytes")),
                _ => return Err(err(&format!("unknown option '{item}'"))),
            }
        }
        let backend = backend.ok_or_else(|| err("one of tap=, macvtap=, fd= is required"))?;
        Ok(Self {
            backend,
            mac,
            mtu,
            id,
        })
    }
}

fn valid_ifname(n: &str) -> bool {
    !n.is_empty() && n.len() < 16 && !n.contains(['/', '\0']) && n != "." && n != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_specs_parse() {
        let n: NetConfig = "tap=vtap0,mac=02:aa:bb:cc:dd:ee,id=lan,mtu=9000"
            .parse()
            .unwrap();
        assert_eq!(n.backend, NetBackendConfig::Tap("vtap0".into()));
        assert_eq!(n.mac, Some(MacAddr([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])));
        assert_eq!(n.mtu, Some(9000));
        assert_eq!(n.id.as_deref(), Some("lan"));
        let n: NetConfig = "macvtap=mvt0".parse().unwrap();
        assert_eq!(n.backend, NetBackendConfig::Macvtap("mvt0".into()));
        let n: NetConfig = "fd=3".parse().unwrap();
        assert_eq!(n.backend, NetBackendConfig::Fd(3));
        assert_eq!(MacAddr([2, 0, 0, 0, 0, 1]).to_string(), "02:00:00:00:00:01");
    }

    #[test]
    fn the_api_shows_a_net_as_docs_api_openapi_yaml_says() {
        let n: NetConfig = "tap=vtap0,mac=02:76:69:72:65:01,id=lan".parse().unwrap();
        let v = serde_json::to_value(&n).unwrap();
        let want = serde_json::json!({
            "backend": {"kind": "tap", "value": "vtap0"},
            "mac": "02:76:69:72:65:01", "mtu": null, "id": "lan"
        });
        assert_eq!(v, want);
        let fd = serde_json::to_value("fd=3".parse::<NetConfig>().unwrap()).unwrap();
        assert_eq!(fd["backend"], serde_json::json!({"kind": "fd", "value": 3}));
    }

    #[test]
    fn bad_net_specs_are_refused() {
        for bad in [
            "",
            "mac=02:00:00:00:00:01",
            "tap=",
            "tap=a234567890123456",
            "tap=../x",
            "tap=a,macvtap=b",
            "fd=-1",
            "fd=x",
            "tap=a,mac=01:00:00:00:00:01",
            "tap=a,mac=02:00:00:00:00",
            "tap=a,mac=02:00:00:00:00:01:02",
            "tap=a,mac=zz:00:00:00:00:01",
            "tap=a,mtu=10",
            "tap=a,mtu=70000",
            "tap=a,id=",
            "tap=a,queues=2",
        ] {
            assert!(bad.parse::<NetConfig>().is_err(), "{bad}");
        }
    }
}
