//! The thread that moves frames between a virtio-net device's queues and its
//! tap. It sleeps in poll(2) on the stop eventfd, both queues' notify
//! eventfds and the tap; the vCPU threads only signal it.
//!
//! RX never drops a frame for want of guest buffers and never spins: a frame
//! read from the tap waits in `pending` until the driver posts a buffer, and
//! while one waits the tap is not polled, so the kernel's tap queue (and the
//! peer's back-pressure) holds the rest.
//!
//! Everything the driver wrote is untrusted: a malformed chain completes
//! with length 0 (TX: the frame is not sent; RX: the frame waits for the
//! next buffer), never a panic.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestMemory, Permissions};
use vmm_sys_util::eventfd::EventFd;

use super::features as f;
use super::inbox::Inbox;
use super::tap::{NetBackend, VNET_HDR_LEN};
use crate::devices::virtio::worker::QueueWorker;
use crate::devices::virtio::{Interrupt, INT_VRING};
use crate::memory::GuestRam;

/// Largest frame either way: a 64 KiB GSO packet, its Ethernet and VLAN
/// headers, and the vnet header.
pub const MAX_PACKET: usize = VNET_HDR_LEN + 65535 + 14 + 4;
/// Shortest packet worth sending: the vnet header and an Ethernet header.
const MIN_TX_PACKET: usize = VNET_HDR_LEN + 14;

/// vnet header `flags` bit: the frame needs its checksum completed.
const HDR_F_NEEDS_CSUM: u8 = 1;
/// vnet header `gso_type` values.
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_ECN: u8 = 0x80;

/// What the worker owns while the device is active.
pub struct Worker {
    pub tap: Arc<dyn NetBackend>,
    pub rx: Queue,
    pub tx: Queue,
    pub mem: GuestRam,
    pub interrupt: Arc<Interrupt>,
    /// The features the driver accepted.
    pub features: u64,
    /// A packet read from the tap, not yet delivered (`rx_len` bytes of `rx_buf`).
    pub rx_buf: Vec<u8>,
    pub rx_len: Option<usize>,
    pub tx_buf: Vec<u8>,
    /// The tap reported an error or hang-up: stop polling it.
    pub tap_gone: bool,
    /// The queues' notify eventfds (KVM signals them on QueueNotify).
    pub wake: Wakeups,
}

/// The eventfds that wake the worker besides its stop eventfd.
pub struct Wakeups {
    pub rx: EventFd,
    pub tx: EventFd,
}

impl Worker {
    pub fn new(
        tap: Arc<dyn NetBackend>,
        (rx, tx): (Queue, Queue),
        mem: GuestRam,
        interrupt: Arc<Interrupt>,
        features: u64,
        wake: Wakeups,
    ) -> Self {
        Self {
            tap,
            rx,
            tx,
            mem,
            interrupt,
            features,
            rx_buf: vec![0; MAX_PACKET],
            rx_len: None,
            tx_buf: Vec::with_capacity(MAX_PACKET),
            tap_gone: false,
            wake,
        }
    }
}

impl QueueWorker for Worker {
    const SECCOMP: crate::seccomp::ThreadKind = crate::seccomp::ThreadKind::Net;

    fn run(&mut self, stop: &EventFd) {
        // The driver may have posted buffers and frames before DRIVER_OK.
        self.process_tx();
        self.process_rx();
        loop {
            let tap_events = if self.rx_len.is_none() && !self.tap_gone {
                libc::POLLIN
            } else {
                0
            };
            let inbox_fd = match self.tap.inbox() {
                Some(inbox) if self.rx_len.is_none() => inbox.fd(),
                _ => -1,
            };
            let mut fds = [
                pollfd(stop.as_raw_fd(), libc::POLLIN),
                pollfd(self.wake.rx.as_raw_fd(), libc::POLLIN),
                pollfd(self.wake.tx.as_raw_fd(), libc::POLLIN),
                pollfd(self.tap.file().as_raw_fd(), tap_events),
                pollfd(inbox_fd, libc::POLLIN),
            ];
            if self.tap_gone {
                fds[3].fd = -1;
            }
            // SAFETY: `fds` is a live array of pollfd of the length given.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            if fds[0].revents != 0 {
                return;
            }
            if fds[2].revents != 0 {
                let _ = self.wake.tx.read();
                self.process_tx();
            }
            if fds[3].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                self.tap_gone = true;
            }
            if fds[1].revents != 0 {
                let _ = self.wake.rx.read();
            }
            if fds[4].revents != 0 {
                self.tap.inbox().map(Inbox::clear);
            }
            if fds[1].revents != 0 || (fds[3].revents | fds[4].revents) & libc::POLLIN != 0 {
                self.process_rx();
            }
        }
    }
}

impl Worker {
    /// Sends every frame the driver queued, then interrupts it once if it asked.
    pub fn process_tx(&mut self) {
        let mut done = false;
        // Passes in a row that found nothing although the ring said "more":
        // one is a race with the driver, two is a broken avail index.
        let mut empty_passes = 0;
        while empty_passes < 2 {
            // A broken ring reads as empty; the driver then has nothing to wait for.
            let _ = self.tx.disable_notification(&self.mem);
            empty_passes += 1;
            while let Some(chain) = self.tx.pop_descriptor_chain(&self.mem) {
                empty_passes = 0;
                let head = chain.head_index();
                if let Some(len) = self.gather_tx(whole_chain(chain)) {
                    self.send(len);
                }
                if self.tx.add_used(&self.mem, head, 0).is_err() {
                    return;
                }
                done = true;
            }
            if !self.tx.enable_notification(&self.mem).unwrap_or(false) {
                break;
            }
        }
        if done && self.tx.needs_notification(&self.mem).unwrap_or(true) {
            self.interrupt.trigger(INT_VRING);
        }
    }

    /// Copies a TX chain (None: cut short) into `tx_buf`; None if the chain is malformed.
    fn gather_tx(&mut self, descs: Option<Vec<Descriptor>>) -> Option<usize> {
        let descs = descs?;
        let mut total = 0usize;
        for d in &descs {
            let len = d.len() as usize;
            if d.is_write_only() || len == 0 || total + len > MAX_PACKET {
                return None;
            }
            total += len;
        }
        if total < MIN_TX_PACKET {
            return None;
        }
        self.tx_buf.resize(total, 0);
        let mut at = 0;
        for d in &descs {
            let len = d.len() as usize;
            self.mem
                .read_slice(&mut self.tx_buf[at..at + len], d.addr())
                .ok()?;
            at += len;
        }
        self.header_allowed(&self.tx_buf[..VNET_HDR_LEN])
            .then_some(total)
    }

    /// Whether a TX vnet header asks only for offloads the driver negotiated.
    fn header_allowed(&self, hdr: &[u8]) -> bool {
        let has = |bit| self.features & bit != 0;
        let (flags, gso) = (hdr[0], hdr[1]);
        if flags & HDR_F_NEEDS_CSUM != 0 && !has(f::CSUM) {
            return false;
        }
        match gso & !GSO_ECN {
            GSO_NONE => gso & GSO_ECN == 0,
            GSO_TCPV4 => has(f::HOST_TSO4),
            GSO_TCPV6 => has(f::HOST_TSO6),
            _ => false,
        }
    }

    fn send(&mut self, len: usize) {
        // A tap that refuses the frame (down, full) drops it, as a wire would.
        let _ = self.tap.file().write(&self.tx_buf[..len]);
    }

    /// Delivers tap frames while the driver has buffers for them.
    pub fn process_rx(&mut self) {
        let mut done = false;
        // As in process_tx: a second "more" with nothing to pop is a broken ring.
        let mut rechecked = false;
        loop {
            if self.rx_len.is_none() && !self.read_tap() {
                break;
            }
            match self.rx.pop_descriptor_chain(&self.mem) {
                Some(chain) => {
                    rechecked = false;
                    let head = chain.head_index();
                    let Some(written) = self.deliver(whole_chain(chain)) else {
                        continue;
                    };
                    if self.rx.add_used(&self.mem, head, written).is_err() {
                        break;
                    }
                    done = true;
                }
                // Out of buffers: ask to be told of new ones, then look once more.
                None if !rechecked && self.rx.enable_notification(&self.mem).unwrap_or(false) => {
                    rechecked = true
                }
                None => break,
            }
        }
        if done && self.rx.needs_notification(&self.mem).unwrap_or(true) {
            self.interrupt.trigger(INT_VRING);
        }
    }

    /// Takes the next packet into `rx_buf` — one the VMM queued in the
    /// inbox (older: they reached the VM's previous host first), else one
    /// from the tap; false when none is there.
    fn read_tap(&mut self) -> bool {
        if let Some(frame) = self.tap.inbox().and_then(Inbox::pop) {
            let n = frame.len().min(MAX_PACKET);
            self.rx_buf[..n].copy_from_slice(&frame[..n]);
            return self.take_packet(n);
        }
        if self.tap_gone {
            return false;
        }
        loop {
            match self.tap.file().read(&mut self.rx_buf) {
                Ok(n) if n >= MIN_TX_PACKET => return self.take_packet(n),
                Ok(0) => {
                    self.tap_gone = true;
                    return false;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => {
                    self.tap_gone = true;
                    return false;
                }
            }
        }
    }

    /// The `n` bytes in `rx_buf` are the pending packet.
    fn take_packet(&mut self, n: usize) -> bool {
        // No mergeable buffers: every packet fills exactly one chain.
        self.rx_buf[10..12].copy_from_slice(&1u16.to_le_bytes());
        self.rx_len = Some(n);
        true
    }

    /// Writes the pending packet into an RX chain; returns the used length,
    /// or None when the chain was put back (the packet did not fit it and
    /// was dropped instead).
    fn deliver(&mut self, descs: Option<Vec<Descriptor>>) -> Option<u32> {
        let len = self.rx_len.unwrap_or(0);
        let Some(descs) = descs.filter(|d| self.rx_chain_ok(d)) else {
            // Malformed: completed empty; the packet waits for the next one.
            return Some(0);
        };
        let room: usize = descs.iter().map(|d| d.len() as usize).sum();
        if room < len {
            self.rx_len = None;
            self.rx.go_to_previous_position();
            return None;
        }
        let mut at = 0;
        for d in &descs {
            let n = (d.len() as usize).min(len - at);
            if n == 0 {
                break;
            }
            if self
                .mem
                .write_slice(&self.rx_buf[at..at + n], d.addr())
                .is_err()
            {
                return Some(0);
            }
            at += n;
        }
        self.rx_len = None;
        Some(len as u32)
    }

    /// RX buffers must all be device-writable, non-empty and inside guest
    /// memory. Their total may exceed any frame: Linux without mergeable
    /// buffers posts 19-descriptor chains of about 72 KiB ("big packets").
    fn rx_chain_ok(&self, descs: &[Descriptor]) -> bool {
        let room: u64 = descs.iter().map(|d| u64::from(d.len())).sum();
        room >= VNET_HDR_LEN as u64
            && descs.iter().all(|d| {
                d.is_write_only()
                    && d.len() > 0
                    && self
                        .mem
                        .check_range(d.addr(), d.len() as usize, Permissions::Write)
            })
    }
}

/// Every descriptor of `chain`, or None if it was cut short: the iterator
/// stops after as many descriptors as the queue holds, so a loop or a chain
/// longer than the queue ends on a descriptor that still says "next".
fn whole_chain(chain: DescriptorChain<&GuestRam>) -> Option<Vec<Descriptor>> {
    let descs: Vec<Descriptor> = chain.collect();
    match descs.last() {
        Some(last) if !last.has_next() => Some(descs),
        _ => None,
    }
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}
