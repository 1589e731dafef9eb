//! Networking: lo up, bonds and VLANs made (command line and the stored
//! node settings, `stored`), the uplink chosen, the guest bridge `vmbr0`
//! over it, then a static address or a DHCP lease kept renewed. Runs in its own
//! thread with a current-thread tokio runtime (rtnetlink is async), so PID 1's
//! main loop never waits on the network.

pub mod bond;
pub mod dhcp;
pub mod link;
pub mod stored;

use std::net::Ipv4Addr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use rtnetlink::Handle;
use tokio::net::UdpSocket;

use crate::cmdline::{Cmdline, NetConfig, StaticIp};
use crate::log;
use crate::modules::Loader;

/// The bridge guests attach to; the node's own address lives on it.
pub const BRIDGE: &str = "vmbr0";
/// How long to wait for a link with carrier before taking the first one.
const CARRIER_WAIT: Duration = Duration::from_secs(10);

pub fn spawn(cmd: &Cmdline, loader: Arc<Loader>) {
    let (cfg, links) = (cmd.net.clone(), Links::of(cmd));
    let spawned = std::thread::Builder::new()
        .name("vireo-net".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return log!("network: no runtime: {e}"),
            };
            if let Err(e) = rt.block_on(run(cfg, &links, loader)) {
                log!("network: {e}");
            }
        });
    if let Err(e) = spawned {
        log!("network: cannot start thread: {e}");
    }
}

/// The links made before the uplink is chosen.
struct Links {
    bonds: Vec<bond::BondSpec>,
    vlans: Vec<stored::VlanSpec>,
}

impl Links {
    fn of(cmd: &Cmdline) -> Links {
        Links {
            bonds: cmd.bonds.clone(),
            vlans: cmd.vlans.clone(),
        }
    }
}

/// `vireo-init --net-only [--settings FILE] 'WORDS'`: only the network
/// bring-up of the command line WORDS (and of the stored node settings
/// FILE), in the foreground (static addresses: returns once applied; DHCP:
/// keeps the lease renewed). For the QEMU rig's network jobs and for trying
/// a network option on a running node's namespace.
pub fn run_foreground(args: &[String]) -> i32 {
    let (settings, words) = match args {
        [flag, file, rest @ ..] if flag == "--settings" => (Some(file), rest),
        rest => (None, rest),
    };
    let (mut cmd, mut warnings) = crate::cmdline::parse(&words.join(" "));
    if let Some(file) = settings {
        warnings.extend(stored::load(&mut cmd, std::path::Path::new(file)));
    }
    for w in &warnings {
        log!("cmdline: {w}");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log!("network: no runtime: {e}");
            return 1;
        }
    };
    let loader = Arc::new(Loader::open(true));
    let links = Links::of(&cmd);
    match rt.block_on(run(cmd.net, &links, loader)) {
        Ok(()) => 0,
        Err(e) => {
            log!("network: {e}");
            1
        }
    }
}

async fn run(cfg: NetConfig, links: &Links, loader: Arc<Loader>) -> Result<(), String> {
    let (conn, h, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
    tokio::spawn(conn);
    link::set_up(&h, "lo").await?;
    if cfg == NetConfig::Off {
        log!("network: off (lo only)");
        return Ok(());
    }
    let wanted = match &cfg {
        NetConfig::Dhcp { iface } => iface.clone(),
        NetConfig::Static(s) => s.iface.clone(),
        NetConfig::Off => None,
    };
    let mut made = make_bonds(&h, &links.bonds, &loader).await;
    made.extend(make_vlans(&h, &links.vlans, &loader).await);
    let ours = |w: &str| {
        links.bonds.iter().any(|b| b.name == w) || links.vlans.iter().any(|v| v.name() == w)
    };
    let uplink = match wanted {
        Some(w) if made.contains(&w) => w,
        // Its bond or VLAN could not be made: any NIC rather than no network.
        Some(w) if ours(&w) => find_uplink(&h, None).await?,
        w => find_uplink(&h, w.as_deref()).await?,
    };
    let mac = link::mac_of(&uplink).ok_or(format!("{uplink}: no MAC address"))?;
    loader.load_logged("bridge");
    let br = link::bridge_over(&h, BRIDGE, &uplink, mac).await?;
    log!("network: {BRIDGE} over {uplink}");
    match cfg {
        NetConfig::Static(s) => apply_static(&h, br, &s).await,
        _ => dhcp_forever(&h, br, mac).await,
    }
}

/// Makes every bond (before any NIC is brought up: links join a bond while
/// down); returns the names of those made. A bond that fails is logged and
/// left out, and the uplink is then chosen among the NICs as without it.
async fn make_bonds(h: &Handle, bonds: &[bond::BondSpec], loader: &Loader) -> Vec<String> {
    if !bonds.is_empty() {
        loader.load_logged("bonding");
    }
    let mut made = Vec::new();
    for b in bonds {
        match bond::create(h, b).await {
            Ok(()) => {
                let (mode, nics) = (b.mode.name(), b.nics.join(","));
                log!("network: bond {} ({mode}) over {nics}", b.name);
                made.push(b.name.clone());
            }
            Err(e) => log!("network: {e}"),
        }
    }
    made
}

/// Makes every VLAN sub-interface (after the bonds, which they may sit
/// on); returns the names of those made. One that fails is logged and
/// left out, like a bond.
async fn make_vlans(h: &Handle, vlans: &[stored::VlanSpec], loader: &Loader) -> Vec<String> {
    if !vlans.is_empty() {
        loader.load_logged("8021q");
    }
    let mut made = Vec::new();
    for v in vlans {
        match link::vlan_over(h, &v.link, &v.name(), v.id).await {
            Ok(()) => {
                log!("network: VLAN {} over {}", v.id, v.link);
                made.push(v.name());
            }
            Err(e) => log!("network: VLAN {}: {e}", v.name()),
        }
    }
    made
}

/// Brings every physical NIC up (carrier is only reported on an up link),
/// then waits for carrier; falls back to the first NIC so a cable plugged in
/// later still works.
async fn find_uplink(h: &Handle, wanted: Option<&str>) -> Result<String, String> {
    let nics = link::physical_nics();
    if nics.is_empty() {
        return Err("no Ethernet device found (is its driver in the image?)".into());
    }
    for n in &nics {
        if let Err(e) = link::set_up(h, &n.name).await {
            log!("network: {e}");
        }
    }
    let start = tokio::time::Instant::now();
    loop {
        let nics = link::physical_nics();
        if let Some(n) = link::choose_uplink(&nics, wanted).filter(|n| n.carrier) {
            return Ok(n.name.clone());
        }
        if start.elapsed() > CARRIER_WAIT {
            let first = link::choose_uplink(&nics, wanted).or(nics.first());
            let name = first
                .ok_or("the wanted interface does not exist")?
                .name
                .clone();
            log!("network: no carrier after {CARRIER_WAIT:?}; using {name} anyway");
            return Ok(name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn apply_static(h: &Handle, br: u32, s: &StaticIp) -> Result<(), String> {
    link::add_address(h, br, s.addr, s.prefix).await?;
    if let Some(gw) = s.gateway {
        link::default_route(h, br, gw).await?;
    }
    let gw = s.gateway.map(|g| g.to_string()).unwrap_or("none".into());
    log!(
        "network: static {}/{} gateway {gw} on {BRIDGE}",
        s.addr,
        s.prefix
    );
    Ok(())
}

/// Acquires a lease, applies it, renews at T1; on losing it, starts over.
async fn dhcp_forever(h: &Handle, br: u32, mac: [u8; 6]) -> Result<(), String> {
    let sock = dhcp_socket(BRIDGE)?;
    let mut backoff = Duration::from_secs(2);
    loop {
        let mut lease = match dhcp::acquire(&sock, &mac).await {
            Ok(l) => l,
            Err(e) => {
                log!("dhcp: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        backoff = Duration::from_secs(2);
        apply_lease(h, br, &lease).await?;
        loop {
            tokio::time::sleep(Duration::from_secs(lease.renew_secs.max(10).into())).await;
            match dhcp::renew(&sock, &mac, &lease).await {
                Ok(l) if l.addr == lease.addr => lease = l,
                Ok(l) => {
                    lease = l;
                    link::flush_addresses(h, br).await?;
                    apply_lease(h, br, &lease).await?;
                }
                Err(e) => {
                    // Simplification: no rebinding phase; the address is
                    // dropped and a fresh lease requested straight away.
                    log!("dhcp: renewing {}: {e}; dropping the address", lease.addr);
                    link::flush_addresses(h, br).await?;
                    break;
                }
            }
        }
    }
}

async fn apply_lease(h: &Handle, br: u32, l: &dhcp::Lease) -> Result<(), String> {
    link::add_address(h, br, l.addr, l.prefix).await?;
    if let Some(gw) = l.router {
        link::default_route(h, br, gw).await?;
    }
    write_resolv_conf(&l.dns);
    let gw = l.router.map(|g| g.to_string()).unwrap_or("none".into());
    log!(
        "dhcp: lease {}/{} gateway {gw} from {} for {}s on {BRIDGE}",
        l.addr,
        l.prefix,
        l.server,
        l.lease_secs
    );
    Ok(())
}

fn write_resolv_conf(dns: &[Ipv4Addr]) {
    let text: String = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
    let _ = std::fs::create_dir_all("/etc");
    if let Err(e) = std::fs::write("/etc/resolv.conf", text) {
        log!("dhcp: /etc/resolv.conf: {e}");
    }
}

/// UDP port 68 on `iface` only, allowed to broadcast. Works before the
/// interface has an address: the kernel sends from 0.0.0.0 on a bound device.
fn dhcp_socket(iface: &str) -> Result<UdpSocket, String> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| format!("dhcp socket: {e}"))?;
    let set = || -> nix::Result<()> {
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        socket::setsockopt(&fd, sockopt::Broadcast, &true)?;
        socket::setsockopt(&fd, sockopt::BindToDevice, &iface.into())?;
        socket::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn::new(0, 0, 0, 0, 68),
        )
    };
    set().map_err(|e| format!("dhcp socket on {iface}: {e}"))?;
    // SAFETY: the fd is a freshly made UDP socket we own and hand over.
    let std_sock = unsafe { std::net::UdpSocket::from_raw_fd(fd.into_raw_fd()) };
    UdpSocket::from_std(std_sock).map_err(|e| format!("dhcp socket: {e}"))
}
