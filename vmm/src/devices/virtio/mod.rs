//! Virtio devices and their virtio-mmio (version 2) transport.
//!
//! The transport (`mmio.rs`) owns the guest-visible register file and the
//! feature/status negotiation; a device (`VirtioDevice`) only sees the
//! result: negotiated queues, an interrupt and guest memory, handed over
//! once the driver sets DRIVER_OK.

pub mod block;
#[cfg(feature = "fuzz")]
pub mod fuzz_harness;
pub mod mmio;
pub mod net;
pub mod persist;
pub mod worker;

use std::sync::atomic::{AtomicU32, Ordering};

use crate::memory::GuestRam;
use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

/// Feature bit every modern (non-legacy) device and driver must agree on.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}

/// InterruptStatus bit: a used ring was updated.
pub const INT_VRING: u32 = 1;
/// InterruptStatus bit: the configuration space changed.
pub const INT_CONFIG: u32 = 2;

/// The interrupt line of one transport: the status bits the driver reads
/// and acknowledges, and the irqfd KVM turns into a GSI edge.
pub struct Interrupt {
    status: AtomicU32,
    irqfd: EventFd,
}

impl Interrupt {
    pub fn new(irqfd: EventFd) -> Self {
        Self {
            status: AtomicU32::new(0),
            irqfd,
        }
    }

    /// Sets `bits` in InterruptStatus and raises the line.
    pub fn trigger(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
        // A full eventfd counter (never in practice) still means "raised".
        let _ = self.irqfd.write(1);
    }

    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    fn clear(&self) {
        self.status.store(0, Ordering::SeqCst);
    }
}

/// A queue the driver made ready, with the eventfd its notifications arrive on.
pub struct ActiveQueue {
    pub queue: Queue,
    pub notify: EventFd,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("the driver did not make queue {0} ready")]
    QueueNotReady(usize),
    #[error("the driver accepted features {0:#x} that contradict each other")]
    BadFeatures(u64),
    #[error("cannot start the device worker: {0}")]
    Worker(std::io::Error),
    #[error("this device cannot be restored from saved state")]
    NotRestorable,
}

/// What a virtio device implements; the transport does the rest.
pub trait VirtioDevice: Send {
    /// Virtio device ID (2 = block).
    fn device_type(&self) -> u32;
    /// Feature bits offered to the driver (VERSION_1 included).
    fn features(&self) -> u64;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads the device-specific configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration space at `offset`.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Starts the device on the negotiated `features` and ready queues.
    fn activate(
        &mut self,
        features: u64,
        queues: Vec<ActiveQueue>,
        interrupt: std::sync::Arc<Interrupt>,
        mem: GuestRam,
    ) -> Result<(), ActivateError>;
    /// Stops the device (its worker) so it can be activated again.
    fn reset(&mut self);
    /// Parks the worker while the VM is paused: it finishes the request in
    /// hand and then touches neither guest memory nor its backend.
    fn pause(&mut self);
    /// Runs a parked worker again.
    fn resume(&mut self) -> std::io::Result<()>;
    /// The parked worker's queues and held data; None when the device is
    /// not active or its worker is not parked.
    fn save_active(&self) -> Option<persist::ActiveState> {
        None
    }
    /// Activates the device from saved state with its worker parked (it
    /// runs on `resume`). `queues` are the saved live queues.
    fn restore_active(
        &mut self,
        _features: u64,
        _queues: Vec<ActiveQueue>,
        _saved: &persist::ActiveState,
        _interrupt: std::sync::Arc<Interrupt>,
        _mem: GuestRam,
    ) -> Result<(), ActivateError> {
        Err(ActivateError::NotRestorable)
    }
}

/// Copies `src` (a little-endian config structure) into `data` at `offset`;
/// bytes past its end read as zero.
pub fn read_config_bytes(src: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
        *b = at.and_then(|at| src.get(at)).copied().unwrap_or(0);
    }
}
