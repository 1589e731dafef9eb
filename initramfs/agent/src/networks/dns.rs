//! DNS for nat guests: a forwarder on the network's gateway address (UDP
//! and TCP port 53), which the DHCP server hands out as the guests'
//! resolver. Each UDP query goes from a socket of its own to the node's
//! resolver, and the answer whose id matches is relayed back as it came (a
//! truncated one keeps its TC bit, so the guest retries over TCP). Each
//! query on a guest's TCP connection (RFC 7766: two-byte length, then the
//! message; several per connection) is asked over a TCP connection of its
//! own to the resolver, so a large answer arrives whole. A query that gets
//! no answer within 3 s, or arrives when no resolver is known, is answered
//! SERVFAIL.
//! The resolver: `VIREO_DNS_UPSTREAM` (ADDR or ADDR:PORT) if set, else the
//! first IPv4 `nameserver` of /etc/resolv.conf (which vireo-init writes
//! from its DHCP lease), read at every query so a new lease counts at once.
//! Why not dnsmasq: it is not in the image, its DHCP side would clash with
//! the agent's own server, and forwarding is a few dozen lines on tokio.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// Queries forwarded at once; more are dropped (the guest retries).
const MAX_IN_FLIGHT: usize = 64;
/// Room for EDNS answers.
const MAX_MESSAGE: usize = 4096;
/// The DNS header: id, flags, four counts.
const HEADER: usize = 12;
/// Guests' TCP connections served at once; more wait in the backlog.
const MAX_TCP_CLIENTS: usize = 32;
/// A guest's TCP connection idle this long is closed (RFC 7766 6.2.3
/// leaves the figure to the server; a few seconds frees slots quickly).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// A running forwarder; dropping it stops it.
pub struct Forwarder {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Forwarder {
    pub fn start(gateway: Ipv4Addr) -> Result<Forwarder, String> {
        let at = SocketAddrV4::new(gateway, 53);
        let sock = std::net::UdpSocket::bind(at)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(UdpSocket::from_std)
            .map_err(|e| format!("DNS on {at}/udp: {e}"))?;
        let listener = std::net::TcpListener::bind(at)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .map_err(|e| format!("DNS on {at}/tcp: {e}"))?;
        let tasks = vec![
            tokio::spawn(serve(Arc::new(sock), gateway)),
            tokio::spawn(serve_tcp(listener, gateway)),
        ];
        Ok(Forwarder { tasks })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve(sock: Arc<UdpSocket>, gateway: Ipv4Addr) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let Ok((n, client)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        if n < HEADER {
            continue;
        }
        let query = buf[..n].to_vec();
        let sock = sock.clone();
        tokio::spawn(async move {
            let answer = match upstream(gateway) {
                Some(server) => ask(server, &query).await,
                None => None,
            };
            let answer = answer.unwrap_or_else(|| servfail(&query));
            let _ = sock.send_to(&answer, client).await;
            drop(slot);
        });
    }
}

async fn serve_tcp(listener: TcpListener, gateway: Ipv4Addr) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CLIENTS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            serve_tcp_client(stream, gateway).await;
            drop(slot);
        });
    }
}

/// Answers a guest's queries on one connection, in order, until it closes
/// it, sends something that is not a query, or stays idle for TCP_IDLE.
async fn serve_tcp_client(mut stream: TcpStream, gateway: Ipv4Addr) {
    loop {
        let query = match tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await {
            Ok(Some(q)) if q.len() >= HEADER => q,
            _ => return,
        };
        let answer = match upstream(gateway) {
            Some(server) => ask_tcp(server, &query).await,
            None => None,
        };
        let answer = answer.unwrap_or_else(|| servfail(&query));
        if write_framed(&mut stream, &answer).await.is_none() {
            return;
        }
    }
}

/// One DNS message over TCP: its two-byte length, then the message.
async fn read_framed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let len = stream.read_u16().await.ok()?;
    let mut msg = vec![0u8; usize::from(len)];
    stream.read_exact(&mut msg).await.ok()?;
    Some(msg)
}

async fn write_framed(stream: &mut TcpStream, msg: &[u8]) -> Option<()> {
    let len = u16::try_from(msg.len()).ok()?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend(len.to_be_bytes());
    out.extend(msg);
    stream.write_all(&out).await.ok()
}

/// Asks the resolver over a TCP connection of its own; its answer if the
/// id matches.
async fn ask_tcp(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let mut stream = TcpStream::connect(server).await.ok()?;
        write_framed(&mut stream, query).await?;
        let answer = read_framed(&mut stream).await?;
        (answer.len() >= HEADER && answer[..2] == query[..2]).then_some(answer)
    })
    .await
    .ok()
    .flatten()
}

/// The resolver queries go to; never the forwarder itself.
fn upstream(gateway: Ipv4Addr) -> Option<SocketAddr> {
    let configured = std::env::var("VIREO_DNS_UPSTREAM").ok();
    let server = match configured {
        Some(v) => parse_server(&v),
        None => first_nameserver(&std::fs::read_to_string("/etc/resolv.conf").ok()?),
    }?;
    (server.ip() != std::net::IpAddr::V4(gateway)).then_some(server)
}

fn parse_server(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| Some(SocketAddr::new(s.parse().ok()?, 53)))
}

/// The first IPv4 `nameserver` line of a resolv.conf.
fn first_nameserver(text: &str) -> Option<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|v| v.trim().parse::<Ipv4Addr>().ok())
        .map(|ip| SocketAddr::new(ip.into(), 53))
        .next()
}

/// Sends the query from a fresh socket; the first answer with its id.
async fn ask(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await.ok()?;
    sock.connect(server).await.ok()?;
    sock.send(query).await.ok()?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        loop {
            let n = sock.recv(&mut buf).await.ok()?;
            if n >= HEADER && buf[..2] == query[..2] {
                return Some(buf[..n].to_vec());
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// A header-only answer: the query's id and opcode, QR and RA set, RD
/// copied, RCODE 2 (server failure).
fn servfail(query: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER];
    out[..2].copy_from_slice(&query[..2]);
    out[2] = 0x80 | (query[2] & 0x79);
    out[3] = 0x80 | 2;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolvers_and_failures() {
        let conf = "# generated\nsearch lan\nnameserver fe80::1\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n";
        assert_eq!(
            first_nameserver(conf),
            Some("192.0.2.53:53".parse().unwrap())
        );
        assert_eq!(first_nameserver("search lan\n"), None);
        assert_eq!(
            parse_server("10.0.0.1"),
            Some("10.0.0.1:53".parse().unwrap())
        );
        assert_eq!(
            parse_server("10.0.0.1:5353"),
            Some("10.0.0.1:5353".parse().unwrap())
        );
        // id 0xabcd, RD set, one question.
        let query = [
            0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'f', b'o', b'o',
        ];
        let fail = servfail(&query);
        assert_eq!(fail, [0xab, 0xcd, 0x81, 0x82, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
