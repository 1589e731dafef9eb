//! `vireo cluster create|join|token|leave`: a node's cluster membership,
//! through the vireo-cluster library (files on VIREO-DATA, the join
//! protocol, an ordered nodelist change through the local daemon).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use clap::Args;
use vireo_cluster::{ClusterDir, CreateOptions, Token};

/// Options every membership command shares.
#[derive(Args, Debug, Clone)]
pub struct Where {
    /// The cluster directory (corosync.conf, join.key).
    #[arg(long, env = "VIREO_CLUSTER_DIR", default_value = vireo_cluster::DEFAULT_DIR)]
    pub dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct Identity {
    /// This node's name in the nodelist (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// This node's ring address (default: the address towards the member,
    /// or for create the first non-loopback address).
    #[arg(long)]
    pub addr: Option<Ipv4Addr>,
}

/// Where init learns that the membership daemon should start or stop.
const INIT_PID_FILE: &str = "/run/vireo/init.pid";

pub fn create(
    w: &Where,
    id: &Identity,
    cluster: &str,
    token_ms: Option<u32>,
) -> Result<String, String> {
    let addr = match id.addr {
        Some(a) => a,
        None => *vireo_cluster::local_addrs()
            .first()
            .ok_or("no non-loopback IPv4 address: give --addr")?,
    };
    let o = CreateOptions {
        cluster: cluster.into(),
        name: node_name(id)?,
        addr,
        token_ms,
    };
    let token = vireo_cluster::create(&ClusterDir::new(&w.dir), &o)?;
    tell_init();
    Ok(format!(
        "created cluster {cluster} with this node ({} at {addr}) as node 1\n\
         join other nodes with:\n  vireo cluster join {addr} --token {}\n",
        o.name,
        token.to_text()
    ))
}

pub fn join(w: &Where, id: &Identity, member: &str, token: &str) -> Result<String, String> {
    let token = Token::parse(token)?;
    let at = vireo_cluster::member_addr(member)?;
    let addr = match id.addr {
        Some(a) => a,
        None => vireo_cluster::source_addr_towards(at)
            .ok_or_else(|| format!("no route to {at}: give --addr"))?,
    };
    let name = node_name(id)?;
    let joined = vireo_cluster::join(&ClusterDir::new(&w.dir), member, &token, &name, addr)?;
    tell_init();
    let cert = match joined.issued {
        Some(_) => "with a node certificate from the cluster CA",
        // Its agent then serves plain HTTP and cannot call its peers.
        None => "WITHOUT a node certificate: the member does not hold the cluster CA (join through the node that created the cluster)",
    };
    Ok(format!(
        "joined cluster {} as node {} ({name} at {addr}), {cert}\n",
        joined.cluster, joined.nodeid
    ))
}

pub fn token(w: &Where) -> Result<String, String> {
    Ok(vireo_cluster::token(&ClusterDir::new(&w.dir))?.to_text() + "\n")
}

pub fn leave(w: &Where, socket: &Path) -> Result<String, String> {
    let nodeid = vireo_cluster::leave(&ClusterDir::new(&w.dir), socket)?;
    tell_init();
    Ok(format!("node {nodeid} left the cluster\n"))
}

fn node_name(id: &Identity) -> Result<String, String> {
    match &id.name {
        Some(n) => Ok(n.clone()),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .map_err(|e| format!("host name: {e}; give --name")),
    }
}

/// On the appliance vireo-init starts vireo-membershipd once corosync.conf
/// exists (and stops it once it is gone); SIGHUP makes it look now. Only the
/// pid init itself recorded is signalled, never a host's PID 1.
fn tell_init() {
    let Ok(text) = std::fs::read_to_string(INIT_PID_FILE) else {
        return;
    };
    if let Ok(pid) = text.trim().parse::<i32>() {
        // SAFETY: kill(2) with a pid and a signal number; no memory involved.
        unsafe { libc::kill(pid, libc::SIGHUP) };
    }
}
