//! udpu (exec/totemudpu.c): no transport header, one unicast per member for a
//! "multicast", the token straight to the next node, all on the mcastport.
//! Datagrams from addresses outside the nodelist are dropped, as corosync's
//! block_unlisted_ips (the default) does.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use super::Transport;
use crate::config::CorosyncConfig;
use crate::totemsrp::Destination;

const SEND_TIMEOUT: Duration = Duration::from_millis(5);

/// Largest datagram we accept (a 1500-byte MTU frame, with room to spare).
const RECV_BUFFER: usize = 65536;

#[derive(Debug)]
pub struct Udpu {
    socket: UdpSocket,
    my_id: u32,
    peers: BTreeMap<u32, SocketAddrV4>,
    block_unlisted: bool,
    buf: Vec<u8>,
}

impl Udpu {
    /// Binds on the ring0 address of the nodelist entry that is local to this
    /// host (the first one a bind succeeds on), and returns that node's id.
    pub fn bind_local(config: &CorosyncConfig) -> io::Result<Self> {
        let port = config.totem.port;
        let mut last_err = None;
        for node in &config.nodes {
            match UdpSocket::bind(SocketAddrV4::new(node.ring0_addr, port)) {
                Ok(socket) => return Ok(Self::with_socket(config, node.nodeid, socket)),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err
            .unwrap_or_else(|| io::Error::new(ErrorKind::NotFound, "the nodelist is empty")))
    }

    /// Binds for a given node id (its ring0 address must be local).
    pub fn bind(config: &CorosyncConfig, my_id: u32) -> io::Result<Self> {
        let node = config
            .nodes
            .iter()
            .find(|n| n.nodeid == my_id)
            .ok_or_else(|| io::Error::new(ErrorKind::NotFound, "nodeid not in the nodelist"))?;
        let socket = UdpSocket::bind(SocketAddrV4::new(node.ring0_addr, config.totem.port))?;
        Ok(Self::with_socket(config, my_id, socket))
    }

    fn with_socket(config: &CorosyncConfig, my_id: u32, socket: UdpSocket) -> Self {
        // A link without carrier can stall the send queue; a ring must never
        // block on one peer, so a send that cannot go out at once is dropped
        // (the protocol retransmits).
        let _ = socket.set_write_timeout(Some(SEND_TIMEOUT));
        Udpu {
            socket,
            my_id,
            peers: peers_of(config),
            block_unlisted: config.totem.block_unlisted_ips,
            buf: vec![0; RECV_BUFFER],
        }
    }

    pub fn node_id(&self) -> u32 {
        self.my_id
    }

    /// A reloaded nodelist: who we send to and accept datagrams from
    /// (corosync's totemudpu_member_add/remove). The socket stays bound.
    pub fn reconfigure(&mut self, config: &CorosyncConfig) {
        self.peers = peers_of(config);
        self.block_unlisted = config.totem.block_unlisted_ips;
    }

    /// The socket, for a caller that polls it with other descriptors.
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.socket.as_raw_fd()
    }

    fn listed(&self, ip: Ipv4Addr) -> bool {
        self.peers.values().any(|a| *a.ip() == ip)
    }
}

impl Transport for Udpu {
    fn send(&mut self, to: Destination, datagram: &[u8]) -> io::Result<()> {
        let targets: Vec<SocketAddrV4> = match to {
            Destination::All => self
                .peers
                .iter()
                .filter(|(id, _)| **id != self.my_id)
                .map(|(_, a)| *a)
                .collect(),
            Destination::Members(ids) => ids
                .iter()
                .filter(|id| **id != self.my_id)
                .filter_map(|id| self.peers.get(id).copied())
                .collect(),
            Destination::Node(id) => self.peers.get(&id).copied().into_iter().collect(),
        };
        let mut first_error = None;
        for addr in targets {
            // A peer that is down makes the kernel report ECONNREFUSED on a later
            // call; that is normal on a ring and not our failure.
            match self.socket.send_to(datagram, addr) {
                Ok(_) => {}
                Err(e) if is_transient(&e) => {}
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        match self.socket.recv_from(&mut self.buf) {
            Ok((n, SocketAddr::V4(from))) => {
                if self.block_unlisted && !self.listed(*from.ip()) {
                    return Ok(None);
                }
                Ok(Some(self.buf[..n].to_vec()))
            }
            Ok(_) => Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) if is_transient(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn peers_of(config: &CorosyncConfig) -> BTreeMap<u32, SocketAddrV4> {
    config
        .nodes
        .iter()
        .map(|n| (n.nodeid, SocketAddrV4::new(n.ring0_addr, config.totem.port)))
        .collect()
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::WouldBlock
            | ErrorKind::TimedOut
    )
}
