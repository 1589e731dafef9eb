//! virtio-net through virtio-mmio, driven by polling, for
//! `probe.net=echo:COUNT`: send COUNT numbered Ethernet frames to the
//! broadcast address, expect each one back (from a host echo program, with
//! the addresses swapped), and check every echo's order and content.
//!
//! Frame: Ethernet header (EtherType 0x88b5, IEEE "local experimental"),
//! then the sequence number (u32 BE), the pattern length (u16 BE), and that
//! many pattern bytes: the template from byte `(seq % 256) * 8` on. Up to
//! WINDOW frames are in flight. Guest instructions are slow under a software
//! KVM (each iteration of a string instruction costs about a microsecond), so
//! a frame is sent without copying — its second descriptor points into the
//! template — and an echo is checked with one `repe cmpsq`.

use core::ptr::{addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{compiler_fence, Ordering};

use crate::serial::report;
use crate::virtio::{
    mix, parse_base, parse_dec, Desc, Device, ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK, F_NEXT,
    F_WRITE, NEEDS_RESET,
};

const NET_ID: u32 = 1;
const F_MAC: u32 = 1 << 5;
const F_STATUS: u32 = 1 << 16;
/// Bank 1, bit 0: VERSION_1.
const F_VERSION_1_HI: u32 = 1;
const RXQ: u32 = 0;
const TXQ: u32 = 1;
/// Queue size: TX uses two descriptors per frame.
const NQ: usize = 32;
const RX_BUFS: usize = 16;
/// Frames sent and not yet echoed, at most.
const WINDOW: u32 = 16;
const BUF: usize = 2048;
/// virtio 1.x header: flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset, num_buffers.
const VNET_HDR: usize = 12;
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
/// Ethernet header plus sequence number and length.
const HEAD: usize = 14 + 6;
/// Vnet header and HEAD, rounded up so the pattern starts 8-byte aligned.
const TX_HEAD: usize = 32;
/// Bytes of pattern: offsets up to 255 × 8 plus the longest pattern.
const TEMPLATE: usize = 4096;
/// Polls without progress before the exchange counts as lost.
const IDLE_LIMIT: u32 = 1 << 24;

#[repr(C, align(4))]
struct Used {
    flags: u16,
    idx: u16,
    ring: [[u32; 2]; NQ],
}

#[repr(C, align(16))]
struct Ring {
    desc: [Desc; NQ],
    avail_flags: u16,
    avail_idx: u16,
    avail_ring: [u16; NQ],
    used: Used,
}

#[repr(C, align(4096))]
struct NetDma {
    rx_buf: [[u8; BUF]; RX_BUFS],
    tx_head: [[u8; TX_HEAD]; WINDOW as usize],
    template: [u64; TEMPLATE / 8],
    rx: Ring,
    tx: Ring,
}

// Not zeroed at entry (see virtio.rs): rings are reset in `setup`, buffers
// are written before they are read.
#[link_section = ".noinit.net_dma"]
static mut NET_DMA: core::mem::MaybeUninit<NetDma> = core::mem::MaybeUninit::uninit();

fn dma() -> *mut NetDma {
    addr_of_mut!(NET_DMA).cast()
}

fn ring(q: u32) -> *mut Ring {
    // SAFETY: addresses only.
    unsafe {
        if q == RXQ {
            addr_of_mut!((*dma()).rx)
        } else {
            addr_of_mut!((*dma()).tx)
        }
    }
}

/// Pattern bytes of frame `seq`: 48 to 1368, a multiple of 8.
fn pattern_len(seq: u32) -> usize {
    48 + (seq as usize % 16) * 88
}

/// Where frame `seq`'s pattern starts in the template.
fn pattern(seq: u32) -> *const u64 {
    // SAFETY: an address inside NET_DMA.
    unsafe { (addr_of_mut!((*dma()).template) as *const u64).add(seq as usize % 256) }
}

/// Whether `n` bytes (a multiple of 8) at `a` and `b` are equal.
fn qwords_equal(a: *const u8, b: *const u64, n: usize) -> bool {
    if n == 0 {
        return true;
    }
    let differs: u8;
    // SAFETY: read-only ranges inside NET_DMA; rcx > 0, so ZF comes from a compare.
    unsafe {
        core::arch::asm!(
            "repe cmpsq",
            "setne {d}",
            d = out(reg_byte) differs,
            inout("rsi") a => _,
            inout("rdi") b => _,
            inout("rcx") n / 8 => _,
            options(nostack, readonly),
        );
    }
    differs == 0
}

struct Net {
    dev: Device,
    mac: [u8; 6],
    link_up: bool,
    rx_avail: u16,
    rx_seen: u16,
    tx_done: u16,
}

impl Net {
    /// virtio 1.2, 3.1.1: VERSION_1, plus MAC and STATUS when offered.
    fn negotiate(dev: Device) -> Result<Self, &'static str> {
        dev.wr(0x70, 0);
        dev.wr(0x70, ACKNOWLEDGE);
        dev.wr(0x70, ACKNOWLEDGE | DRIVER);
        dev.wr(0x14, 1);
        if dev.rd(0x10) & F_VERSION_1_HI == 0 {
            return Err("no VERSION_1");
        }
        dev.wr(0x14, 0);
        let low = dev.rd(0x10) & (F_MAC | F_STATUS);
        dev.wr(0x24, 0);
        dev.wr(0x20, low);
        dev.wr(0x24, 1);
        dev.wr(0x20, F_VERSION_1_HI);
        dev.wr(0x70, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        if dev.rd(0x70) & FEATURES_OK == 0 {
            return Err("features refused");
        }
        let mut mac = [0u8; 6];
        if low & F_MAC != 0 {
            for (i, b) in mac.iter_mut().enumerate() {
                // SAFETY: the device's configuration space, byte reads.
                *b = unsafe { read_volatile((dev.base + 0x100 + i as u64) as *const u8) };
            }
        }
        let link_up = low & F_STATUS == 0 || dev.rd(0x104) >> 16 & 1 != 0;
        let mut net = Self {
            dev,
            mac,
            link_up,
            rx_avail: 0,
            rx_seen: 0,
            tx_done: 0,
        };
        net.setup(RXQ)?;
        net.setup(TXQ)?;
        net.dev
            .wr(0x70, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        if net.dev.rd(0x70) & NEEDS_RESET != 0 {
            return Err("device needs reset");
        }
        Ok(net)
    }

    fn setup(&mut self, q: u32) -> Result<(), &'static str> {
        self.dev.wr(0x30, q);
        if (self.dev.rd(0x34) as usize) < NQ {
            return Err("queue too small");
        }
        let r = ring(q);
        // SAFETY: the device is not running yet; only this CPU touches the ring.
        unsafe {
            // VRING_AVAIL_F_NO_INTERRUPT: the probe polls the used rings.
            write_volatile(addr_of_mut!((*r).avail_flags), 1);
            write_volatile(addr_of_mut!((*r).avail_idx), 0);
            write_volatile(addr_of_mut!((*r).used.flags), 0);
            write_volatile(addr_of_mut!((*r).used.idx), 0);
            self.dev.wr(0x38, NQ as u32);
            self.dev.wr64(0x80, addr_of_mut!((*r).desc) as u64);
            self.dev.wr64(0x90, addr_of_mut!((*r).avail_flags) as u64);
            self.dev.wr64(0xa0, addr_of_mut!((*r).used) as u64);
        }
        self.dev.wr(0x44, 1);
        Ok(())
    }

    /// Makes descriptor `id` available on queue `q` (the next avail slot).
    fn publish(&self, q: u32, slot_idx: u16, id: u16) {
        let r = ring(q);
        // SAFETY: the slot is ours until the device consumes it.
        unsafe {
            write_volatile(
                addr_of_mut!((*r).avail_ring[usize::from(slot_idx) % NQ]),
                id,
            );
            compiler_fence(Ordering::SeqCst);
            write_volatile(addr_of_mut!((*r).avail_idx), slot_idx.wrapping_add(1));
        }
    }

    fn notify(&self, q: u32) {
        compiler_fence(Ordering::SeqCst);
        self.dev.wr(0x50, q);
    }

    /// Every RX descriptor points at its own buffer, all made available.
    fn post_rx_buffers(&mut self) {
        let r = ring(RXQ);
        for i in 0..RX_BUFS {
            // SAFETY: the RX queue is idle; addresses inside NET_DMA.
            unsafe {
                let buf = addr_of_mut!((*dma()).rx_buf[i]) as u64;
                let d = Desc {
                    addr: buf,
                    len: BUF as u32,
                    flags: F_WRITE,
                    next: 0,
                };
                write_volatile(addr_of_mut!((*r).desc[i]), d);
            }
            self.publish(RXQ, self.rx_avail, i as u16);
            self.rx_avail = self.rx_avail.wrapping_add(1);
        }
        self.notify(RXQ);
    }

    /// Sends frame `seq` from TX slot `seq % WINDOW`: its header buffer,
    /// then the pattern straight from the template.
    fn send(&mut self, seq: u32) {
        let slot = seq as usize % WINDOW as usize;
        let plen = pattern_len(seq);
        let mut head = [0u8; TX_HEAD];
        head[VNET_HDR..VNET_HDR + 6].fill(0xff);
        head[VNET_HDR + 6..VNET_HDR + 12].copy_from_slice(&self.mac);
        head[VNET_HDR + 12..VNET_HDR + 14].copy_from_slice(&ETHERTYPE);
        head[VNET_HDR + 14..VNET_HDR + 18].copy_from_slice(&seq.to_be_bytes());
        head[VNET_HDR + 18..VNET_HDR + HEAD].copy_from_slice(&(plen as u16).to_be_bytes());
        // SAFETY: the slot's previous frame is complete (the caller checks
        // tx_done); addresses inside NET_DMA.
        unsafe {
            let buf = addr_of_mut!((*dma()).tx_head[slot]);
            write_volatile(buf, head);
            let desc = addr_of_mut!((*ring(TXQ)).desc) as *mut Desc;
            let first = Desc {
                addr: buf as u64,
                len: (VNET_HDR + HEAD) as u32,
                flags: F_NEXT,
                next: (2 * slot + 1) as u16,
            };
            let body = Desc {
                addr: pattern(seq) as u64,
                len: plen as u32,
                flags: 0,
                next: 0,
            };
            write_volatile(desc.add(2 * slot), first);
            write_volatile(desc.add(2 * slot + 1), body);
        }
        self.publish(TXQ, seq as u16, (2 * slot) as u16);
    }

    fn used_idx(q: u32) -> u16 {
        // SAFETY: the device writes it; volatile sees the update.
        unsafe { read_volatile(addr_of_mut!((*ring(q)).used.idx)) }
    }

    /// The next completed RX buffer, if any: (descriptor id, length).
    fn next_rx(&mut self) -> Option<(usize, usize)> {
        if Self::used_idx(RXQ) == self.rx_seen {
            return None;
        }
        compiler_fence(Ordering::SeqCst);
        let slot = usize::from(self.rx_seen) % NQ;
        // SAFETY: the device completed this element.
        let [id, len] = unsafe { read_volatile(addr_of_mut!((*ring(RXQ)).used.ring[slot])) };
        self.rx_seen = self.rx_seen.wrapping_add(1);
        Some((id as usize % RX_BUFS, len as usize))
    }

    /// Gives RX buffer `id` back to the device.
    fn repost(&mut self, id: usize) {
        self.publish(RXQ, self.rx_avail, id as u16);
        self.rx_avail = self.rx_avail.wrapping_add(1);
    }
}

/// What an RX buffer held.
enum Rx {
    /// Not ours (another EtherType, e.g. IPv6 neighbour discovery).
    Other,
    Echo,
    Bad(&'static str),
}

/// Checks RX buffer `id` (`len` bytes with the vnet header) against frame `expect`.
fn check_echo(mac: &[u8; 6], id: usize, len: usize, expect: u32) -> Rx {
    if !(VNET_HDR + HEAD..=BUF).contains(&len) {
        return Rx::Bad("echo length");
    }
    // SAFETY: the device completed this buffer; reads inside NET_DMA.
    let (buf, head) = unsafe {
        let buf = addr_of_mut!((*dma()).rx_buf[id]) as *const u8;
        let head = read_volatile(buf.add(VNET_HDR) as *const [u8; HEAD]);
        (buf, head)
    };
    if head[12..14] != ETHERTYPE {
        return Rx::Other;
    }
    if head[..6] != mac[..] {
        return Rx::Bad("echo destination");
    }
    let seq = u32::from_be_bytes([head[14], head[15], head[16], head[17]]);
    if seq != expect {
        return Rx::Bad("echo out of order");
    }
    let plen = pattern_len(seq);
    if usize::from(u16::from_be_bytes([head[18], head[19]])) != plen
        || len != VNET_HDR + HEAD + plen
    {
        return Rx::Bad("echo truncated");
    }
    // SAFETY: reads inside NET_DMA.
    let same = unsafe { qwords_equal(buf.add(VNET_HDR + HEAD), pattern(seq), plen) };
    if same {
        Rx::Echo
    } else {
        Rx::Bad("echo content")
    }
}

fn fill_template() {
    // SAFETY: address only; no request is in flight.
    let t = unsafe { addr_of_mut!((*dma()).template) } as *mut u64;
    for i in 0..TEMPLATE / 8 {
        // SAFETY: i is inside the array.
        unsafe { write_volatile(t.add(i), mix(0x6e6574, i as u64)) };
    }
}

/// Lets the host run the device and the echo. A guest spinning on memory
/// never leaves the CPU, and a host thread woken on that CPU then waits for
/// the next timer tick; a port read the in-kernel PIT answers (system
/// control port B) is a short exit after which the host may switch threads.
fn yield_to_host() {
    crate::cpu::inb(0x61);
}

/// Where the exchange stopped.
struct Failure {
    why: &'static str,
    seq: u32,
}

fn echo(net: &mut Net, count: u32) -> Result<(), Failure> {
    fill_template();
    net.post_rx_buffers();
    let (mut sent, mut echoed, mut idle) = (0u32, 0u32, 0u32);
    while echoed < count {
        let before = (sent, echoed, net.tx_done);
        net.tx_done = Net::used_idx(TXQ);
        let mut kick = false;
        // Refill in batches: one notification (a trapped MMIO write) per batch.
        let batch = sent == echoed || WINDOW - (sent - echoed) >= WINDOW / 2;
        while batch
            && sent < count
            && sent - echoed < WINDOW
            && (sent as u16).wrapping_sub(net.tx_done) < WINDOW as u16
        {
            net.send(sent);
            sent += 1;
            kick = true;
        }
        if kick {
            net.notify(TXQ);
        }
        let mut reposted = false;
        while let Some((id, len)) = net.next_rx() {
            match check_echo(&net.mac, id, len, echoed) {
                Rx::Other => {}
                Rx::Echo => echoed += 1,
                Rx::Bad(why) => return Err(Failure { why, seq: echoed }),
            }
            net.repost(id);
            reposted = true;
        }
        if reposted {
            net.notify(RXQ);
        }
        if (sent, echoed, net.tx_done) == before {
            yield_to_host();
            idle += 1;
            if idle > IDLE_LIMIT {
                return Err(Failure {
                    why: "timeout",
                    seq: echoed,
                });
            }
        } else {
            idle = 0;
        }
    }
    Ok(())
}

/// `echo:COUNT`.
fn parse_op(spec: &[u8]) -> Option<u32> {
    let count = spec.strip_prefix(b"echo:").and_then(parse_dec)?;
    u32::try_from(count).ok()
}

/// The first announced virtio-net device.
fn find_net(cmdline: &[u8]) -> Option<(usize, Device)> {
    let bases = cmdline
        .split(|&b| b == b' ')
        .filter_map(|w| w.strip_prefix(b"virtio_mmio.device="));
    bases.enumerate().find_map(|(n, spec)| {
        let dev = Device {
            base: parse_base(spec)?,
            sent: 0,
        };
        (dev.identify() == Ok(NET_ID)).then_some((n, dev))
    })
}

/// `02:00:00:00:00:01`.
fn mac_text(mac: &[u8; 6]) -> [u8; 17] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [b':'; 17];
    for (i, b) in mac.iter().enumerate() {
        text[i * 3] = DIGITS[usize::from(b >> 4)];
        text[i * 3 + 1] = DIGITS[usize::from(b & 0xf)];
    }
    text
}

/// Runs `probe.net=` if the command line asks for it.
pub fn run(cmdline: &[u8]) -> Result<(), &'static str> {
    let Some(spec) = cmdline
        .split(|&b| b == b' ')
        .find_map(|w| w.strip_prefix(b"probe.net="))
    else {
        return Ok(());
    };
    let count = parse_op(spec).ok_or("bad probe.net")?;
    let (n, dev) = find_net(cmdline).ok_or("probe.net without a network device")?;
    let mut net = match Net::negotiate(dev) {
        Ok(net) => net,
        Err(why) => {
            report("net dev=")
                .dec(n as u64)
                .str(" fail ")
                .str(why)
                .end();
            return Err("net");
        }
    };
    report("net dev=")
        .dec(n as u64)
        .str(" mac=")
        .bytes(&mac_text(&net.mac))
        .str(if net.link_up {
            " link=up"
        } else {
            " link=down"
        })
        .end();
    let result = echo(&mut net, count);
    net.dev.wr(0x70, 0);
    match result {
        Ok(()) => {
            report("net echo count=").dec(count.into()).str(" ok").end();
            Ok(())
        }
        Err(f) => {
            report("net echo count=")
                .dec(count.into())
                .str(" fail ")
                .str(f.why)
                .str(" seq=")
                .dec(f.seq.into())
                .end();
            Err("net")
        }
    }
}
