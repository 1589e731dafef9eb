//! Live migration of a running VM to another `vireo-vmm` (pre-copy):
//! memory is sent while the guest runs, then again what it dirtied, pass
//! after pass, until what is left fits the downtime budget; then the VM
//! pauses, the last pages, the disks' last blocks and the device and vCPU
//! state go, and the destination runs it. See docs/migration.md.
//!
//! `protocol.rs` the messages and their framing; `transport.rs` the
//! channel (TCP, Unix socket, TLS); `send.rs` the source; `receive.rs` the
//! destination; `context.rs` progress (passes, bandwidth, dirty rate,
//! expected downtime) for `GET /vm/migration`.

use serde::{Deserialize, Serialize};

/// What `PUT /vm/migrate` asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// `tcp://HOST:PORT`, `tls://HOST:PORT` or `unix:PATH`.
    pub url: String,
    /// The longest the guest may stay paused at the switch-over.
    #[serde(default = "default_downtime_ms")]
    pub max_downtime_ms: u64,
    /// A cap on the transfer rate (0: none).
    #[serde(default)]
    pub bandwidth_mbps: u64,
    /// `shared`: the destination opens the same images (after the
    /// source's last flush); `copy`: their contents are sent too.
    #[serde(default)]
    pub disks: DiskMode,
    /// Throttle the vCPUs when the guest dirties memory faster than the
    /// link carries it.
    #[serde(default = "yes")]
    pub auto_converge: bool,
    /// How long a silent link is waited for before the migration fails
    /// (and the VM resumes here).
    #[serde(default = "default_link_timeout_ms")]
    pub link_timeout_ms: u64,
    /// Once the VM runs at the destination this VMM exits (the default);
    /// with false it stays, VM-less, so a client can read the final
    /// figures from GET /vm/migration, and exits on PUT /vm/shutdown.
    #[serde(default = "yes")]
    pub exit_when_done: bool,
    /// With `exit_when_done` false: the longest this VMM stays VM-less
    /// before it exits by itself (0: until PUT /vm/shutdown), so a client
    /// that died meanwhile (an agent killed mid-migration) leaves no VMM.
    #[serde(default)]
    pub linger_ms: u64,
}

impl MigrateRequest {
    /// Whether the VMM stays VM-less for a bounded time after the hand-over.
    pub fn lingers(&self) -> bool {
        !self.exit_when_done && self.linger_ms > 0
    }
}

fn default_link_timeout_ms() -> u64 {
    10_000
}

fn default_downtime_ms() -> u64 {
    300
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskMode {
    #[default]
    Shared,
    Copy,
}

pub mod context;
mod copy;
pub mod forward;
pub mod outgoing;
pub mod protocol;
pub mod receive;
pub mod send;
mod tls;
pub mod transport;
