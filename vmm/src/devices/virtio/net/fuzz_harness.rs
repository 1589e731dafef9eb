//! Fuzz harness (feature `fuzz`): virtio-net TX and RX through the
//! worker, its tap a socket pair whose other end plays the wire.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::sync::Arc;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::tap::NetBackend;
use super::worker::{Wakeups, Worker};
use crate::devices::virtio::Interrupt;
use crate::fuzz::Guest;

struct Wire {
    file: File,
}

impl NetBackend for Wire {
    fn file(&self) -> &File {
        &self.file
    }
    fn set_offload(&self, _flags: u32) -> std::io::Result<()> {
        Ok(())
    }
}

fn socket_pair() -> (File, File) {
    let mut fds = [0; 2];
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: fills two fds we then own.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "socketpair");
    // SAFETY: both fds are fresh and owned here.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// Bytes 0-7: the negotiated features; 8-9: the length of a frame the wire
/// sends (taken from the input's end); the rest is guest RAM with the RX
/// queue at 0 and the TX queue at 0x3000.
pub fn frames(data: &[u8]) {
    if data.len() < 10 {
        return;
    }
    let features = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let frame_len = usize::from(u16::from_le_bytes([data[8], data[9]])) % 2048;
    let ram = &data[10..];
    let frame = &ram[ram.len().saturating_sub(frame_len)..];
    let guest = Guest::new(ram);
    let (mine, mut wire) = socket_pair();
    let queues = (guest.queue(0, true), guest.queue(0x3000, true));
    let wake = Wakeups {
        rx: EventFd::new(EFD_NONBLOCK).expect("eventfd"),
        tx: EventFd::new(EFD_NONBLOCK).expect("eventfd"),
    };
    let irq = EventFd::new(EFD_NONBLOCK).expect("eventfd");
    let tap: Arc<dyn NetBackend> = Arc::new(Wire { file: mine });
    let mut worker = Worker::new(
        tap,
        queues,
        guest.mem.clone(),
        Arc::new(Interrupt::new(irq)),
        features,
        wake,
    );
    worker.process_tx();
    let _ = wire.write(frame);
    worker.process_rx();
    // Whatever the guest sent is drained; its content is the guest's business.
    let mut buf = vec![0u8; 70_000];
    while matches!(wire.read(&mut buf), Ok(n) if n > 0) {}
}
