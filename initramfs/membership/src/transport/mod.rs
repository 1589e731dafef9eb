//! Transports carry totem messages between nodes. udpu (UDP unicast) is the one
//! implemented; knet (with or without crypto) can follow behind the same trait.

mod udpu;

use std::io;
use std::time::Duration;

use crate::totemsrp::Destination;

pub use udpu::Udpu;

/// A datagram transport for totem messages.
pub trait Transport {
    /// Sends one totem message to every member or to one node.
    fn send(&mut self, to: Destination, datagram: &[u8]) -> io::Result<()>;
    /// Waits up to `timeout` for one datagram from an accepted sender.
    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>>;
}
