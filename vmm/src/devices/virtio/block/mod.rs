//! virtio-blk: the device model, and the worker thread that serves its one
//! request queue (the vCPU thread only signals it), over a disk backend
//! (raw file or qcow2 image, see `disk`).

pub mod disk;
pub mod qcow2;
mod raw;
mod request;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::VIRTIO_F_VERSION_1;
use super::{read_config_bytes, ActivateError, ActiveQueue, Interrupt, VirtioDevice, INT_VRING};
use disk::DiskBackend;
use request::Disk;
pub use request::{ID_LEN, SECTOR_SIZE};

pub const VIRTIO_ID_BLOCK: u32 = 2;
/// The device is read-only.
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// The device honours FLUSH.
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// Queue size offered; Linux uses what it is given.
const QUEUE_SIZE: u16 = 256;

struct Worker {
    handle: JoinHandle<()>,
    stop: Arc<AtomicBool>,
    notify: EventFd,
}

/// The backend outlives workers: a reset stops the worker, a later
/// activation starts a new one on the same backend.
type SharedBackend = Arc<Mutex<Box<dyn DiskBackend>>>;

pub struct Block {
    backend: SharedBackend,
    readonly: bool,
    /// Whole sectors of the file; a trailing partial sector is not exposed.
    sectors: u64,
    id: [u8; ID_LEN],
    worker: Option<Worker>,
}

impl Block {
    /// `backend` must be writable unless `readonly`; `id` is what
    /// GET_ID returns (cut to 20 bytes).
    pub fn new(backend: Box<dyn DiskBackend>, readonly: bool, id: &str) -> std::io::Result<Self> {
        let sectors = backend.size() / SECTOR_SIZE;
        let mut serial = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        serial[..n].copy_from_slice(&id.as_bytes()[..n]);
        Ok(Self {
            backend: Arc::new(Mutex::new(backend)),
            readonly,
            sectors,
            id: serial,
            worker: None,
        })
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        let ro = if self.readonly { VIRTIO_BLK_F_RO } else { 0 };
        VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH | ro
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    /// Only `capacity` (sectors, le64 at offset 0): no optional config feature is offered.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.sectors.to_le_bytes(), offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(
        &mut self,
        _features: u64,
        mut queues: Vec<ActiveQueue>,
        interrupt: Arc<Interrupt>,
        mem: GuestMemoryMmap,
    ) -> Result<(), ActivateError> {
        self.reset();
        let q = queues.pop().ok_or(ActivateError::QueueNotReady(0))?;
        let stop = Arc::new(AtomicBool::new(false));
        let notify = q.notify.try_clone().map_err(ActivateError::Worker)?;
        let serve = Serve {
            backend: self.backend.clone(),
            readonly: self.readonly,
            size: self.sectors * SECTOR_SIZE,
            id: self.id,
            queue: q.queue,
            mem,
            interrupt,
        };
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("vireo-blk".into())
            .spawn(move || serve.run(q.notify, &flag))
            .map_err(ActivateError::Worker)?;
        self.worker = Some(Worker {
            handle,
            stop,
            notify,
        });
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(w) = self.worker.take() {
            w.stop.store(true, Ordering::SeqCst);
            let _ = w.notify.write(1);
            let _ = w.handle.join();
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        self.reset();
    }
}

/// What the worker thread owns while the device is active.
struct Serve {
    backend: SharedBackend,
    readonly: bool,
    size: u64,
    id: [u8; ID_LEN],
    queue: Queue,
    mem: GuestMemoryMmap,
    interrupt: Arc<Interrupt>,
}

impl Serve {
    fn run(mut self, notify: EventFd, stop: &AtomicBool) {
        // The driver may have queued requests before DRIVER_OK.
        self.process();
        while notify.read().is_ok() && !stop.load(Ordering::SeqCst) {
            self.process();
        }
    }

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
        while let Some(chain) = self.queue.iter(&self.mem).ok().and_then(|mut it| it.next()) {
            let head = chain.head_index();
            let len = request::handle(&mut disk, &self.mem, chain);
            // A used ring the driver broke leaves nothing to report to.
            if self.queue.add_used(&self.mem, head, len).is_err() {
                break;
            }
            done += 1;
        }
        if done > 0 && self.queue.needs_notification(&self.mem).unwrap_or(true) {
            self.interrupt.trigger(INT_VRING);
        }
        done
    }
}

#[cfg(test)]
mod tests;
