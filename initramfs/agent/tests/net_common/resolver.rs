//! A stand-in for the node's resolver in the internet namespace (UDP and
//! TCP port 53), and a guest's side of a lookup. Every A query gets
//! ANSWER, except names starting with `big.`: over UDP their answer is
//! truncated (TC set, no records), as a real resolver does when the
//! records do not fit, and over TCP it carries BIG_COUNT A records, more
//! than a 512-byte UDP answer holds.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{enter, INTERNET_IP};

/// What the resolver answers to every A query but `big.` ones.
pub const ANSWER: [u8; 4] = [192, 0, 2, 80];
/// The A records of a `big.` name over TCP: 192.0.2.1 and on.
pub const BIG_COUNT: u8 = 40;
/// Flags byte 2 of an answer: QR, RD; TC added for truncation.
const QR_RD: u8 = 0x81;
const TC: u8 = 0x02;
/// The longest the resolver serves.
const LIFETIME: Duration = Duration::from_secs(20);

/// The resolver; `finish` stops it and says where queries came from.
pub struct Resolver {
    stop: Arc<AtomicBool>,
    udp: JoinHandle<Vec<String>>,
    tcp: JoinHandle<Vec<String>>,
}

/// The sources of the queries the resolver saw, per transport.
pub struct Seen {
    pub udp: Vec<String>,
    pub tcp: Vec<String>,
}

impl Resolver {
    pub fn start(ns: &str) -> Resolver {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (ns1, stop1, ready1) = (ns.to_string(), stop.clone(), ready_tx.clone());
        let udp = std::thread::spawn(move || {
            enter(&ns1);
            serve_udp(&stop1, ready1)
        });
        let (ns2, stop2) = (ns.to_string(), stop.clone());
        let tcp = std::thread::spawn(move || {
            enter(&ns2);
            serve_tcp(&stop2, ready_tx)
        });
        for _ in 0..2 {
            ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        Resolver { stop, udp, tcp }
    }

    pub fn finish(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        Seen {
            udp: self.udp.join().unwrap(),
            tcp: self.tcp.join().unwrap(),
        }
    }
}

fn serve_udp(stop: &AtomicBool, ready: std::sync::mpsc::Sender<()>) -> Vec<String> {
    let sock = UdpSocket::bind((INTERNET_IP, 53)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    ready.send(()).unwrap();
    let (deadline, mut sources) = (Instant::now() + LIFETIME, Vec::new());
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        sources.push(from.ip().to_string());
        if let Some(reply) = reply(&buf[..n], false) {
            sock.send_to(&reply, from).unwrap();
        }
    }
    sources
}

/// Serves one connection at a time, every query on it, until the peer
/// closes it.
fn serve_tcp(stop: &AtomicBool, ready: std::sync::mpsc::Sender<()>) -> Vec<String> {
    let listener = TcpListener::bind((INTERNET_IP, 53)).unwrap();
    listener.set_nonblocking(true).unwrap();
    ready.send(()).unwrap();
    let (deadline, mut sources) = (Instant::now() + LIFETIME, Vec::new());
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let Ok((mut conn, from)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        while let Some(query) = read_framed(&mut conn) {
            sources.push(from.ip().to_string());
            if let Some(reply) = reply(&query, true) {
                write_framed(&mut conn, &reply).unwrap();
            }
        }
    }
    sources
}

/// The answer to a one-question query.
fn reply(query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let mut at = 12;
    while *query.get(at)? != 0 {
        at += 1 + usize::from(query[at]);
    }
    let question_end = at + 5;
    let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    let big = query.get(12..16)? == b"\x03big";
    let records: Vec<[u8; 4]> = match (qtype, big, tcp) {
        (1, false, _) => vec![ANSWER],
        (1, true, true) => (1..=BIG_COUNT).map(|i| [192, 0, 2, i]).collect(),
        _ => Vec::new(),
    };
    let truncated = qtype == 1 && big && !tcp;
    let flags = QR_RD | if truncated { TC } else { 0 };
    let count = u8::try_from(records.len()).ok()?;
    let mut out = query[..2].to_vec();
    out.extend([flags, 0x80, 0, 1, 0, count, 0, 0, 0, 0]);
    out.extend(query.get(12..question_end)?);
    for ip in records {
        // A pointer to the question's name, A, IN, TTL 60, 4 bytes.
        out.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend(ip);
    }
    Some(out)
}

/// A query for NAME's A record with id ID, recursion desired.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend([0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        out.push(u8::try_from(label.len()).unwrap());
        out.extend(label.as_bytes());
    }
    out.extend([0, 0, 1, 0, 1]);
    out
}

/// What a guest learns from an answer: its id, whether it was truncated,
/// and the addresses of its A records.
#[derive(Debug)]
pub struct Answer {
    pub id: u16,
    pub truncated: bool,
    pub addresses: Vec<Ipv4Addr>,
    pub len: usize,
}

/// Reads the answers `reply` writes (one question, A records whose name is
/// a pointer); None for anything else.
pub fn parse(msg: &[u8]) -> Option<Answer> {
    let mut at = 12;
    while *msg.get(at)? != 0 {
        at += 1 + usize::from(msg[at]);
    }
    at += 5;
    let count = u16::from_be_bytes([*msg.get(6)?, *msg.get(7)?]);
    let mut addresses = Vec::new();
    for _ in 0..count {
        let rdata = msg.get(at + 12..at + 16)?;
        addresses.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        at += 16;
    }
    Some(Answer {
        id: u16::from_be_bytes([msg[0], msg[1]]),
        truncated: msg[2] & TC != 0,
        addresses,
        len: msg.len(),
    })
}

/// From namespace NS: QUERY over UDP to SERVER:53 (3 s at most).
pub fn ask_udp(ns: &str, server: &str, query: Vec<u8>) -> Option<Answer> {
    let (ns, server) = (ns.to_string(), server.to_string());
    std::thread::spawn(move || {
        enter(&ns);
        let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
        sock.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        sock.send_to(&query, (server.as_str(), 53)).ok()?;
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).ok()?;
        parse(&buf[..n])
    })
    .join()
    .unwrap()
}

/// From namespace NS: every query of QUERIES in turn on one TCP
/// connection to SERVER:53; the answers, None where one did not come.
pub fn ask_tcp(ns: &str, server: &str, queries: Vec<Vec<u8>>) -> Vec<Option<Answer>> {
    let ns = ns.to_string();
    let addr: SocketAddr = format!("{server}:53").parse().unwrap();
    std::thread::spawn(move || {
        enter(&ns);
        let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
            return queries.iter().map(|_| None).collect();
        };
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        queries
            .iter()
            .map(|q| {
                write_framed(&mut conn, q).ok()?;
                parse(&read_framed(&mut conn)?)
            })
            .collect()
    })
    .join()
    .unwrap()
}

fn read_framed(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    conn.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut msg).ok()?;
    Some(msg)
}

fn write_framed(conn: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let mut out = u16::try_from(msg.len()).unwrap().to_be_bytes().to_vec();
    out.extend(msg);
    conn.write_all(&out)
}
