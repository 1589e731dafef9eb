//! The links networks are made of, changed through netlink (rtnetlink):
//! bridges, VLAN sub-interfaces, addresses, bridge ports (with the
//! `isolated` flag for private networks), macvtaps, and guest taps. A tap
//! is made persistent with the tun driver's ioctls, since netlink cannot
//! create one; the VMM then opens it by name.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::MacVtapMode as NlMacvtapMode;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMacVtap, LinkMessageBuilder, LinkUnspec, LinkVlan,
    LinkVxlan,
};

use crate::net_types::MacvtapMode;

/// A netlink connection; its I/O runs on a task of its own.
pub fn connect() -> Result<Handle, String> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
    tokio::spawn(conn);
    Ok(handle)
}

fn nl_err(what: &str, e: rtnetlink::Error) -> String {
    format!("{what}: {e}")
}

/// The link's index, None if there is no such link.
pub async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>, String> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(found) => Ok(found.map(|l| l.header.index)),
        // The kernel answers ENODEV for a name it does not know.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl_err(name, e)),
    }
}

pub async fn must_index(h: &Handle, name: &str) -> Result<u32, String> {
    index_of(h, name)
        .await?
        .ok_or_else(|| format!("there is no interface '{name}' on this node"))
}

pub fn exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

pub fn is_bridge(name: &str) -> bool {
    std::path::Path::new("/sys/class/net")
        .join(name)
        .join("bridge")
        .is_dir()
}

/// The bridge (or bond) the link is a port of.
pub fn master_of(name: &str) -> Option<String> {
    let target = std::fs::read_link(format!("/sys/class/net/{name}/master")).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// Up per the kernel's operational flags (IFF_UP).
pub fn is_up(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|f| f & libc::IFF_UP as u32 != 0)
}

pub async fn create_bridge(h: &Handle, name: &str) -> Result<u32, String> {
    let msg = LinkBridge::new(name).up().build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(|e| nl_err(name, e))?;
    must_index(h, name).await
}

pub async fn create_vlan(h: &Handle, name: &str, parent: &str, vid: u16) -> Result<u32, String> {
    let base = must_index(h, parent).await?;
    let msg = LinkVlan::new(name, base, vid).up().build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(|e| format!("VLAN {vid} on {parent}: {e} (is the 8021q module loaded?)"))?;
    must_index(h, name).await
}

/// A VXLAN link on `parent` (UDP 4789) to one peer or a multicast group.
pub async fn create_vxlan(
    h: &Handle,
    name: &str,
    parent: &str,
    vni: u32,
    peer: Result<Ipv4Addr, Ipv4Addr>,
) -> Result<u32, String> {
    let base = must_index(h, parent).await?;
    let msg = LinkVxlan::new(name, vni)
        .dev(base)
        .port(4789)
        .learning(true);
    let msg = match peer {
        Ok(remote) => msg.remote(remote),
        Err(group) => msg.group(group),
    };
    h.link()
        .add(msg.up().build())
        .execute()
        .await
        .map_err(|e| format!("VXLAN {vni} on {parent}: {e}"))?;
    must_index(h, name).await
}

pub async fn create_macvtap(
    h: &Handle,
    name: &str,
    parent: &str,
    mode: MacvtapMode,
    mac: [u8; 6],
) -> Result<u32, String> {
    let base = must_index(h, parent).await?;
    let mode = match mode {
        MacvtapMode::Bridge => NlMacvtapMode::Bridge,
        MacvtapMode::Vepa => NlMacvtapMode::Vepa,
        MacvtapMode::Private => NlMacvtapMode::Private,
        MacvtapMode::Passthru => NlMacvtapMode::Passthrough,
    };
    let msg = LinkMacVtap::new(name, base, mode)
        .address(mac.to_vec())
        .up()
        .build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(|e| nl_err(&format!("macvtap on {parent}"), e))?;
    must_index(h, name).await
}

pub async fn set_up(h: &Handle, name: &str) -> Result<(), String> {
    let msg = LinkUnspec::new_with_name(name).up().build();
    h.link()
        .set(msg)
        .execute()
        .await
        .map_err(|e| nl_err(name, e))
}

/// Makes `port` a port of `bridge` (or, with None, of nothing), up.
pub async fn set_master(h: &Handle, port: &str, bridge: Option<u32>) -> Result<(), String> {
    let msg: LinkMessageBuilder<LinkUnspec> = LinkUnspec::new_with_name(port);
    let msg = match bridge {
        Some(br) => msg.controller(br).up(),
        None => msg.nocontroller(),
    };
    h.link()
        .set(msg.build())
        .execute()
        .await
        .map_err(|e| nl_err(port, e))
}

/// The bridge port flag that keeps isolated ports from talking to each
/// other (they still reach non-isolated ports: the uplink, the node).
pub async fn set_isolated(h: &Handle, port: &str, on: bool) -> Result<(), String> {
    let index = must_index(h, port).await?;
    let msg = LinkBridgePort::new(index).isolated(on).build();
    h.link()
        .set_port(msg)
        .execute()
        .await
        .map_err(|e| nl_err(&format!("{port}: isolated"), e))
}

pub async fn add_address(h: &Handle, link: u32, ip: Ipv4Addr, prefix: u8) -> Result<(), String> {
    h.address()
        .add(link, IpAddr::V4(ip), prefix)
        .replace()
        .execute()
        .await
        .map_err(|e| nl_err(&format!("address {ip}/{prefix}"), e))
}

pub async fn delete(h: &Handle, name: &str) -> Result<(), String> {
    match index_of(h, name).await? {
        Some(index) => h
            .link()
            .del(index)
            .execute()
            .await
            .map_err(|e| nl_err(name, e)),
        None => Ok(()),
    }
}

/// Every IPv4 address on the node: (link index, address, prefix).
pub async fn ipv4_addresses(h: &Handle) -> Result<Vec<(u32, Ipv4Addr, u8)>, String> {
    let mut out = Vec::new();
    let mut addrs = h.address().get().execute();
    while let Some(a) = addrs.try_next().await.map_err(|e| nl_err("addresses", e))? {
        if a.header.family != AddressFamily::Inet {
            continue;
        }
        for attr in &a.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                out.push((a.header.index, *ip, a.header.prefix_len));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A persistent tap `name` with the flags vireo-vmm opens taps with
/// (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR); it outlives this call.
pub fn create_tap(name: &str) -> Result<(), String> {
    let tun = File::options()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| format!("/dev/net/tun: {e}"))?;
    // struct ifreq: the name, then the flags (short), padded to 40 bytes.
    let mut req = [0u8; 40];
    req[..name.len()].copy_from_slice(name.as_bytes());
    let flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    req[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes the 40-byte ifreq we own.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, req.as_mut_ptr()) } != 0 {
        return Err(format!("tap {name}: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: TUNSETPERSIST takes an integer argument.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST, 1) } != 0 {
        return Err(format!("tap {name}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
