//! Links: what sysfs says about them (pure helpers + reads) and the netlink
//! changes init makes (up, bridge, port, address, default route).

use std::fs;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVlan, RouteMessageBuilder};

/// A physical Ethernet link as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    pub carrier: bool,
}

/// Ethernet devices backed by hardware (a `device` link in sysfs), sorted by
/// name: lo, bridges, taps and the like have no `device`.
pub fn physical_nics() -> Vec<Nic> {
    let Ok(entries) = fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut nics: Vec<Nic> = entries
        .flatten()
        .filter(|e| e.path().join("device").exists())
        .filter(|e| read_trimmed(&e.path().join("type")).as_deref() == Some("1"))
        .map(|e| {
            let carrier = read_trimmed(&e.path().join("carrier")).as_deref() == Some("1");
            let name = e.file_name().to_string_lossy().into_owned();
            Nic { name, carrier }
        })
        .collect();
    nics.sort_by(|a, b| a.name.cmp(&b.name));
    nics
}

fn read_trimmed(path: &std::path::Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The uplink: the named one if asked for, else the first with carrier.
pub fn choose_uplink<'a>(nics: &'a [Nic], wanted: Option<&str>) -> Option<&'a Nic> {
    match wanted {
        Some(w) => nics.iter().find(|n| n.name == w),
        None => nics.iter().find(|n| n.carrier),
    }
}

/// "52:54:00:12:34:56" → bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

pub fn mac_of(name: &str) -> Option<[u8; 6]> {
    parse_mac(&fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?)
}

fn err(what: &str, e: rtnetlink::Error) -> String {
    format!("{what}: {e}")
}

pub async fn index_of(h: &Handle, name: &str) -> Result<u32, String> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link.header.index),
        Ok(None) => Err(format!("no link {name}")),
        Err(e) => Err(err(name, e)),
    }
}

pub async fn set_up(h: &Handle, name: &str) -> Result<(), String> {
    let msg = LinkUnspec::new_with_name(name).up().build();
    h.link().set(msg).execute().await.map_err(|e| err(name, e))
}

/// Makes `name`, the 802.1Q sub-interface of `parent` for tag `id` (or
/// takes the one there: init restarted networking), and brings both up
/// (a VLAN passes frames only while its parent is up).
pub async fn vlan_over(h: &Handle, parent: &str, name: &str, id: u16) -> Result<(), String> {
    let base = index_of(h, parent).await?;
    set_up(h, parent).await?;
    let add = LinkVlan::new(name, base, id).build();
    if let Err(e) = h.link().add(add).execute().await {
        if index_of(h, name).await.is_err() {
            return Err(err(name, e));
        }
    }
    set_up(h, name).await
}

/// Creates `bridge` with the uplink's MAC (so DHCP leases and switch port
/// security see the machine's own address), enslaves the uplink, brings
/// both up. Returns the bridge's index.
pub async fn bridge_over(
    h: &Handle,
    bridge: &str,
    uplink: &str,
    mac: [u8; 6],
) -> Result<u32, String> {
    let add = LinkBridge::new(bridge).address(mac.to_vec()).build();
    if let Err(e) = h.link().add(add).execute().await {
        // Already there (init restarted networking): reuse it.
        if index_of(h, bridge).await.is_err() {
            return Err(err(bridge, e));
        }
    }
    let br = index_of(h, bridge).await?;
    let port = LinkUnspec::new_with_name(uplink)
        .controller(br)
        .up()
        .build();
    h.link()
        .set(port)
        .execute()
        .await
        .map_err(|e| err(uplink, e))?;
    set_up(h, bridge).await?;
    Ok(br)
}

pub async fn add_address(h: &Handle, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), String> {
    let req = h.address().add(index, IpAddr::V4(addr), prefix);
    req.replace().execute().await.map_err(|e| err("address", e))
}

/// Removes every IPv4 address of the link (the lease changed or ended).
pub async fn flush_addresses(h: &Handle, index: u32) -> Result<(), String> {
    let mut addrs = h.address().get().set_link_index_filter(index).execute();
    while let Some(a) = addrs.try_next().await.map_err(|e| err("address", e))? {
        if a.header.family == rtnetlink::packet_route::AddressFamily::Inet {
            h.address()
                .del(a)
                .execute()
                .await
                .map_err(|e| err("address", e))?;
        }
    }
    Ok(())
}

pub async fn default_route(h: &Handle, index: u32, gw: Ipv4Addr) -> Result<(), String> {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gw)
        .output_interface(index)
        .build();
    h.route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(|e| err("default route", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("52:54:00:12:34:56\n"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(parse_mac("zz:54:00:12:34:56"), None);
    }

    #[test]
    fn uplink_choice() {
        let nic = |n: &str, c| Nic {
            name: n.into(),
            carrier: c,
        };
        let nics = vec![nic("eno1", false), nic("eno2", true), nic("enp3s0", true)];
        assert_eq!(choose_uplink(&nics, None).unwrap().name, "eno2");
        assert_eq!(choose_uplink(&nics, Some("eno1")).unwrap().name, "eno1");
        assert!(choose_uplink(&nics, Some("eth9")).is_none());
        assert!(choose_uplink(&nics[..1], None).is_none());
    }
}
