//! The join protocol: how a new node gets into a cluster with nothing but a
//! member's address and the join token. One TCP connection to the member's
//! daemon (port [`JOIN_PORT`]), one JSON object per line:
//!
//! 1. joiner → member `hello {version, nonce_j}` (32 random bytes);
//! 2. member → joiner `challenge {nonce_s, cluster}` (32 random bytes);
//! 3. joiner → member `request {name, addr, key?, mac}` where
//!    `mac = HMAC(K, "request", nonce_j, nonce_s, name, addr[, key])`;
//!    `key` is the joiner's public key for a node certificate ([`pki`]);
//! 4. member → joiner `accepted {nodeid, conf, cert?, ca?, mac}` with
//!    `mac = HMAC(K, "accepted", nonce_j, nonce_s, nodeid, conf[, cert, ca])`
//!    (the certificate when the member holds the cluster CA), or
//!    `refused {error}`.
//!
//! K is derived from the token ([`Token::join_key`]); the token never
//! travels. Both nonces are fresh per connection, so a recorded exchange
//! replays nowhere, and each side proves it knows K. The member answers
//! only after the new node is in the nodelist of every node of its ring
//! (ordered through the ring, see [`crate::groups`]). docs/membership.md
//! ("Joining") lists what an attacker on the network can and cannot do.

pub mod pki;
pub mod token;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use token::Token;
use token::{hex, mac, same_mac, unhex};

/// TCP port of the join service (beside corosync's UDP 5405).
pub const JOIN_PORT: u16 = 5406;
/// Longest line either side accepts.
pub const LINE_MAX: usize = 256 * 1024;
pub const VERSION: u32 = 1;
/// How long either side waits for the other.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Message {
    Hello {
        version: u32,
        nonce: String,
    },
    Challenge {
        nonce: String,
        cluster: String,
    },
    Request {
        name: String,
        addr: Ipv4Addr,
        /// Hex of the joiner's public key (an uncompressed P-256 point).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        mac: String,
    },
    Accepted {
        nodeid: u32,
        conf: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issued: Option<Certs>,
        mac: String,
    },
    Refused {
        error: String,
    },
}

/// A node certificate and the CA's, PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certs {
    pub cert: String,
    pub ca: String,
}

/// What a successful join brings back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub nodeid: u32,
    /// The member's corosync.conf, the new node already in its nodelist.
    pub conf: String,
    pub cluster: String,
    /// This node's certificate, when it sent a key and the member signs.
    pub issued: Option<Certs>,
}

fn nonce() -> Result<[u8; 32], String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(b)
}

fn request_mac(
    key: &[u8],
    nonces: (&[u8], &[u8]),
    name: &str,
    addr: Ipv4Addr,
    public_key: Option<&[u8]>,
) -> [u8; 32] {
    let a = addr.octets();
    let mut parts: Vec<&[u8]> = vec![b"request", nonces.0, nonces.1, name.as_bytes(), &a];
    parts.extend(public_key);
    mac(key, &parts)
}

fn accepted_mac(
    key: &[u8],
    nonces: (&[u8], &[u8]),
    nodeid: u32,
    conf: &str,
    issued: Option<&Certs>,
) -> [u8; 32] {
    let id = nodeid.to_le_bytes();
    let mut parts: Vec<&[u8]> = vec![b"accepted", nonces.0, nonces.1, &id, conf.as_bytes()];
    if let Some(c) = issued {
        parts.extend([c.cert.as_bytes(), c.ca.as_bytes()]);
    }
    mac(key, &parts)
}

/// One line-oriented JSON connection with bounded lines.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn new(stream: TcpStream) -> Result<Conn, String> {
        let e = |e: std::io::Error| e.to_string();
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(e)?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(e)?;
        let writer = stream.try_clone().map_err(e)?;
        Ok(Conn {
            reader: BufReader::new(stream),
            writer,
        })
    }

    fn send(&mut self, m: &Message) -> Result<(), String> {
        let mut line = serde_json::to_vec(m).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|e| e.to_string())
    }

    fn recv(&mut self) -> Result<Message, String> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(LINE_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("the other side closed the connection".into());
        }
        if line.len() > LINE_MAX {
            return Err(format!("a line longer than {LINE_MAX} bytes"));
        }
        serde_json::from_slice(&line).map_err(|e| {
            let shown = String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned();
            format!("malformed join message ({e}): {shown:?}")
        })
    }
}

/// The joiner's side: asks `member` to add (`name`, `addr`) to its cluster,
/// and to sign `public_key` (raw P-256) into a node certificate.
pub fn request(
    member: SocketAddr,
    token: &Token,
    name: &str,
    addr: Ipv4Addr,
    public_key: Option<&[u8]>,
) -> Result<Joined, String> {
    let stream = TcpStream::connect_timeout(&member, IO_TIMEOUT)
        .map_err(|e| format!("cannot reach the join service at {member}: {e}"))?;
    let mut c = Conn::new(stream)?;
    let key = token.join_key();
    let nj = nonce()?;
    c.send(&Message::Hello {
        version: VERSION,
        nonce: hex(&nj),
    })?;
    let (ns, cluster) = match c.recv()? {
        Message::Challenge { nonce, cluster } => (
            unhex(&nonce)
                .filter(|n| n.len() == 32)
                .ok_or("malformed challenge nonce")?,
            cluster,
        ),
        Message::Refused { error } => return Err(format!("{member} refused: {error}")),
        other => return Err(format!("unexpected answer from {member}: {other:?}")),
    };
    let m = request_mac(&key, (&nj, &ns), name, addr, public_key);
    c.send(&Message::Request {
        name: name.into(),
        addr,
        key: public_key.map(hex),
        mac: hex(&m),
    })?;
    match c.recv()? {
        Message::Accepted {
            nodeid,
            conf,
            issued,
            mac,
        } => {
            let want = accepted_mac(&key, (&nj, &ns), nodeid, &conf, issued.as_ref());
            if !unhex(&mac).is_some_and(|m| same_mac(&m, &want)) {
                return Err(format!(
                    "{member} answered without proof of the token: not a member of this cluster"
                ));
            }
            Ok(Joined {
                nodeid,
                conf,
                cluster,
                issued,
            })
        }
        Message::Refused { error } => Err(format!("{member} refused the join: {error}")),
        other => Err(format!("unexpected answer from {member}: {other:?}")),
    }
}

/// What the member's side needs from its daemon.
pub trait Admit {
    /// The cluster's name (sent in the challenge).
    fn cluster(&self) -> String;
    /// The current token (re-read each time, so a new one applies at once).
    fn token(&self) -> Result<Token, String>;
    /// Puts the node in every member's nodelist; its id and our conf after.
    fn add(&self, name: &str, addr: Ipv4Addr) -> Result<(u32, String), String>;
    /// A node certificate for `public_key`, if this member signs them.
    fn issue(
        &self,
        _name: &str,
        _addr: Ipv4Addr,
        _public_key: &[u8],
    ) -> Result<Option<Certs>, String> {
        Ok(None)
    }
}

/// Pause before refusing a wrong token: online guessing stays slow (the
/// 128-bit token makes it hopeless anyway).
pub const REFUSE_DELAY: Duration = Duration::from_millis(500);

/// The member's side of one connection. Returns what happened, for the log.
pub fn serve(stream: TcpStream, admit: &dyn Admit) -> Result<String, String> {
    let mut c = Conn::new(stream)?;
    let first = match c.recv() {
        Ok(m) => m,
        Err(e) => return refuse(&mut c, e),
    };
    let nj = match first {
        Message::Hello { version, nonce } if version == VERSION => {
            match unhex(&nonce).filter(|n| n.len() == 32) {
                Some(n) => n,
                None => return refuse(&mut c, "malformed hello nonce".into()),
            }
        }
        Message::Hello { version, .. } => {
            let error =
                format!("join protocol version {version} is not spoken here ({VERSION} is)");
            c.send(&Message::Refused {
                error: error.clone(),
            })?;
            return Err(error);
        }
        other => return refuse(&mut c, format!("expected hello, got {other:?}")),
    };
    let ns = nonce()?;
    c.send(&Message::Challenge {
        nonce: hex(&ns),
        cluster: admit.cluster(),
    })?;
    let second = match c.recv() {
        Ok(m) => m,
        Err(e) => return refuse(&mut c, e),
    };
    let (name, addr, public_key, m) = match second {
        Message::Request {
            name,
            addr,
            key,
            mac,
        } => (name, addr, key, mac),
        other => return refuse(&mut c, format!("expected request, got {other:?}")),
    };
    let public_key = match public_key.map(|k| unhex(&k)) {
        Some(None) => return refuse(&mut c, "malformed public key".into()),
        Some(Some(k)) => Some(k),
        None => None,
    };
    let key = admit.token()?.join_key();
    let want = request_mac(&key, (&nj, &ns), &name, addr, public_key.as_deref());
    if !unhex(&m).is_some_and(|m| same_mac(&m, &want)) {
        std::thread::sleep(REFUSE_DELAY);
        return refuse(&mut c, "wrong join token".into());
    }
    // Signed before the nodelist changes: a key it cannot sign refuses
    // the join and changes nothing.
    let issued = match public_key.map(|k| admit.issue(&name, addr, &k)) {
        Some(Err(e)) => return refuse(&mut c, format!("node certificate: {e}")),
        Some(Ok(issued)) => issued,
        None => None,
    };
    match admit.add(&name, addr) {
        Ok((nodeid, conf)) => {
            let mac = hex(&accepted_mac(
                &key,
                (&nj, &ns),
                nodeid,
                &conf,
                issued.as_ref(),
            ));
            c.send(&Message::Accepted {
                nodeid,
                conf,
                issued,
                mac,
            })?;
            Ok(format!("admitted {name} ({addr}) as node {nodeid}"))
        }
        Err(e) => refuse(&mut c, e),
    }
}

fn refuse(c: &mut Conn, error: String) -> Result<String, String> {
    let _ = c.send(&Message::Refused {
        error: error.clone(),
    });
    Err(error)
}

#[cfg(test)]
mod tests;
