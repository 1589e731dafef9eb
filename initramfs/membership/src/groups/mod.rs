//! Group messaging for local clients, on the ring's agreed order: what
//! corosync's CPG gives Pacemaker and pmxcfs. A client on a node connects to
//! the daemon's group socket, joins named groups, sends to them, and gets
//! every group message and every membership change ("view") in one order
//! that all members of the group see alike. Nodelist changes travel the same
//! way, so every node rewrites its corosync.conf at the same point.
//!
//! - [`frame`]: the length-prefixed JSON-header-plus-data frames;
//! - [`proto`]: requests, answers, events and the daemons' envelope;
//! - [`state`]: the per-daemon state machine (no I/O).
//!
//! See docs/membership.md, "Group messaging".

pub mod frame;
pub mod proto;
pub mod state;

#[cfg(test)]
mod tests;

pub use frame::Frame;
pub use proto::{Answer, Envelope, Event, GroupError, MemberId, NodelistOp, Request, ViewId};
pub use state::{Groups, Output};
