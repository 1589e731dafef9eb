//! Test harness for cluster membership: real corosync 3.1.x nodes and Vireo
//! nodes (vireo-membershipd) side by side in network namespaces on one machine.
//!
//! - [`net`]: namespaces, the bridge, veth pairs, partitions;
//! - [`conf`]: the cluster's shape and each node's corosync.conf;
//! - [`agents`]: vireo-agent on the nodes, its test watchdog, VMM scans;
//! - [`node`]: starting, killing and querying one node;
//! - [`cluster`]: all of it together, cleaned up on drop (panics included);
//! - [`expect`]: the facts tests assert about a node's status;
//! - [`delivery`]: Vireo delivery logs and the ordering checks on them;
//! - [`wait`]: polling with deadlines;
//! - [`command`]: running a helper program that must succeed;
//! - [`formation`]: clusters formed by `vireo cluster create` and `join`;
//! - [`ha_lab`]: three nodes with agents and HA probe VMs, watched;
//! - [`replicas`]: store replicas on every node, write-to-all latency.
//!
//! Needs root, iproute2 and the `corosync` package.

pub mod agents;
pub mod cluster;
pub mod command;
pub mod conf;
pub mod delivery;
pub mod expect;
pub mod formation;
pub mod ha_lab;
pub mod net;
pub mod node;
pub mod replicas;
pub mod wait;

pub use cluster::Cluster;
pub use conf::{ClusterSpec, Kind, QuorumOptions};
pub use wait::{wait_until, wait_until_every};
