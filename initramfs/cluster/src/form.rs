//! Forming, joining and leaving a cluster: the files under the cluster
//! directory and the calls that change them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};

use vireo_membership::config::{self, edit, CorosyncConfig};
use vireo_membership::groups::NodelistOp;
use vireo_membership::join::pki::{self, TlsDir};
use vireo_membership::join::{self, Token, JOIN_PORT};

use crate::client::GroupClient;

/// The cluster directory on the appliance (VIREO-DATA is /var/lib/vireo).
pub const DEFAULT_DIR: &str = "/var/lib/vireo/cluster";

/// The files of one node's cluster membership.
#[derive(Debug, Clone)]
pub struct ClusterDir(pub PathBuf);

impl ClusterDir {
    pub fn new(dir: impl Into<PathBuf>) -> ClusterDir {
        ClusterDir(dir.into())
    }
    pub fn conf(&self) -> PathBuf {
        self.0.join("corosync.conf")
    }
    pub fn token_file(&self) -> PathBuf {
        self.0.join("join.key")
    }
    /// The cluster CA and this node's certificate (`pki`).
    pub fn tls(&self) -> TlsDir {
        TlsDir::of_cluster(&self.0)
    }
    /// Where the store keeps its state.
    pub fn store_dir(&self) -> PathBuf {
        self.0.join("store")
    }

    /// This node's membership, if it is in a cluster.
    pub fn membership(&self) -> Result<Option<Membership>, String> {
        let path = self.conf();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let cfg = config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let me = cfg.nodes.iter().find(|n| is_local(n.ring0_addr));
        Ok(Some(Membership {
            cluster: cfg.totem.cluster_name.clone().unwrap_or_default(),
            nodeid: me.map(|n| n.nodeid),
            config: cfg,
        }))
    }

    fn refuse_if_member(&self) -> Result<(), String> {
        if let Some(m) = self.membership()? {
            return Err(format!(
                "this node is already in cluster {:?} ({}); `vireo cluster leave` first",
                m.cluster,
                self.conf().display()
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Membership {
    pub cluster: String,
    /// Our entry in the nodelist (None: no local address matches one).
    pub nodeid: Option<u32>,
    pub config: CorosyncConfig,
}

#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub cluster: String,
    /// This node's name in the nodelist (its host name).
    pub name: String,
    /// This node's ring0 address.
    pub addr: Ipv4Addr,
    /// totem.token in ms (corosync's default 3000 when None).
    pub token_ms: Option<u32>,
}

/// Writes a one-node cluster's corosync.conf, a fresh join token, the
/// cluster CA and this node's certificate.
pub fn create(dir: &ClusterDir, o: &CreateOptions) -> Result<Token, String> {
    dir.refuse_if_member()?;
    check_word("cluster name", &o.cluster)?;
    check_word("node name", &o.name)?;
    let token = Token::generate().map_err(|e| format!("random token: {e}"))?;
    let text = initial_conf(o);
    // Vireo reads what real corosync reads: refuse to write anything else.
    config::parse(&text).map_err(|e| format!("generated config: {e}"))?;
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("{}: {e}", dir.0.display()))?;
    token.store(&dir.token_file())?;
    pki::create(&dir.tls(), &o.cluster, &o.name, o.addr)?;
    edit::write_atomic(&dir.conf(), &text).map_err(|e| format!("{}: {e}", dir.conf().display()))?;
    Ok(token)
}

fn initial_conf(o: &CreateOptions) -> String {
    let token = o
        .token_ms
        .map(|t| format!("    token: {t}\n"))
        .unwrap_or_default();
    let node = config::NodeConfig {
        nodeid: 1,
        ring0_addr: o.addr,
        name: Some(o.name.clone()),
        votes: 1,
        line: 0,
    };
    format!(
        "# Written by `vireo cluster create`; members rewrite the nodelist as nodes join\n\
         # and leave. Valid for corosync 3.1.x (udpu, no crypto).\n\
         totem {{\n    version: 2\n    cluster_name: {}\n    transport: udpu\n    \
         crypto_cipher: none\n    crypto_hash: none\n{token}}}\n\n{}\n\
         quorum {{\n    provider: corosync_votequorum\n}}\n\n\
         logging {{\n    to_stderr: yes\n    to_syslog: no\n}}\n",
        o.cluster,
        edit::render_nodelist(&[node])
    )
}

fn check_word(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    match ok {
        true => Ok(()),
        false => Err(format!("{what} {s:?}: 1 to 64 of A-Z a-z 0-9 - _ .")),
    }
}

/// Joins the cluster `member` belongs to: the member orders us into every
/// node's nodelist and sends its corosync.conf, which we keep with the token
/// and, when the member signs, our node certificate (`joined.issued`).
pub fn join(
    dir: &ClusterDir,
    member: &str,
    token: &Token,
    name: &str,
    addr: Ipv4Addr,
) -> Result<join::Joined, String> {
    dir.refuse_if_member()?;
    check_word("node name", name)?;
    let at = member_addr(member)?;
    let key = pki::node_key()?;
    let joined = join::request(at, token, name, addr, Some(key.public_key_raw()))?;
    let cfg = config::parse(&joined.conf).map_err(|e| format!("the member's config: {e}"))?;
    let listed = cfg
        .nodes
        .iter()
        .any(|n| n.nodeid == joined.nodeid && n.ring0_addr == addr);
    if !listed {
        return Err(format!(
            "the member's config does not list us ({addr}) as node {}",
            joined.nodeid
        ));
    }
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("{}: {e}", dir.0.display()))?;
    token.store(&dir.token_file())?;
    if let Some(issued) = &joined.issued {
        pki::store(&dir.tls(), &key, issued)?;
    }
    edit::write_atomic(&dir.conf(), &joined.conf)
        .map_err(|e| format!("{}: {e}", dir.conf().display()))?;
    Ok(joined)
}

/// `ADDR` or `ADDR:PORT` (port 5406 by default), names resolved.
pub fn member_addr(member: &str) -> Result<SocketAddr, String> {
    let with_port = match member.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, JOIN_PORT).to_string(),
        Err(_) if member.contains(':') => member.to_string(),
        Err(_) => format!("{member}:{JOIN_PORT}"),
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("{member}: {e}"))?
        .next()
        .ok_or_else(|| format!("{member}: no address"))
}

/// The join token this node keeps.
pub fn token(dir: &ClusterDir) -> Result<Token, String> {
    if dir.membership()?.is_none() {
        return Err(format!(
            "this node is not in a cluster ({} does not exist)",
            dir.conf().display()
        ));
    }
    Token::load(&dir.token_file())
}

/// Leaves the cluster: every member drops this node from its nodelist
/// (ordered through the ring by the local daemon, which then moves its
/// corosync.conf aside and leaves the ring).
pub fn leave(dir: &ClusterDir, group_socket: &Path) -> Result<u32, String> {
    let m = dir.membership()?.ok_or_else(|| {
        format!(
            "this node is not in a cluster ({} does not exist)",
            dir.conf().display()
        )
    })?;
    let nodeid = m
        .nodeid
        .ok_or("no address of this host is in the nodelist: cannot tell which node we are")?;
    let client = GroupClient::connect(group_socket).map_err(|e| e.to_string())?;
    client
        .nodelist(NodelistOp::Remove { nodeid })
        .map_err(|e| e.to_string())?;
    Ok(nodeid)
}

/// This host's IPv4 addresses other than loopback (the kernel's local
/// routes), for picking a ring0 address when none is given.
pub fn local_addrs() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") else {
        return out;
    };
    // Lines "|-- A.B.C.D" followed by "/32 host LOCAL" name local addresses.
    let lines: Vec<&str> = text.lines().collect();
    for w in lines.windows(2) {
        if w[1].contains("/32 host LOCAL") {
            let a = w[0]
                .trim()
                .strip_prefix("|-- ")
                .and_then(|a| a.parse::<Ipv4Addr>().ok());
            if let Some(a) = a.filter(|a| !a.is_loopback()) {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// The source address this host uses towards `peer` (no packet is sent).
pub fn source_addr_towards(peer: SocketAddr) -> Option<Ipv4Addr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect(peer).ok()?;
    match s.local_addr().ok()?.ip() {
        IpAddr::V4(a) if !a.is_unspecified() => Some(a),
        _ => None,
    }
}

/// Whether `addr` is an address of this host (a socket binds to it).
pub fn is_local(addr: Ipv4Addr) -> bool {
    UdpSocket::bind((addr, 0)).is_ok()
}
