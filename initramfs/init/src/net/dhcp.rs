//! DHCPv4 client: packets through dhcproto, exchanged on a UDP socket bound
//! to the bridge. Building and reading messages are pure functions; only
//! `exchange` touches the network.
//!
//! Requests set the BROADCAST flag: until the lease is applied the interface
//! has no address, so the kernel would drop a unicast reply to the offered
//! address. RFC 2131 §4.1 provides the flag for exactly this kind of client.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{
    Decodable, Decoder, DhcpOption, Encodable, Encoder, Flags, Message, MessageType, Opcode,
    OptionCode,
};
use tokio::net::UdpSocket;
use tokio::time::{timeout, Instant};

/// What the server granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub lease_secs: u32,
    /// T1: when to start renewing (option 58, default half the lease).
    pub renew_secs: u32,
}

/// A client message: DISCOVER (`want` None) or REQUEST for `want` from
/// `server` (selecting an offer; server None when renewing).
pub fn build(
    xid: u32,
    mac: &[u8; 6],
    kind: MessageType,
    want: Option<(Ipv4Addr, Option<Ipv4Addr>)>,
) -> Vec<u8> {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut msg = Message::new_with_id(xid, z, z, z, z, mac);
    msg.set_flags(Flags::default().set_broadcast());
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    let mut client_id = vec![1u8];
    client_id.extend_from_slice(mac);
    opts.insert(DhcpOption::ClientIdentifier(client_id));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
    ]));
    if let Some((addr, server)) = want {
        opts.insert(DhcpOption::RequestedIpAddress(addr));
        if let Some(s) = server {
            opts.insert(DhcpOption::ServerIdentifier(s));
        }
    }
    let mut buf = Vec::with_capacity(300);
    msg.encode(&mut Encoder::new(&mut buf))
        .expect("encoding a DHCP message into a Vec cannot fail");
    buf
}

/// Reads a server reply meant for us (`xid`, `mac`). Returns its type and
/// the lease it describes; None for anything else on the wire.
pub fn parse_reply(bytes: &[u8], xid: u32, mac: &[u8; 6]) -> Option<(MessageType, Lease)> {
    let msg = Message::decode(&mut Decoder::new(bytes)).ok()?;
    if msg.opcode() != Opcode::BootReply || msg.xid() != xid || msg.chaddr().get(..6)? != mac {
        return None;
    }
    let opts = msg.opts();
    let kind = opts.msg_type()?;
    let mut lease = Lease {
        addr: msg.yiaddr(),
        prefix: 24,
        router: None,
        dns: Vec::new(),
        server: msg.siaddr(),
        lease_secs: 3600,
        renew_secs: 0,
    };
    for (_, opt) in opts.iter() {
        match opt {
            DhcpOption::SubnetMask(m) => {
                lease.prefix = crate::cmdline::netmask_prefix(*m).unwrap_or(24)
            }
            DhcpOption::Router(r) => lease.router = r.first().copied(),
            DhcpOption::DomainNameServer(d) => lease.dns = d.clone(),
            DhcpOption::ServerIdentifier(s) => lease.server = *s,
            DhcpOption::AddressLeaseTime(t) => lease.lease_secs = *t,
            DhcpOption::Renewal(t) => lease.renew_secs = *t,
            _ => {}
        }
    }
    if lease.renew_secs == 0 || lease.renew_secs > lease.lease_secs {
        lease.renew_secs = lease.lease_secs / 2;
    }
    Some((kind, lease))
}

const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);

/// Sends `packet` and waits for a matching reply of one of `accept` types,
/// resending with exponential backoff (1, 2, 4 s) for up to `tries` sends.
pub async fn exchange(
    sock: &UdpSocket,
    packet: &[u8],
    xid: u32,
    mac: &[u8; 6],
    accept: &[MessageType],
    tries: u32,
) -> Result<(MessageType, Lease), String> {
    let mut wait = Duration::from_secs(1);
    for _ in 0..tries {
        sock.send_to(packet, SERVER)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 1500];
        while let Ok(got) = timeout(deadline - Instant::now(), sock.recv_from(&mut buf)).await {
            let (n, _) = got.map_err(|e| format!("recv: {e}"))?;
            match parse_reply(&buf[..n], xid, mac) {
                Some((kind, lease)) if accept.contains(&kind) => return Ok((kind, lease)),
                _ => continue,
            }
        }
        wait = (wait * 2).min(Duration::from_secs(8));
    }
    Err("no answer from a DHCP server".into())
}

/// DISCOVER → OFFER → REQUEST → ACK. A NAK restarts from DISCOVER once.
pub async fn acquire(sock: &UdpSocket, mac: &[u8; 6]) -> Result<Lease, String> {
    for _ in 0..2 {
        let xid = new_xid();
        let discover = build(xid, mac, MessageType::Discover, None);
        let (_, offer) = exchange(sock, &discover, xid, mac, &[MessageType::Offer], 5).await?;
        let want = Some((offer.addr, Some(offer.server)));
        let request = build(xid, mac, MessageType::Request, want);
        let accept = [MessageType::Ack, MessageType::Nak];
        match exchange(sock, &request, xid, mac, &accept, 3).await? {
            (MessageType::Ack, lease) => return Ok(lease),
            _ => crate::log!("dhcp: server refused {} (NAK); starting over", offer.addr),
        }
    }
    Err("the DHCP server refused every request".into())
}

/// Asks to extend `lease` (REQUEST without server id). Err on NAK or silence.
pub async fn renew(sock: &UdpSocket, mac: &[u8; 6], lease: &Lease) -> Result<Lease, String> {
    let xid = new_xid();
    let request = build(xid, mac, MessageType::Request, Some((lease.addr, None)));
    let accept = [MessageType::Ack, MessageType::Nak];
    match exchange(sock, &request, xid, mac, &accept, 3).await? {
        (MessageType::Ack, l) => Ok(l),
        _ => Err("server refused the renewal (NAK)".into()),
    }
}

/// Transaction ids need only be unpredictable enough not to collide with
/// other clients on the segment; std's per-process random hasher keys do.
fn new_xid() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn decode(b: &[u8]) -> Message {
        Message::decode(&mut Decoder::new(b)).unwrap()
    }

    /// A server's reply as QEMU's user network would send it.
    fn reply(kind: MessageType, xid: u32, mac: &[u8]) -> Vec<u8> {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(
            xid,
            z,
            Ipv4Addr::new(10, 0, 2, 15),
            Ipv4Addr::new(10, 0, 2, 2),
            z,
            mac,
        );
        m.set_opcode(Opcode::BootReply);
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 2)]));
        o.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            10, 0, 2, 3,
        )]));
        o.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)));
        o.insert(DhcpOption::AddressLeaseTime(86400));
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).unwrap();
        buf
    }

    #[test]
    fn discover_and_request() {
        let d = decode(&build(7, &MAC, MessageType::Discover, None));
        assert_eq!(
            (d.opcode(), d.xid(), d.chaddr()),
            (Opcode::BootRequest, 7, &MAC[..])
        );
        assert!(d.flags().broadcast());
        assert_eq!(d.opts().msg_type(), Some(MessageType::Discover));
        assert!(d.opts().get(OptionCode::RequestedIpAddress).is_none());

        let want = Some((
            Ipv4Addr::new(10, 0, 2, 15),
            Some(Ipv4Addr::new(10, 0, 2, 2)),
        ));
        let r = decode(&build(8, &MAC, MessageType::Request, want));
        assert_eq!(r.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(
            r.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 2, 15)))
        );
        assert!(r.opts().get(OptionCode::ServerIdentifier).is_some());
    }

    #[test]
    fn reads_an_ack() {
        let (kind, lease) = parse_reply(&reply(MessageType::Ack, 9, &MAC), 9, &MAC).unwrap();
        assert_eq!(kind, MessageType::Ack);
        let want = Lease {
            addr: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            router: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            server: Ipv4Addr::new(10, 0, 2, 2),
            lease_secs: 86400,
            renew_secs: 43200,
        };
        assert_eq!(lease, want);
    }

    #[test]
    fn ignores_what_is_not_ours() {
        assert!(
            parse_reply(&reply(MessageType::Ack, 9, &MAC), 10, &MAC).is_none(),
            "xid"
        );
        let other = [0x52, 0x54, 0, 0, 0, 1];
        assert!(
            parse_reply(&reply(MessageType::Ack, 9, &other), 9, &MAC).is_none(),
            "mac"
        );
        let ours_as_request = build(9, &MAC, MessageType::Request, None);
        assert!(
            parse_reply(&ours_as_request, 9, &MAC).is_none(),
            "our own broadcast"
        );
        assert!(parse_reply(b"garbage", 9, &MAC).is_none());
    }
}
