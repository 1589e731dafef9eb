//! The DHCP server of nat, isolated and private networks: messages through
//! dhcproto (the crate vireo-init's client uses), one UDP socket bound to
//! the network's bridge. Addresses come from static reservations by MAC,
//! then the MAC's earlier lease, then the first free address of the pool.
//! Leases are written to `STATE/networks/leases/NAME.json` before they are
//! acknowledged, so a guest keeps its address across agent restarts.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket as StdUdpSocket};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};

use dhcproto::v4::{
    Decodable, Decoder, DhcpOption, Encodable, Encoder, Message, MessageType, Opcode,
};
use tokio::net::UdpSocket;

use super::spec::{subnet_of, Subnet};
use super::{mac, store_leases};
use crate::net_types::{Lease, NetworkKind, NetworkSpec};

/// How long a lease lasts (guests renew at half of it).
const LEASE_SECS: u32 = 3600;

pub fn leases_path(state: &Path, network: &str) -> PathBuf {
    state
        .join("networks")
        .join("leases")
        .join(format!("{network}.json"))
}

pub fn read_leases(state: &Path, network: &str) -> Vec<Lease> {
    crate::store::read_json(&leases_path(state, network))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// A running server; `stop` ends it.
pub struct Server {
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn start(state: &Path, spec: &NetworkSpec, bridge: &str) -> Result<Server, String> {
        let pool = Pool::new(state, spec)?;
        let sock = bound_socket(bridge)?;
        let sock = UdpSocket::from_std(sock).map_err(|e| format!("DHCP socket: {e}"))?;
        let task = tokio::spawn(serve(sock, pool));
        Ok(Server { task })
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// UDP port 67 on `bridge` only (SO_BINDTODEVICE before bind, so every
/// network's server can have port 67), allowed to broadcast.
fn bound_socket(bridge: &str) -> Result<StdUdpSocket, String> {
    let os = |what: &str| {
        format!(
            "DHCP socket on {bridge}: {what}: {}",
            std::io::Error::last_os_error()
        )
    };
    // SAFETY: plain socket creation; the fd is owned by the UdpSocket below.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(os("socket"));
    }
    // SAFETY: fd is new and ours; the UdpSocket closes it.
    let sock = unsafe { StdUdpSocket::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let int_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    for opt in [libc::SO_REUSEADDR, libc::SO_BROADCAST] {
        // SAFETY: an int option of the size given.
        if unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&one as *const libc::c_int).cast(),
                int_len,
            )
        } != 0
        {
            return Err(os("setsockopt"));
        }
    }
    // SAFETY: the name's bytes, of the length given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            bridge.as_ptr().cast(),
            bridge.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os("SO_BINDTODEVICE"));
    }
    // SAFETY: zeroed sockaddr_in is valid; family and port set below.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_port = 67u16.to_be();
    // SAFETY: addr is a sockaddr_in of the size given.
    let rc = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os("bind port 67"));
    }
    Ok(sock)
}

async fn serve(sock: UdpSocket, mut pool: Pool) {
    let mut buf = vec![0u8; 1500];
    let client = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);
    loop {
        let Ok((n, _)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let Some(reply) = pool.answer(&buf[..n]) else {
            continue;
        };
        if let Err(e) = sock.send_to(&reply, client).await {
            eprintln!("vireo-agent: DHCP reply: {e}");
        }
    }
}

/// The addresses of one network and who has them.
pub struct Pool {
    network: String,
    subnet: Subnet,
    router: bool,
    first: u32,
    last: u32,
    reserved: BTreeMap<String, Ipv4Addr>,
    leases: Vec<Lease>,
    path: PathBuf,
}

impl Pool {
    pub fn new(state: &Path, spec: &NetworkSpec) -> Result<Pool, String> {
        let subnet = subnet_of(spec).ok_or("the network has no subnet")?;
        let (first, last) = match &spec.dhcp_range {
            Some((a, b)) => (parse_ip(a)?, parse_ip(b)?),
            None => subnet.default_pool(),
        };
        let mut reserved = BTreeMap::new();
        for r in &spec.reservations {
            reserved.insert(mac::format(&mac::parse(&r.mac)?), parse_ip(&r.ip)?);
        }
        Ok(Pool {
            network: spec.name.clone(),
            subnet,
            router: spec.kind == NetworkKind::Nat,
            first: first.into(),
            last: last.into(),
            reserved,
            leases: read_leases(state, &spec.name),
            path: leases_path(state, &spec.name),
        })
    }

    /// The reply to one client message, None if it needs none.
    pub fn answer(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let msg = Message::decode(&mut Decoder::new(bytes)).ok()?;
        if msg.opcode() != Opcode::BootRequest {
            return None;
        }
        let client = mac::format(msg.chaddr().get(..6)?.try_into().ok()?);
        let opts = msg.opts();
        let requested = match opts.get(dhcproto::v4::OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => Some(msg.ciaddr()).filter(|ip| !ip.is_unspecified()),
        };
        match opts.msg_type()? {
            MessageType::Discover => {
                let ip = self.choose(&client)?;
                Some(self.reply(&msg, MessageType::Offer, ip))
            }
            MessageType::Request => {
                if let Some(DhcpOption::ServerIdentifier(s)) =
                    opts.get(dhcproto::v4::OptionCode::ServerIdentifier)
                {
                    if *s != self.subnet.gateway() {
                        return None; // the client chose another server
                    }
                }
                let hostname = match opts.get(dhcproto::v4::OptionCode::Hostname) {
                    Some(DhcpOption::Hostname(h)) => Some(h.clone()),
                    _ => None,
                };
                match self.choose(&client) {
                    Some(ip) if requested.is_none_or(|r| r == ip) => {
                        self.grant(&client, ip, hostname).ok()?;
                        Some(self.reply(&msg, MessageType::Ack, ip))
                    }
                    _ => Some(self.reply(&msg, MessageType::Nak, Ipv4Addr::UNSPECIFIED)),
                }
            }
            MessageType::Release => {
                self.leases.retain(|l| l.mac != client);
                let _ = store_leases(&self.path, &self.leases);
                None
            }
            _ => None,
        }
    }

    /// The client's address: reserved, its earlier lease, or the first free.
    fn choose(&self, client: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.reserved.get(client) {
            return Some(*ip);
        }
        if let Some(l) = self.leases.iter().find(|l| l.mac == client) {
            return l.ip.parse().ok();
        }
        let now = crate::vms::now();
        let taken = |ip: Ipv4Addr| {
            self.reserved.values().any(|r| *r == ip)
                || self
                    .leases
                    .iter()
                    .any(|l| l.ip == ip.to_string() && l.expires > now)
        };
        (self.first..=self.last)
            .map(Ipv4Addr::from)
            .find(|ip| !taken(*ip))
    }

    fn grant(
        &mut self,
        client: &str,
        ip: Ipv4Addr,
        hostname: Option<String>,
    ) -> Result<(), String> {
        let ip_text = ip.to_string();
        // An expired lease of another MAC on this address goes.
        self.leases.retain(|l| l.mac != client && l.ip != ip_text);
        self.leases.push(Lease {
            mac: client.into(),
            ip: ip_text,
            expires: crate::vms::now() + u64::from(LEASE_SECS),
            hostname,
        });
        store_leases(&self.path, &self.leases).map_err(|e| {
            eprintln!(
                "vireo-agent: network '{}': saving leases: {e}",
                self.network
            );
            e
        })
    }

    fn reply(&self, req: &Message, kind: MessageType, ip: Ipv4Addr) -> Vec<u8> {
        let gw = self.subnet.gateway();
        let z = Ipv4Addr::UNSPECIFIED;
        let mut msg = Message::new_with_id(req.xid(), z, ip, gw, req.giaddr(), req.chaddr());
        msg.set_opcode(Opcode::BootReply).set_flags(req.flags());
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ServerIdentifier(gw));
        if kind != MessageType::Nak {
            opts.insert(DhcpOption::SubnetMask(Ipv4Addr::from(self.subnet.mask())));
            opts.insert(DhcpOption::AddressLeaseTime(LEASE_SECS));
            // On nat networks the node is the guests' router and resolver
            // (the DNS forwarder, `dns.rs`).
            if self.router {
                opts.insert(DhcpOption::Router(vec![gw]));
                opts.insert(DhcpOption::DomainNameServer(vec![gw]));
            }
        }
        let mut buf = Vec::with_capacity(300);
        msg.encode(&mut Encoder::new(&mut buf))
            .expect("encoding a DHCP message into a Vec cannot fail");
        buf
    }
}

fn parse_ip(s: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not an IPv4 address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::Flags;

    fn request(kind: MessageType, mac: [u8; 6], want: Option<Ipv4Addr>) -> Vec<u8> {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut msg = Message::new_with_id(7, z, z, z, z, &mac);
        msg.set_flags(Flags::default().set_broadcast());
        msg.opts_mut().insert(DhcpOption::MessageType(kind));
        if let Some(ip) = want {
            msg.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
        }
        let mut buf = Vec::new();
        msg.encode(&mut Encoder::new(&mut buf)).unwrap();
        buf
    }

    fn yiaddr(reply: &[u8]) -> (MessageType, Ipv4Addr) {
        let m = Message::decode(&mut Decoder::new(reply)).unwrap();
        (m.opts().msg_type().unwrap(), m.yiaddr())
    }

    #[test]
    fn offers_reservations_then_pool_and_remembers_leases() {
        let state = std::env::temp_dir().join(format!("vireo-dhcp-{}", std::process::id()));
        let spec: NetworkSpec = serde_json::from_value(serde_json::json!({
            "name": "n", "kind": "nat", "subnet": "10.5.0.0/24",
            "reservations": [{"mac": "02:00:00:00:00:aa", "ip": "10.5.0.50"}]
        }))
        .unwrap();
        let mut pool = Pool::new(&state, &spec).unwrap();
        let a = [2, 0, 0, 0, 0, 1];
        let offer = pool
            .answer(&request(MessageType::Discover, a, None))
            .unwrap();
        assert_eq!(
            yiaddr(&offer),
            (MessageType::Offer, Ipv4Addr::new(10, 5, 0, 2))
        );
        let ack = pool
            .answer(&request(
                MessageType::Request,
                a,
                Some(Ipv4Addr::new(10, 5, 0, 2)),
            ))
            .unwrap();
        assert_eq!(yiaddr(&ack).0, MessageType::Ack);
        let nak = pool
            .answer(&request(
                MessageType::Request,
                a,
                Some(Ipv4Addr::new(10, 5, 0, 9)),
            ))
            .unwrap();
        assert_eq!(yiaddr(&nak).0, MessageType::Nak);
        let r = pool
            .answer(&request(MessageType::Discover, [2, 0, 0, 0, 0, 0xaa], None))
            .unwrap();
        assert_eq!(yiaddr(&r).1, Ipv4Addr::new(10, 5, 0, 50));
        // A new pool (an agent restart) reads the lease back.
        let mut again = Pool::new(&state, &spec).unwrap();
        let b = [2, 0, 0, 0, 0, 2];
        let offer_b = again
            .answer(&request(MessageType::Discover, b, None))
            .unwrap();
        assert_eq!(yiaddr(&offer_b).1, Ipv4Addr::new(10, 5, 0, 3));
        let offer_a = again
            .answer(&request(MessageType::Discover, a, None))
            .unwrap();
        assert_eq!(yiaddr(&offer_a).1, Ipv4Addr::new(10, 5, 0, 2));
        std::fs::remove_dir_all(state).unwrap();
    }
}
