//! virtio-net (virtio 1.2, 5.1) on a tap or macvtap: the device model —
//! features, configuration space, activation — and, in `worker.rs`, the
//! thread that moves frames. One RX and one TX queue, no control queue.

#[cfg(feature = "fuzz")]
pub mod fuzz_harness;
pub mod inbox;
mod open;
pub mod tap;
mod worker;

pub use open::{open, stable_local_mac, NetPort};

use std::sync::Arc;

use super::persist::{ActiveState, QueueSnapshot};
use super::worker::WorkerSlot;
use super::{read_config_bytes, ActivateError, ActiveQueue, Interrupt, VirtioDevice};
use tap::{NetBackend, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6};
use worker::{Wakeups, Worker};

pub const VIRTIO_ID_NET: u32 = 1;
/// Queue size offered; Linux uses what it is given.
const QUEUE_SIZE: u16 = 256;
/// Configuration space `status` bit: the link is up.
const LINK_UP: u16 = 1;
pub const DEFAULT_MTU: u16 = 1500;

/// Feature bits (virtio 1.2, 5.1.3 and 6).
pub mod features {
    /// The device completes partial checksums of frames the driver sends.
    pub const CSUM: u64 = 1 << 0;
    /// The driver accepts frames with partial checksums.
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const MTU: u64 = 1 << 3;
    pub const MAC: u64 = 1 << 5;
    pub const GUEST_TSO4: u64 = 1 << 7;
    pub const GUEST_TSO6: u64 = 1 << 8;
    pub const HOST_TSO4: u64 = 1 << 11;
    pub const HOST_TSO6: u64 = 1 << 12;
    pub const STATUS: u64 = 1 << 16;
    pub const EVENT_IDX: u64 = 1 << 29;
    pub const VERSION_1: u64 = super::super::VIRTIO_F_VERSION_1;
    pub const OFFERED: u64 = CSUM
        | GUEST_CSUM
        | MTU
        | MAC
        | GUEST_TSO4
        | GUEST_TSO6
        | HOST_TSO4
        | HOST_TSO6
        | STATUS
        | EVENT_IDX
        | VERSION_1;
}
use crate::memory::GuestRam;
use features as f;

/// Whether the accepted `features` respect the spec's dependencies (5.1.3.1):
/// each TSO needs the checksum offload in the same direction.
pub fn features_consistent(features: u64) -> bool {
    let needs = [
        (f::GUEST_TSO4, f::GUEST_CSUM),
        (f::GUEST_TSO6, f::GUEST_CSUM),
        (f::HOST_TSO4, f::CSUM),
        (f::HOST_TSO6, f::CSUM),
    ];
    features & f::VERSION_1 != 0
        && needs
            .iter()
            .all(|&(bit, dep)| features & bit == 0 || features & dep != 0)
}

/// The offloads the tap may use toward the guest: those the driver accepts.
fn tap_offloads(features: u64) -> u32 {
    let mut flags = 0;
    if features & f::GUEST_CSUM != 0 {
        flags |= TUN_F_CSUM;
        if features & f::GUEST_TSO4 != 0 {
            flags |= TUN_F_TSO4;
        }
        if features & f::GUEST_TSO6 != 0 {
            flags |= TUN_F_TSO6;
        }
    }
    flags
}

/// The worker thread's name.
const WORKER_NAME: &str = "vireo-net";

pub struct Net {
    tap: Arc<dyn NetBackend>,
    mac: [u8; 6],
    mtu: u16,
    worker: WorkerSlot<Worker>,
}

impl Net {
    pub fn new(tap: Arc<dyn NetBackend>, mac: [u8; 6], mtu: u16) -> Self {
        Self {
            tap,
            mac,
            mtu,
            worker: WorkerSlot::Idle,
        }
    }

    /// `struct virtio_net_config`: mac, status, max_virtqueue_pairs, mtu.
    fn config_bytes(&self) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[0..6].copy_from_slice(&self.mac);
        c[6..8].copy_from_slice(&LINK_UP.to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes());
        c[10..12].copy_from_slice(&self.mtu.to_le_bytes());
        c
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        f::OFFERED
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_bytes(), offset, data);
    }

    /// The MAC is the device's to choose (we offer VIRTIO_NET_F_MAC): ignored.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(
        &mut self,
        features: u64,
        queues: Vec<ActiveQueue>,
        interrupt: Arc<Interrupt>,
        mem: GuestRam,
    ) -> Result<(), ActivateError> {
        self.reset();
        let worker = self.worker_for(features, queues, interrupt, mem)?;
        self.worker
            .start(WORKER_NAME, worker)
            .map_err(ActivateError::Worker)
    }

    /// The live queues, and a frame read from the tap that no guest buffer
    /// had taken yet: carried, not dropped.
    fn save_active(&self) -> Option<ActiveState> {
        let w = self.worker.parked()?;
        Some(ActiveState {
            queues: vec![QueueSnapshot::of(&w.rx), QueueSnapshot::of(&w.tx)],
            pending_rx: w.rx_len.map(|n| w.rx_buf[..n].to_vec()),
        })
    }

    fn restore_active(
        &mut self,
        features: u64,
        queues: Vec<ActiveQueue>,
        saved: &ActiveState,
        interrupt: Arc<Interrupt>,
        mem: GuestRam,
    ) -> Result<(), ActivateError> {
        let mut worker = self.worker_for(features, queues, interrupt, mem)?;
        if let Some(frame) = &saved.pending_rx {
            let n = frame.len().min(worker.rx_buf.len());
            worker.rx_buf[..n].copy_from_slice(&frame[..n]);
            worker.rx_len = Some(n);
        }
        self.worker.start_parked(worker);
        Ok(())
    }

    fn reset(&mut self) {
        self.worker.stop();
    }

    fn pause(&mut self) {
        self.worker.park();
    }

    fn resume(&mut self) -> std::io::Result<()> {
        self.worker.resume(WORKER_NAME)
    }
}

impl Net {
    /// A worker on the negotiated `features`, the tap set to match them.
    fn worker_for(
        &self,
        features: u64,
        queues: Vec<ActiveQueue>,
        interrupt: Arc<Interrupt>,
        mem: GuestRam,
    ) -> Result<Worker, ActivateError> {
        if !features_consistent(features) {
            return Err(ActivateError::BadFeatures(features));
        }
        let [rx, tx]: [ActiveQueue; 2] = queues
            .try_into()
            .map_err(|q: Vec<_>| ActivateError::QueueNotReady(q.len()))?;
        self.tap
            .set_offload(tap_offloads(features))
            .map_err(ActivateError::Worker)?;
        let event_idx = features & f::EVENT_IDX != 0;
        let (mut rxq, mut txq) = (rx.queue, tx.queue);
        virtio_queue::QueueT::set_event_idx(&mut rxq, event_idx);
        virtio_queue::QueueT::set_event_idx(&mut txq, event_idx);
        let wake = Wakeups {
            rx: rx.notify,
            tx: tx.notify,
        };
        Ok(Worker::new(
            self.tap.clone(),
            (rxq, txq),
            mem,
            interrupt,
            features,
            wake,
        ))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.reset();
    }
}

#[cfg(test)]
mod tests;
