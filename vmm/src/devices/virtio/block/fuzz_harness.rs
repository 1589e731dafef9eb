//! Fuzz harness (feature `fuzz`): virtio-blk requests from a guest-made
//! queue, served by the worker's own loop over a raw in-memory disk.

use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::disk::DiskBackend;
use super::raw::RawDisk;
use super::{Serve, ID_LEN};
use crate::devices::virtio::Interrupt;
use crate::fuzz::{memfd, Guest};

/// Byte 0: bit 0 read-only, bit 1 EVENT_IDX; the rest is guest RAM (the
/// queue at 0, requests and buffers anywhere).
pub fn requests(data: &[u8]) {
    let (&flags, ram) = data.split_first().unwrap_or((&0, &[]));
    let readonly = flags & 1 != 0;
    let guest = Guest::new(ram);
    let disk = memfd::file(b"", 1 << 20);
    let Ok(raw) = RawDisk::new(disk, readonly, false) else {
        return;
    };
    let backend: Box<dyn DiskBackend> = Box::new(raw);
    let irq = EventFd::new(EFD_NONBLOCK).expect("eventfd");
    let mut serve = Serve {
        backend: Arc::new(Mutex::new(backend)),
        readonly,
        size: 1 << 20,
        id: [b'f'; ID_LEN],
        queue: guest.queue(0, flags & 2 != 0),
        notify: EventFd::new(0).expect("eventfd"),
        mem: guest.mem.clone(),
        interrupt: Arc::new(Interrupt::new(irq)),
    };
    serve.process();
}
