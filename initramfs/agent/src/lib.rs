//! vireo-agent: the node agent's REST API. The types (`types`) are always
//! built, for the `vireo` CLI; the server behind the `server` feature.

pub mod auth_api;
pub mod cluster_types;
pub mod net_types;
pub mod node;
pub mod storage_api;
pub mod types;
pub mod vm_types;

#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod cluster;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod listen;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod networks;
#[cfg(feature = "server")]
pub mod selftest;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod storage;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod tasks;
#[cfg(feature = "server")]
pub mod ui;
#[cfg(feature = "server")]
pub mod vms;
