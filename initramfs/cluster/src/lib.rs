//! Vireo's cluster library, what the agent and the `vireo` CLI build on:
//!
//! - forming and joining ([`create`], [`join`], [`token`], [`leave`]): the
//!   files of a node's cluster membership under one directory on VIREO-DATA
//!   ([`DEFAULT_DIR`]): `corosync.conf` (valid for a real corosync 3 node),
//!   `join.key` (the join token, root only) and the ring id state;
//! - [`client`]: the group messaging client (vireo-membershipd's CPG);
//! - [`store`]: the replicated cluster store on it.
//!
//! The join service itself runs inside vireo-membershipd (TCP 5406): only a
//! member can order the nodelist change through the ring, and a member must
//! admit nodes whether or not its agent runs (see docs/membership.md).

pub mod client;
mod form;
pub mod store;

pub use form::{
    create, is_local, join, leave, local_addrs, member_addr, source_addr_towards, token,
    ClusterDir, CreateOptions, Membership, DEFAULT_DIR,
};
pub use vireo_membership::join::{Token, JOIN_PORT};
