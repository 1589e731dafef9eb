//! The VMM's control API: JSON over HTTP/1.1 on a Unix socket.
//!
//! The HTTP server runs on its own thread (`server.rs`). It turns each request
//! into an [`ApiRequest`], sends it to the VMM's event loop over a channel,
//! wakes the loop through an eventfd, and waits for the [`ApiResponse`]. The VM
//! itself is only ever touched from the event loop thread.

use std::sync::mpsc::{Receiver, Sender};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vmm_sys_util::eventfd::EventFd;

use crate::config::VmConfig;
use crate::console::ConsoleStats;

pub mod server;

/// An action asked of the VMM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiRequest {
    GetVmInfo,
    Pause,
    Resume,
    Shutdown,
    Reboot,
    /// Save the paused VM's state and memory into a directory.
    Snapshot(SnapshotRequest),
    /// Start a live migration (answered at once; progress through GetMigration).
    Migrate(crate::migration::MigrateRequest),
    GetMigration,
    CancelMigration,
    /// Switch a disk onto a new qcow2 overlay (`crate::disk_layers`).
    DiskOverlay(String, DiskOverlayRequest),
    /// Start committing a disk's overlay back into its base.
    DiskCommit(String),
    /// A disk's overlay and commit progress.
    GetDiskCommit(String),
    /// Type Ctrl-Alt-Del on the guest's keyboard (x86_64).
    CtrlAltDel,
}

/// Body of `PUT /vm/disks/{id}/overlay`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskOverlayRequest {
    /// The new overlay image (must not exist); its backing file is the
    /// disk's current image.
    pub path: PathBuf,
}

/// Body of `PUT /vm/snapshot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// A directory for the snapshot (created if missing, must be empty).
    pub dir: PathBuf,
}

/// Lifecycle state of the VM as the API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    Running,
    Paused,
    ShuttingDown,
    /// The VM now runs at a migration's destination; this VMM only
    /// answers GET /vm/migration and PUT /vm/shutdown.
    Migrated,
}

/// Body of `GET /vm`.
#[derive(Clone, Debug, Serialize)]
pub struct VmInfo {
    pub config: VmConfig,
    pub state: VmState,
    pub vcpus: u8,
    pub memory_bytes: u64,
    /// Bytes the guest wrote to its console, and those dropped because the
    /// reader did not keep up.
    pub console: ConsoleStats,
    /// The legacy devices' registers as the guest would read them, for
    /// telling why a guest waits (a hung launch's dump in the rig shows them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<DeviceRegisters>,
}

/// `GET /vm`'s `devices`: registers read without side effects.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceRegisters {
    pub serial: crate::devices::legacy::serial::SerialRegisters,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub i8042: Option<crate::devices::legacy::i8042::I8042Registers>,
}

/// What the event loop answers to an [`ApiRequest`].
#[derive(Clone, Debug)]
pub enum ApiResponse {
    VmInfo(Box<VmInfo>),
    /// A JSON document (HTTP 200).
    Json(serde_json::Value),
    /// The action was done (HTTP 204).
    Done,
    /// The action started and goes on in the background (HTTP 202).
    Accepted,
    /// The request cannot be carried out as given (HTTP 400).
    BadRequest(String),
    /// The action is not valid now, e.g. resuming a running VM (HTTP 409).
    Conflict(String),
    /// The VMM failed to do it (HTTP 500).
    Failed(String),
}

/// One request in flight: the action and where its answer goes.
pub type ApiMessage = (ApiRequest, Sender<ApiResponse>);

/// The server thread's end of the channel to the event loop.
pub struct ApiSender {
    pub requests: Sender<ApiMessage>,
    /// Written after each send so the event loop wakes up.
    pub wake: EventFd,
}

/// The event loop's end.
pub struct ApiReceiver {
    pub requests: Receiver<ApiMessage>,
    pub wake: EventFd,
}
