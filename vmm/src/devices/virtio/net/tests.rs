//! The worker driven synchronously against a socket pair standing in for the
//! tap (SOCK_SEQPACKET keeps frame boundaries, as a tap does), and the
//! device through its virtio-mmio transport for feature negotiation.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::FromRawFd;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::tap::VNET_HDR_LEN;
use super::worker::{Wakeups, Worker, MAX_PACKET};
use super::*;
use crate::devices::bus::BusDevice;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::status;
use crate::memory::GuestRam;

const QSIZE: u16 = 16;
const MEM_SIZE: u64 = 1 << 20;
const RX_RING: u64 = 0x1000;
const TX_RING: u64 = 0x4000;
const BUF: u64 = 0x10000;
const W: u16 = 2; // VIRTQ_DESC_F_WRITE
const NEXT: u16 = 1;

/// A socket pair: the device's end and the "wire" the test reads and writes.
struct FakeTap {
    file: File,
    inbox: inbox::Inbox,
}

impl FakeTap {
    fn new(file: File) -> Self {
        Self {
            file,
            inbox: inbox::Inbox::new().unwrap(),
        }
    }
}

impl NetBackend for FakeTap {
    fn file(&self) -> &File {
        &self.file
    }
    fn set_offload(&self, _flags: u32) -> io::Result<()> {
        Ok(())
    }
    fn inbox(&self) -> Option<&inbox::Inbox> {
        Some(&self.inbox)
    }
}

fn socket_pair() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: fills two fds we then own.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0);
    // SAFETY: both fds are fresh and owned here.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// The driver's side of one split queue at `ring` in test memory.
struct Ring {
    base: u64,
    next_desc: u16,
    avail_idx: u16,
}

impl Ring {
    fn new(base: u64) -> Self {
        Self {
            base,
            next_desc: 0,
            avail_idx: 0,
        }
    }
    fn desc(&self) -> u64 {
        self.base
    }
    fn avail(&self) -> u64 {
        self.base + 0x100
    }
    fn used(&self) -> u64 {
        self.base + 0x200
    }

    fn queue(&self, event_idx: bool) -> Queue {
        let mut q = Queue::new(QSIZE).unwrap();
        q.set_size(QSIZE);
        q.set_desc_table_address(Some(self.desc() as u32), Some(0));
        q.set_avail_ring_address(Some(self.avail() as u32), Some(0));
        q.set_used_ring_address(Some(self.used() as u32), Some(0));
        q.set_event_idx(event_idx);
        q.set_ready(true);
        q
    }

    fn write_desc(&self, mem: &GuestRam, i: u16, d: (u64, u32, u16), next: u16) {
        let at = self.desc() + u64::from(i) * 16;
        mem.write_obj(d.0, GuestAddress(at)).unwrap();
        mem.write_obj(d.1, GuestAddress(at + 8)).unwrap();
        mem.write_obj(d.2, GuestAddress(at + 12)).unwrap();
        mem.write_obj(next, GuestAddress(at + 14)).unwrap();
    }

    /// Chains `bufs` (address, length, flags) and makes the chain available.
    fn push(&mut self, mem: &GuestRam, bufs: &[(u64, u32, u16)]) {
        let head = self.next_desc;
        for (i, &(addr, len, flags)) in bufs.iter().enumerate() {
            let idx = (head + i as u16) % QSIZE;
            let more = if i + 1 < bufs.len() { NEXT } else { 0 };
            self.write_desc(mem, idx, (addr, len, flags | more), (idx + 1) % QSIZE);
        }
        self.next_desc = (head + bufs.len() as u16) % QSIZE;
        self.publish(mem, head);
    }

    fn publish(&mut self, mem: &GuestRam, head: u16) {
        let slot = self.avail() + 4 + u64::from(self.avail_idx % QSIZE) * 2;
        mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail() + 2))
            .unwrap();
    }

    fn used_idx(&self, mem: &GuestRam) -> u16 {
        mem.read_obj(GuestAddress(self.used() + 2)).unwrap()
    }

    /// (head, length) of used element `n`.
    fn used_elem(&self, mem: &GuestRam, n: u16) -> (u32, u32) {
        let at = self.used() + 4 + u64::from(n % QSIZE) * 8;
        let id = mem.read_obj(GuestAddress(at)).unwrap();
        (id, mem.read_obj(GuestAddress(at + 4)).unwrap())
    }
}

struct Rig {
    worker: Worker,
    wire: File,
    mem: GuestRam,
    rx: Ring,
    tx: Ring,
    irq: EventFd,
}

fn rig(features: u64) -> Rig {
    let mem = GuestRam::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap();
    let (dev_end, wire) = socket_pair();
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let (rx, tx) = (Ring::new(RX_RING), Ring::new(TX_RING));
    let event_idx = features & f::EVENT_IDX != 0;
    let wake = Wakeups {
        rx: EventFd::new(0).unwrap(),
        tx: EventFd::new(0).unwrap(),
    };
    let worker = Worker::new(
        Arc::new(FakeTap::new(dev_end)),
        (rx.queue(event_idx), tx.queue(event_idx)),
        mem.clone(),
        Arc::new(Interrupt::new(irq.try_clone().unwrap())),
        features,
        wake,
    );
    Rig {
        worker,
        wire,
        mem,
        rx,
        tx,
        irq,
    }
}

const BASIC: u64 = f::VERSION_1;

/// A vnet header (all offloads off) followed by a numbered Ethernet frame.
fn packet(n: u8, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; VNET_HDR_LEN];
    p.extend((0..len).map(|i| (i as u8).wrapping_mul(7) ^ n));
    p
}

impl Rig {
    /// Queues `bytes` as one TX buffer at BUF and runs the TX side.
    fn send_one(&mut self, bytes: &[u8]) {
        self.mem.write_slice(bytes, GuestAddress(BUF)).unwrap();
        self.tx.push(&self.mem, &[(BUF, bytes.len() as u32, 0)]);
        self.worker.process_tx();
    }

    fn wire_recv(&mut self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; MAX_PACKET];
        match self.wire.read(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("{e}"),
        }
    }

    fn post_rx(&mut self, addr: u64, len: u32) {
        self.rx.push(&self.mem, &[(addr, len, W)]);
    }

    fn guest_bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }
}

#[test]
fn a_sent_frame_reaches_the_tap_unchanged() {
    let mut r = rig(BASIC);
    let p = packet(1, 60);
    r.send_one(&p);
    assert_eq!(r.wire_recv(), Some(p));
    assert_eq!(r.tx.used_idx(&r.mem), 1);
    assert_eq!(r.irq.read().unwrap(), 1);
}

#[test]
fn a_frame_split_over_descriptors_is_sent_whole() {
    let mut r = rig(BASIC);
    let p = packet(2, 100);
    r.mem.write_slice(&p[..12], GuestAddress(BUF)).unwrap();
    r.mem
        .write_slice(&p[12..], GuestAddress(BUF + 0x1000))
        .unwrap();
    r.tx.push(&r.mem, &[(BUF, 12, 0), (BUF + 0x1000, 100, 0)]);
    r.worker.process_tx();
    assert_eq!(r.wire_recv(), Some(p));
}

#[test]
fn a_tap_frame_lands_in_the_guest_buffer() {
    let mut r = rig(BASIC);
    let p = packet(3, 64);
    r.wire.write_all(&p).unwrap();
    r.post_rx(BUF, 2048);
    r.worker.process_rx();
    assert_eq!(r.rx.used_elem(&r.mem, 0), (0, p.len() as u32));
    let got = r.guest_bytes(BUF, p.len());
    // num_buffers is 1: one chain per packet.
    assert_eq!(&got[10..12], &[1, 0]);
    assert_eq!(&got[12..], &p[12..]);
    assert_eq!(r.irq.read().unwrap(), 1);
}

#[test]
fn inbox_frames_go_to_the_guest_before_the_taps() {
    // After a migration: frames the source forwarded reached the VM first.
    let mut r = rig(BASIC);
    r.wire.write_all(&packet(2, 64)).unwrap();
    assert!(r.worker.tap.inbox().unwrap().push(packet(1, 64)));
    r.post_rx(BUF, 2048);
    r.post_rx(BUF + 0x1000, 2048);
    r.worker.process_rx();
    assert_eq!(r.guest_bytes(BUF, 76)[12..], packet(1, 64)[12..]);
    assert_eq!(r.guest_bytes(BUF + 0x1000, 76)[12..], packet(2, 64)[12..]);
    assert_eq!(r.guest_bytes(BUF, 12)[10..12], [1, 0], "num_buffers set");
}

#[test]
fn a_chain_larger_than_any_frame_takes_a_frame() {
    // Linux's "big packets" RX chains: a header buffer, then 17 pages and more.
    let mut r = rig(BASIC);
    let p = packet(13, 1500);
    r.wire.write_all(&p).unwrap();
    let mut bufs = vec![(BUF, 12, W)];
    bufs.extend((0..14).map(|i| (BUF + 0x1000 + i * 0x1000, 0x1000, W)));
    bufs.push((BUF + 0x10000, 0x10000, W));
    r.rx.push(&r.mem, &bufs);
    r.worker.process_rx();
    assert_eq!(r.rx.used_elem(&r.mem, 0), (0, p.len() as u32));
    assert_eq!(r.guest_bytes(BUF + 0x1000, 1500), p[12..]);
}

#[test]
fn frames_wait_for_buffers_in_order_without_loss() {
    let mut r = rig(BASIC);
    for n in 0..3 {
        r.wire.write_all(&packet(n, 80)).unwrap();
    }
    // No buffer yet: the first packet is held, nothing is lost or completed.
    r.worker.process_rx();
    assert_eq!(r.rx.used_idx(&r.mem), 0);
    for n in 0..3u16 {
        let addr = BUF + u64::from(n) * 0x1000;
        r.post_rx(addr, 2048);
        r.worker.process_rx();
        assert_eq!(r.rx.used_idx(&r.mem), n + 1);
        assert_eq!(r.guest_bytes(addr, 92)[12..], packet(n as u8, 80)[12..]);
    }
}

#[test]
fn a_descriptor_loop_is_dropped_and_the_next_frame_goes_out() {
    let mut r = rig(BASIC);
    let p = packet(4, 60);
    r.mem.write_slice(&p, GuestAddress(BUF)).unwrap();
    // Descriptor 0 → 1 → 0 → … forever.
    r.tx.write_desc(&r.mem, 0, (BUF, 36, NEXT), 1);
    r.tx.write_desc(&r.mem, 1, (BUF + 36, 36, NEXT), 0);
    r.tx.next_desc = 2;
    r.tx.publish(&r.mem, 0);
    r.worker.process_tx();
    assert_eq!(r.tx.used_elem(&r.mem, 0), (0, 0));
    assert_eq!(r.wire_recv(), None);
    r.send_one(&p);
    assert_eq!(r.wire_recv(), Some(p));
}

#[test]
fn tx_buffers_outside_guest_memory_are_dropped() {
    let mut r = rig(BASIC);
    r.tx.push(&r.mem, &[(MEM_SIZE - 16, 64, 0)]);
    r.tx.push(&r.mem, &[(u64::MAX - 8, 64, 0)]);
    r.worker.process_tx();
    assert_eq!(r.tx.used_idx(&r.mem), 2);
    assert_eq!(r.wire_recv(), None);
}

#[test]
fn rx_buffers_outside_guest_memory_are_completed_empty_and_the_frame_kept() {
    let mut r = rig(BASIC);
    let p = packet(5, 64);
    r.wire.write_all(&p).unwrap();
    r.post_rx(MEM_SIZE - 16, 2048);
    r.post_rx(BUF, 2048);
    r.worker.process_rx();
    assert_eq!(r.rx.used_elem(&r.mem, 0), (0, 0));
    assert_eq!(r.rx.used_elem(&r.mem, 1), (1, p.len() as u32));
    assert_eq!(r.guest_bytes(BUF, p.len())[12..], p[12..]);
}

#[test]
fn an_avail_index_far_ahead_of_the_ring_ends_the_pass() {
    // avail.idx 1000 ahead of a 16-entry ring: virtio-queue refuses to read
    // it, yet "more available" stays true; the worker must not spin on it.
    let mut r = rig(BASIC | f::EVENT_IDX);
    r.mem
        .write_obj(1000u16, GuestAddress(r.tx.avail() + 2))
        .unwrap();
    r.mem
        .write_obj(1000u16, GuestAddress(r.rx.avail() + 2))
        .unwrap();
    r.wire.write_all(&packet(14, 60)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        r.worker.process_tx();
        r.worker.process_rx();
        let _ = tx.send(r.wire_recv());
    });
    let sent = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the worker spun on a broken ring");
    assert_eq!(sent, None);
}

#[test]
fn an_oversize_tx_chain_is_dropped() {
    let mut r = rig(BASIC);
    // Two 40 KiB buffers: more than any frame plus its header.
    r.tx.push(
        &r.mem,
        &[(BUF, 40 << 10, 0), (BUF + (40 << 10), 40 << 10, 0)],
    );
    r.worker.process_tx();
    assert_eq!(r.tx.used_idx(&r.mem), 1);
    assert_eq!(r.wire_recv(), None);
}

#[test]
fn a_frame_larger_than_the_rx_buffer_is_dropped_and_the_buffer_reused() {
    let mut r = rig(BASIC);
    r.wire.write_all(&packet(6, 1400)).unwrap();
    r.wire.write_all(&packet(7, 60)).unwrap();
    r.post_rx(BUF, 200);
    r.worker.process_rx();
    assert_eq!(r.rx.used_elem(&r.mem, 0), (0, 72));
    assert_eq!(r.guest_bytes(BUF, 72)[12..], packet(7, 60)[12..]);
}

#[test]
fn zero_length_buffers_are_refused_both_ways() {
    let mut r = rig(BASIC);
    let p = packet(8, 60);
    r.mem.write_slice(&p, GuestAddress(BUF)).unwrap();
    r.tx.push(&r.mem, &[(BUF, 0, 0), (BUF, p.len() as u32, 0)]);
    r.worker.process_tx();
    assert_eq!(r.wire_recv(), None);
    r.wire.write_all(&p).unwrap();
    r.post_rx(BUF + 0x1000, 0);
    r.post_rx(BUF + 0x2000, 2048);
    r.worker.process_rx();
    assert_eq!(r.rx.used_elem(&r.mem, 0), (0, 0));
    assert_eq!(r.rx.used_elem(&r.mem, 1).1, p.len() as u32);
}

#[test]
fn a_chain_shorter_than_the_vnet_header_is_dropped() {
    let mut r = rig(BASIC);
    r.send_one(&[0u8; VNET_HDR_LEN - 2]);
    assert_eq!(r.tx.used_idx(&r.mem), 1);
    assert_eq!(r.wire_recv(), None);
    // RX side: a buffer too small for the header is completed empty.
    r.wire.write_all(&packet(9, 60)).unwrap();
    r.post_rx(BUF, 8);
    r.worker.process_rx();
    assert_eq!(r.rx.used_elem(&r.mem, 0), (0, 0));
}

#[test]
fn offloads_the_driver_did_not_negotiate_are_dropped() {
    let mut r = rig(BASIC);
    let mut p = packet(10, 60);
    p[0] = 1; // NEEDS_CSUM without VIRTIO_NET_F_CSUM
    r.send_one(&p);
    p[0] = 0;
    p[1] = 1; // GSO TCPv4 without HOST_TSO4
    r.send_one(&p);
    assert_eq!(r.wire_recv(), None);
    let mut r = rig(BASIC | f::CSUM | f::HOST_TSO4);
    r.send_one(&p);
    assert_eq!(r.wire_recv(), Some(p));
}

#[test]
fn event_idx_suppresses_interrupts_the_driver_did_not_ask_for() {
    let mut r = rig(BASIC | f::EVENT_IDX);
    // used_event (after the avail ring) = 1: interrupt only once 2 are used.
    let used_event = TX_RING + 0x100 + 4 + u64::from(QSIZE) * 2;
    r.mem.write_obj(1u16, GuestAddress(used_event)).unwrap();
    r.send_one(&packet(11, 60));
    assert!(r.irq.read().is_err(), "interrupt before used_event");
    r.send_one(&packet(12, 60));
    assert_eq!(r.irq.read().unwrap(), 1);
    assert_eq!(r.tx.used_idx(&r.mem), 2);
}

// Feature negotiation through the transport.

/// A net device behind its transport, with the guest memory and the wire end.
struct Machine {
    t: MmioTransport,
    mem: GuestRam,
    wire: File,
}

fn machine() -> Machine {
    let mem = GuestRam::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap();
    let (dev_end, wire) = socket_pair();
    let net = Net::new(
        Arc::new(FakeTap::new(dev_end)),
        [2, 0, 0, 0, 0, 1],
        DEFAULT_MTU,
    );
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let t = MmioTransport::new(Box::new(net), mem.clone(), irq).unwrap();
    Machine { t, mem, wire }
}

fn net_transport() -> MmioTransport {
    machine().t
}

fn wr(t: &mut MmioTransport, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

fn rd(t: &mut MmioTransport, off: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(off, &mut b);
    u32::from_le_bytes(b)
}

/// Runs the driver's side of negotiation with `features`; returns the status.
fn negotiate(t: &mut MmioTransport, features: u64) -> u32 {
    let base = status::ACKNOWLEDGE | status::DRIVER;
    wr(t, 0x70, status::ACKNOWLEDGE);
    wr(t, 0x70, base);
    for sel in 0..2 {
        wr(t, 0x24, sel);
        wr(t, 0x20, (features >> (32 * sel)) as u32);
    }
    wr(t, 0x70, base | status::FEATURES_OK);
    if rd(t, 0x70) & status::FEATURES_OK == 0 {
        return rd(t, 0x70);
    }
    for (q, ring) in [(0u32, RX_RING), (1, TX_RING)] {
        wr(t, 0x30, q);
        wr(t, 0x38, u32::from(QSIZE));
        wr(t, 0x80, ring as u32);
        wr(t, 0x90, (ring + 0x100) as u32);
        wr(t, 0xa0, (ring + 0x200) as u32);
        wr(t, 0x44, 1);
    }
    wr(t, 0x70, base | status::FEATURES_OK | status::DRIVER_OK);
    rd(t, 0x70)
}

#[test]
fn the_config_space_shows_mac_link_up_and_mtu() {
    let mut t = net_transport();
    let mut cfg = [0u8; 12];
    t.read(0x100, &mut cfg);
    assert_eq!(&cfg[..6], &[2, 0, 0, 0, 0, 1]);
    assert_eq!(&cfg[6..8], &1u16.to_le_bytes());
    assert_eq!(&cfg[10..12], &DEFAULT_MTU.to_le_bytes());
}

#[test]
fn features_the_device_did_not_offer_are_refused() {
    let mut t = net_transport();
    let s = negotiate(&mut t, f::VERSION_1 | 1 << 22);
    assert_eq!(s & status::FEATURES_OK, 0);
}

#[test]
fn contradictory_features_mark_the_device_broken_and_a_reset_recovers_it() {
    let mut t = net_transport();
    // TSO toward the guest without the checksum offload it needs.
    let s = negotiate(&mut t, f::VERSION_1 | f::GUEST_TSO4);
    assert_ne!(s & status::NEEDS_RESET, 0);
    wr(&mut t, 0x70, 0);
    let s = negotiate(&mut t, f::VERSION_1 | f::GUEST_CSUM | f::GUEST_TSO4);
    assert_eq!(s & status::NEEDS_RESET, 0);
    assert_ne!(s & status::DRIVER_OK, 0);
}

#[test]
fn every_offered_feature_together_is_consistent() {
    assert!(features_consistent(f::OFFERED));
    assert!(!features_consistent(f::OFFERED & !f::VERSION_1));
    assert!(!features_consistent(f::VERSION_1 | f::HOST_TSO6));
}

#[test]
fn a_broken_device_leaves_another_working() {
    let mut broken = machine();
    let s = negotiate(&mut broken.t, f::VERSION_1 | f::HOST_TSO4);
    assert_ne!(s & status::NEEDS_RESET, 0);
    // The second device runs its real worker thread: a frame queued and
    // notified through the registers reaches its wire.
    let mut good = machine();
    let s = negotiate(&mut good.t, f::VERSION_1 | f::EVENT_IDX);
    assert_eq!(s & status::NEEDS_RESET, 0);
    let p = packet(15, 60);
    good.mem.write_slice(&p, GuestAddress(BUF)).unwrap();
    let mut tx = Ring::new(TX_RING);
    tx.push(&good.mem, &[(BUF, p.len() as u32, 0)]);
    wr(&mut good.t, 0x50, 1);
    let mut got = vec![0u8; 256];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let n = loop {
        match good.wire.read(&mut got) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline, "no frame");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(&got[..n], &p[..]);
    assert_ne!(rd(&mut broken.t, 0x70) & status::NEEDS_RESET, 0);
    // Reset stops the worker thread and joins it.
    wr(&mut good.t, 0x70, 0);
    assert_eq!(rd(&mut good.t, 0x70), 0);
}
