//! Vireo's cluster membership service, foundation layer: the codecs for everything
//! a corosync 3.1.x node sends over udpu (no crypto), and the corosync.conf parser.
//!
//! Layers, bottom up, each in its own module:
//! - [`wire`]: totemsrp messages (one per UDP datagram);
//! - [`totempg`]: packing/fragmentation of application messages inside MCAST payloads,
//!   and the group header every application message starts with;
//! - [`service`]: the libqb request header that routes a group message to a service;
//! - [`sync`] and [`votequorum`]: the service messages a voting member must speak;
//! - [`config`]: corosync.conf, read the way corosync reads it;
//! - [`status`]: what a node reports (the fields of `corosync-quorumtool -s`), and
//!   [`quorumtool`]: that report as the text corosync-quorumtool prints.
//!
//! Every decoder is total: any byte string yields a value or a [`WireError`], never a
//! panic, because every datagram on port 5405 is untrusted input.

mod codec;
pub mod config;
mod error;
pub mod firewall;
pub mod groups;
pub mod join;
pub mod node;
pub mod quorumtool;
pub mod service;
pub mod status;
pub mod sync;
pub mod totempg;
pub mod totemsrp;
pub mod transport;
pub mod votequorum;
pub mod wire;

pub use error::WireError;
