//! The saved state of a virtio-mmio device: the transport's registers, and
//! for an active device its live queues (where the device's worker had got
//! to) and anything the worker held between requests. Restoring rebuilds
//! the device activated but with its worker parked, so nothing touches
//! guest memory or a backend before the VM resumes.

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueState};
use vmm_sys_util::eventfd::EventFd;

use super::mmio::MmioTransport;
use super::{status, ActivateError, ActiveQueue};

/// virtio-queue's `QueueState`, field for field (it has no serde of its own).
#[derive(Serialize, Deserialize)]
#[serde(remote = "QueueState")]
struct QueueStateDef {
    max_size: u16,
    next_avail: u16,
    next_used: u16,
    event_idx_enabled: bool,
    size: u16,
    ready: bool,
    desc_table: u64,
    avail_ring: u64,
    used_ring: u64,
}

/// One queue's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot(#[serde(with = "QueueStateDef")] pub QueueState);

impl QueueSnapshot {
    pub fn of(queue: &Queue) -> Self {
        Self(queue.state())
    }

    /// The queue, checked as the driver's own setup would be.
    pub fn to_queue(&self) -> Result<Queue, PersistError> {
        Queue::try_from(self.0).map_err(|e| PersistError::Queue(e.to_string()))
    }
}

/// What an active device's worker held: its queues, and (virtio-net) a
/// frame read from the tap that no guest buffer had taken yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveState {
    pub queues: Vec<QueueSnapshot>,
    #[serde(default)]
    pub pending_rx: Option<Vec<u8>>,
}

/// A virtio-mmio transport and its device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmioState {
    pub device_type: u32,
    /// The device's configuration space as the guest reads it: a device
    /// restored on another disk size or MAC is refused.
    pub config: Vec<u8>,
    pub status: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub driver_features: u64,
    pub queue_sel: u32,
    pub interrupt_status: u32,
    /// The queues as the driver configured them on the transport.
    pub queues: Vec<QueueSnapshot>,
    /// Present when the driver had set DRIVER_OK.
    pub active: Option<ActiveState>,
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("a saved virtio queue is not valid: {0}")]
    Queue(String),
    #[error("the device is a virtio device of type {found}, the saved one was of type {saved}")]
    DeviceType { saved: u32, found: u32 },
    #[error(
        "the device's configuration differs from the saved one (another disk size, MAC or MTU)"
    )]
    Config,
    #[error("the saved device has {saved} queues, this one {found}")]
    QueueCount { saved: usize, found: usize },
    #[error("cannot restart the device: {0}")]
    Activate(#[from] ActivateError),
    #[error("the device was not paused: its state cannot be saved")]
    NotParked,
}

/// The configuration space, as far as a driver can read it.
pub fn config_bytes(read: impl Fn(u64, &mut [u8])) -> Vec<u8> {
    let mut bytes = vec![0u8; 64];
    read(0, &mut bytes);
    bytes
}

impl MmioTransport {
    /// The transport's and device's state; the VM must be paused.
    pub fn save(&self) -> Result<MmioState, PersistError> {
        let parts = self.parts();
        let active = if parts.status & status::DRIVER_OK != 0 {
            Some(self.device().save_active().ok_or(PersistError::NotParked)?)
        } else {
            None
        };
        Ok(MmioState {
            device_type: self.device().device_type(),
            config: config_bytes(|o, d| self.device().read_config(o, d)),
            status: parts.status,
            device_features_sel: parts.device_features_sel,
            driver_features_sel: parts.driver_features_sel,
            driver_features: parts.driver_features,
            queue_sel: parts.queue_sel,
            interrupt_status: self.interrupt().status(),
            queues: parts.queues.iter().map(QueueSnapshot::of).collect(),
            active,
        })
    }

    /// Puts a freshly built transport (same device kind, same backend) in
    /// the saved state; an active device comes back with its worker parked.
    pub fn restore(&mut self, state: &MmioState) -> Result<(), PersistError> {
        let found = self.device().device_type();
        if found != state.device_type {
            return Err(PersistError::DeviceType {
                saved: state.device_type,
                found,
            });
        }
        if config_bytes(|o, d| self.device().read_config(o, d)) != state.config {
            return Err(PersistError::Config);
        }
        let queues = state
            .queues
            .iter()
            .map(QueueSnapshot::to_queue)
            .collect::<Result<Vec<_>, _>>()?;
        self.set_parts(state, queues)?;
        if let Some(active) = &state.active {
            self.restore_active(state.driver_features, active)?;
        }
        if state.interrupt_status != 0 {
            // The guest may not have seen it yet; a spurious one is harmless.
            self.interrupt().trigger(state.interrupt_status);
        }
        Ok(())
    }

    fn restore_active(&mut self, features: u64, active: &ActiveState) -> Result<(), PersistError> {
        let notify = self.notify_eventfds();
        if active.queues.len() != notify.len() {
            return Err(PersistError::QueueCount {
                saved: active.queues.len(),
                found: notify.len(),
            });
        }
        let queues = active
            .queues
            .iter()
            .zip(notify)
            .map(|(q, fd)| {
                Ok(ActiveQueue {
                    queue: q.to_queue()?,
                    notify: clone_fd(fd)?,
                })
            })
            .collect::<Result<Vec<_>, PersistError>>()?;
        let (interrupt, mem) = (self.interrupt().clone(), self.memory().clone());
        self.device_mut()
            .restore_active(features, queues, active, interrupt, mem)?;
        Ok(())
    }
}

fn clone_fd(fd: &EventFd) -> Result<EventFd, PersistError> {
    fd.try_clone()
        .map_err(|e| PersistError::Activate(ActivateError::Worker(e)))
}

/// The registers of a transport, for saving and restoring.
pub struct TransportParts<'a> {
    pub status: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub driver_features: u64,
    pub queue_sel: u32,
    pub queues: &'a [Queue],
}
