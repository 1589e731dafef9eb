//! virtio-blk: the device model, and the worker thread that serves its one
//! request queue (the vCPU thread only signals it), over a disk backend
//! (raw file or qcow2 image, see `disk`).

pub mod disk;
#[cfg(feature = "fuzz")]
pub mod fuzz_harness;
pub mod layers;
pub mod qcow2;
mod raw;
mod request;
#[cfg(test)]
mod test_dir;
pub mod tracked;

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::persist::{ActiveState, QueueSnapshot};
use super::worker::{wait_readable, QueueWorker, WorkerSlot};
use super::VIRTIO_F_VERSION_1;
use super::{read_config_bytes, ActivateError, ActiveQueue, Interrupt, VirtioDevice, INT_VRING};
use crate::memory::GuestRam;
use disk::DiskBackend;
use request::Disk;
pub use request::{ID_LEN, MAX_RANGES, MAX_RANGE_SECTORS, SECTOR_SIZE};

pub const VIRTIO_ID_BLOCK: u32 = 2;
/// The device is read-only.
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// The device honours FLUSH.
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
pub const VIRTIO_BLK_F_DISCARD: u64 = 1 << 13;
pub const VIRTIO_BLK_F_WRITE_ZEROES: u64 = 1 << 14;
/// Indirect descriptor tables (virtio-queue follows them, validating each).
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// used_event / avail_event suppress notifications in both directions.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
/// Queue size offered; Linux uses what it is given.
const QUEUE_SIZE: u16 = 256;

/// The backend outlives workers and devices: a reset stops the worker, a
/// later activation starts a new one on the same backend, and a reboot
/// builds a new device on it (see `crate::backends`).
pub type SharedBackend = Arc<Mutex<Box<dyn DiskBackend>>>;

pub struct Block {
    backend: SharedBackend,
    readonly: bool,
    /// Whole sectors of the file; a trailing partial sector is not exposed.
    sectors: u64,
    discard_granularity: u64,
    id: [u8; ID_LEN],
    worker: WorkerSlot<Serve>,
}

/// The worker thread's name.
const WORKER_NAME: &str = "vireo-blk";

impl Block {
    /// `backend` must be writable unless `readonly`; `id` is what
    /// GET_ID returns (cut to 20 bytes).
    pub fn new(backend: SharedBackend, readonly: bool, id: &str) -> Self {
        let (sectors, discard_granularity) = {
            let b = backend.lock().unwrap_or_else(|e| e.into_inner());
            (b.size() / SECTOR_SIZE, b.discard_granularity())
        };
        let mut serial = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        serial[..n].copy_from_slice(&id.as_bytes()[..n]);
        Self {
            backend,
            readonly,
            sectors,
            discard_granularity,
            id: serial,
            worker: WorkerSlot::Idle,
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        let writes = if self.readonly {
            VIRTIO_BLK_F_RO
        } else {
            VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES
        };
        VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_INDIRECT_DESC
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_BLK_F_FLUSH
            | writes
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    /// `capacity` and the discard / write-zeroes limits (virtio 1.2, 5.2.4);
    /// the fields of features not offered read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut config = [0u8; 60];
        config[0..8].copy_from_slice(&self.sectors.to_le_bytes());
        let granularity = (self.discard_granularity / SECTOR_SIZE).max(1) as u32;
        let fields = [
            (36, MAX_RANGE_SECTORS),
            (40, MAX_RANGES),
            (44, granularity),
            (48, MAX_RANGE_SECTORS),
            (52, MAX_RANGES),
            (56, 1), // write_zeroes_may_unmap
        ];
        for (at, value) in fields {
            config[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        read_config_bytes(&config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(
        &mut self,
        features: u64,
        mut queues: Vec<ActiveQueue>,
        interrupt: Arc<Interrupt>,
        mem: GuestRam,
    ) -> Result<(), ActivateError> {
        let mut q = queues.pop().ok_or(ActivateError::QueueNotReady(0))?;
        q.queue
            .set_event_idx(features & VIRTIO_RING_F_EVENT_IDX != 0);
        let serve = self.serve(q, interrupt, mem);
        self.worker
            .start(WORKER_NAME, serve)
            .map_err(ActivateError::Worker)
    }

    /// No request is ever in flight while the worker is parked (each is
    /// served whole), so the live queue is all there is to save.
    fn save_active(&self) -> Option<ActiveState> {
        let serve = self.worker.parked()?;
        Some(ActiveState {
            queues: vec![QueueSnapshot::of(&serve.queue)],
            pending_rx: None,
        })
    }

    fn restore_active(
        &mut self,
        _features: u64,
        mut queues: Vec<ActiveQueue>,
        _saved: &ActiveState,
        interrupt: Arc<Interrupt>,
        mem: GuestRam,
    ) -> Result<(), ActivateError> {
        let q = queues.pop().ok_or(ActivateError::QueueNotReady(0))?;
        let serve = self.serve(q, interrupt, mem);
        self.worker.start_parked(serve);
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

impl Block {
    fn serve(&self, q: ActiveQueue, interrupt: Arc<Interrupt>, mem: GuestRam) -> Serve {
        Serve {
            backend: self.backend.clone(),
            readonly: self.readonly,
            size: self.sectors * SECTOR_SIZE,
            id: self.id,
            queue: q.queue,
            notify: q.notify,
            mem,
            interrupt,
        }
    }
}

impl Drop for Block {
    /// Stops the worker, then makes everything the guest wrote durable, as
    /// QEMU does on exit: qcow2 keeps new L1/L2 pointers in memory until a
    /// flush, so a VM stopped without one would lose its allocating writes.
    /// (The VMM flushes explicitly on every orderly stop, see
    /// `Backends::flush_disks`; this covers any other way a device goes.)
    fn drop(&mut self) {
        self.reset();
        if !self.readonly {
            let mut backend = self.backend.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = backend.flush() {
                eprintln!("vireo-vmm: flushing a disk as its device goes away failed: {e}");
            }
        }
    }
}

/// What the worker thread owns while the device is active.
struct Serve {
    backend: SharedBackend,
    readonly: bool,
    size: u64,
    id: [u8; ID_LEN],
    queue: Queue,
    /// The queue's notify eventfd (KVM signals it on QueueNotify).
    notify: EventFd,
    mem: GuestRam,
    interrupt: Arc<Interrupt>,
}

impl QueueWorker for Serve {
    const SECCOMP: crate::seccomp::ThreadKind = crate::seccomp::ThreadKind::Block;

    fn run(&mut self, stop: &EventFd) {
        // The driver may have queued requests before DRIVER_OK (or while
        // the worker was parked).
        self.process();
        while let Ok([stopped, notified]) =
            wait_readable([stop.as_raw_fd(), self.notify.as_raw_fd()])
        {
            if stopped {
                return;
            }
            if notified {
                let _ = self.notify.read();
                self.process();
            }
        }
    }
}

impl Serve {
    /// Serves every available request, then interrupts the driver once.
    fn process(&mut self) -> usize {
        // Only this worker uses the backend while it runs: never contended.
        let mut backend = match self.backend.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut disk = Disk {
            backend: &mut **backend,
            readonly: self.readonly,
            size: self.size,
            id: &self.id,
        };
        let mut done = 0;
        // Notifications stay off while the ring is drained; turning them
        // back on (with EVENT_IDX: publishing avail_event) and finding more
        // requests means one slipped in meanwhile: drain again.
        loop {
            if self.queue.disable_notification(&self.mem).is_err() {
                break;
            }
            while let Some(chain) = self.queue.iter(&self.mem).ok().and_then(|mut it| it.next()) {
                let head = chain.head_index();
                let len = request::handle(&mut disk, &self.mem, chain);
                // A used ring the driver broke leaves nothing to report to.
                if self.queue.add_used(&self.mem, head, len).is_err() {
                    break;
                }
                done += 1;
            }
            if !self.queue.enable_notification(&self.mem).unwrap_or(false) {
                break;
            }
        }
        if done > 0 && self.queue.needs_notification(&self.mem).unwrap_or(true) {
            self.interrupt.trigger(INT_VRING);
        }
        done
    }
}

#[cfg(test)]
mod layers_tests;
#[cfg(test)]
mod tests;
