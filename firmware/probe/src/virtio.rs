//! virtio-blk through virtio-mmio version 2, driven by polling: find the
//! devices the command line announces (`virtio_mmio.device=<size>@<addr>:<irq>`),
//! negotiate VERSION_1 only, set up one small queue, and with
//! `probe.blk=write:SEED:MIB` / `probe.blk=read:SEED:MIB` write and/or check
//! a deterministic pattern, and `probe.blk=stress:SEED:MIB` rewrites random
//! chunks in flushed generations (the crash-safety workload), and
//! `probe.blk=trim:SEED:MIB` writes the pattern then zeroes and discards
//! fixed ranges (the host checks them). One request in flight; no interrupts.

use core::ptr::{addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{compiler_fence, Ordering};

use crate::serial::report;

const MAGIC: u32 = 0x7472_6976;
const BLOCK_ID: u32 = 2;
pub(crate) const ACKNOWLEDGE: u32 = 1;
pub(crate) const DRIVER: u32 = 2;
pub(crate) const DRIVER_OK: u32 = 4;
pub(crate) const FEATURES_OK: u32 = 8;
pub(crate) const NEEDS_RESET: u32 = 0x40;
pub(crate) const F_NEXT: u16 = 1;
pub(crate) const F_WRITE: u16 = 2;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_DISCARD: u32 = 11;
const F_DISCARD: u32 = 1 << 13;
const F_WRITE_ZEROES: u32 = 1 << 14;
const T_WRITE_ZEROES: u32 = 13;
const QSIZE: usize = 4;
/// Data moved per request; 128 sectors.
const CHUNK: usize = 64 << 10;
const CHUNK_SECTORS: u64 = (CHUNK / 512) as u64;
/// Polls of the used ring before a request counts as lost: several seconds
/// even natively, as a disk on a soft NFS mount whose server went away
/// takes that long to fail a request with EIO (the rig's nfs-pool job
/// expects the guest to see that error, not to give up first).
const SPIN_LIMIT: u32 = 1 << 30;

#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

/// Everything the device reads or writes, in one page-aligned static.
#[repr(C, align(4096))]
struct Dma {
    /// What reads land in.
    data: [u64; CHUNK / 8],
    /// The pattern for the current chunk; writes are sent from here.
    expect: [u64; CHUNK / 8],
    desc: [Desc; QSIZE],
    avail_flags: u16,
    avail_idx: u16,
    avail_ring: [u16; QSIZE],
    used_flags: u16,
    used_idx: u16,
    used_ring: [[u32; 2]; QSIZE],
    header: [u32; 4],
    status: u8,
}

// Not zeroed at entry (.noinit, see link.ld): 128 KiB of clearing would be
// emulated store by store under PVM on every boot; setup_queue resets the
// ring indices and flags, and every buffer is written before it is read.
#[link_section = ".noinit.virtio_dma"]
static mut DMA: Dma = Dma {
    data: [0; CHUNK / 8],
    expect: [0; CHUNK / 8],
    desc: [Desc {
        addr: 0,
        len: 0,
        flags: 0,
        next: 0,
    }; QSIZE],
    avail_flags: 0,
    avail_idx: 0,
    avail_ring: [0; QSIZE],
    used_flags: 0,
    used_idx: 0,
    used_ring: [[0; 2]; QSIZE],
    header: [0; 4],
    status: 0,
};

fn dma() -> *mut Dma {
    addr_of_mut!(DMA)
}

/// Words per 512-byte sector.
const SECTOR_WORDS: u64 = 64;

/// A mixing function (splitmix64's finaliser) of `seed` and `n`.
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

// The disk pattern for SEED, word `w` of the disk (the host test computes
// the same): `mix(!seed, w / 64)` as the first word of each sector, else
// `mix(seed, w % 512)`. Guest instructions are slow here, so the pattern
// is one 64 KiB template plus one stamp per sector, and comparing is a
// single `repe cmpsq`. The template repeats every 4 KiB so that deflate
// (window 32 KiB) compresses it: qemu-img stores it as compressed clusters.
const TEMPLATE_PERIOD: usize = 512;

/// Writes the template into `expect` (once per run).
fn fill_template(seed: u64) {
    // SAFETY: an address only; no request is in flight.
    let expect = unsafe { addr_of_mut!((*dma()).expect) } as *mut u64;
    for i in 0..CHUNK / 8 {
        // SAFETY: i is inside the array.
        unsafe { write_volatile(expect.add(i), mix(seed, (i % TEMPLATE_PERIOD) as u64)) };
    }
}

/// Stamps the sectors of chunk `chunk` into `expect`.
fn stamp_chunk(seed: u64, chunk: u64) {
    // SAFETY: an address only; no request is in flight.
    let expect = unsafe { addr_of_mut!((*dma()).expect) } as *mut u64;
    for s in 0..CHUNK_SECTORS {
        let value = mix(!seed, chunk * CHUNK_SECTORS + s);
        // SAFETY: s * 64 is inside the array.
        unsafe { write_volatile(expect.add((s * SECTOR_WORDS) as usize), value) };
    }
}

/// Whether `data` equals `expect`.
fn data_matches() -> bool {
    let d = dma();
    let differs: u8;
    // SAFETY: both arrays are CHUNK bytes and only read; the direction flag
    // is clear (Rust's asm! contract). ZF after the last compare says
    // whether they all matched (rcx is never 0 on entry).
    unsafe {
        core::arch::asm!(
            "repe cmpsq",
            "setne {differs}",
            differs = out(reg_byte) differs,
            inout("rsi") addr_of_mut!((*d).data) as u64 => _,
            inout("rdi") addr_of_mut!((*d).expect) as u64 => _,
            inout("rcx") (CHUNK / 8) as u64 => _,
            options(nostack, readonly),
        );
    }
    differs == 0
}

pub(crate) struct Device {
    pub base: u64,
    /// Requests submitted so far (the next avail index).
    pub sent: u16,
}

impl Device {
    pub(crate) fn rd(&self, off: u64) -> u32 {
        // SAFETY: the MMIO page the command line announced, mapped uncached.
        unsafe { read_volatile((self.base + off) as *const u32) }
    }

    pub(crate) fn wr(&self, off: u64, v: u32) {
        // SAFETY: as in `rd`.
        unsafe { write_volatile((self.base + off) as *mut u32, v) }
    }

    pub(crate) fn wr64(&self, off: u64, v: u64) {
        self.wr(off, v as u32);
        self.wr(off + 4, (v >> 32) as u32);
    }

    /// Checks the identity registers; returns the device ID.
    pub(crate) fn identify(&self) -> Result<u32, &'static str> {
        if self.rd(0x00) != MAGIC {
            return Err("bad magic");
        }
        if self.rd(0x04) != 2 {
            return Err("not virtio-mmio version 2");
        }
        Ok(self.rd(0x08))
    }

    /// Status steps of virtio 1.2, 3.1.1, accepting VERSION_1 and, when
    /// offered, DISCARD and WRITE_ZEROES.
    fn negotiate(&mut self) -> Result<(), &'static str> {
        self.wr(0x70, 0);
        self.wr(0x70, ACKNOWLEDGE);
        self.wr(0x70, ACKNOWLEDGE | DRIVER);
        self.wr(0x14, 1);
        if self.rd(0x10) & 1 == 0 {
            return Err("no VERSION_1");
        }
        self.wr(0x14, 0);
        let low = self.rd(0x10) & (F_DISCARD | F_WRITE_ZEROES);
        self.wr(0x24, 0);
        self.wr(0x20, low);
        self.wr(0x24, 1);
        self.wr(0x20, 1);
        self.wr(0x70, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        if self.rd(0x70) & FEATURES_OK == 0 {
            return Err("features refused");
        }
        self.setup_queue()?;
        self.wr(0x70, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        if self.rd(0x70) & NEEDS_RESET != 0 {
            return Err("device needs reset");
        }
        Ok(())
    }

    fn setup_queue(&mut self) -> Result<(), &'static str> {
        self.wr(0x30, 0);
        if (self.rd(0x34) as usize) < QSIZE {
            return Err("queue too small");
        }
        let d = dma();
        // SAFETY: only this CPU touches DMA, and the device is reset (idle).
        unsafe {
            write_volatile(addr_of_mut!((*d).avail_flags), 0);
            write_volatile(addr_of_mut!((*d).avail_idx), 0);
            write_volatile(addr_of_mut!((*d).used_flags), 0);
            write_volatile(addr_of_mut!((*d).used_idx), 0);
        }
        self.sent = 0;
        self.wr(0x38, QSIZE as u32);
        // SAFETY: addresses only; identity mapping makes them physical.
        unsafe {
            self.wr64(0x80, addr_of_mut!((*d).desc) as u64);
            self.wr64(0x90, addr_of_mut!((*d).avail_flags) as u64);
            self.wr64(0xa0, addr_of_mut!((*d).used_flags) as u64);
        }
        self.wr(0x44, 1);
        Ok(())
    }

    fn capacity(&self) -> u64 {
        u64::from(self.rd(0x100)) | u64::from(self.rd(0x104)) << 32
    }

    /// Submits header → [data] → status and waits for it; returns the status byte.
    fn request(&mut self, kind: u32, sector: u64, data_len: u32) -> Result<u8, &'static str> {
        let d = dma();
        let data_flags = if kind == T_IN { F_WRITE } else { 0 };
        // SAFETY: the device only reads these once they are published below.
        unsafe {
            let desc = addr_of_mut!((*d).desc) as *mut Desc;
            let header = addr_of_mut!((*d).header);
            write_volatile(header, [kind, 0, sector as u32, (sector >> 32) as u32]);
            write_volatile(addr_of_mut!((*d).status), 0xff);
            let first_next = if data_len == 0 { 2 } else { 1 };
            let hdr = Desc {
                addr: header as u64,
                len: 16,
                flags: F_NEXT,
                next: first_next,
            };
            write_volatile(desc, hdr);
            let data = if kind == T_IN {
                addr_of_mut!((*d).data) as u64
            } else {
                addr_of_mut!((*d).expect) as u64
            };
            let body = Desc {
                addr: data,
                len: data_len,
                flags: data_flags | F_NEXT,
                next: 2,
            };
            write_volatile(desc.add(1), body);
            let status = addr_of_mut!((*d).status) as u64;
            write_volatile(
                desc.add(2),
                Desc {
                    addr: status,
                    len: 1,
                    flags: F_WRITE,
                    next: 0,
                },
            );
            let slot = usize::from(self.sent) % QSIZE;
            write_volatile(addr_of_mut!((*d).avail_ring[slot]), 0);
            compiler_fence(Ordering::SeqCst);
            self.sent = self.sent.wrapping_add(1);
            write_volatile(addr_of_mut!((*d).avail_idx), self.sent);
        }
        compiler_fence(Ordering::SeqCst);
        self.wr(0x50, 0);
        self.wait()?;
        // SAFETY: the device has completed the request.
        Ok(unsafe { read_volatile(addr_of_mut!((*d).status)) })
    }

    fn wait(&self) -> Result<(), &'static str> {
        let d = dma();
        for _ in 0..SPIN_LIMIT {
            // SAFETY: the device writes used_idx; volatile sees its update.
            if unsafe { read_volatile(addr_of_mut!((*d).used_idx)) } == self.sent {
                compiler_fence(Ordering::SeqCst);
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err("timeout")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BlkMode {
    Write,
    Read,
    Stress,
    Trim,
    Bench,
    /// `write` without the FLUSH: what reaches the image then depends on
    /// the VMM flushing on its own way out.
    NoFlush,
}

/// What `probe.blk=` asks for.
struct BlkOp {
    mode: BlkMode,
    seed: u64,
    mib: u64,
}

/// Chunk writes per stress generation, and generations before it stops.
const GEN_WRITES: u64 = 16;
const STRESS_GENS: u64 = 1_000_000;

pub(crate) fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

/// `write:SEED:MIB`, `read:SEED:MIB` or `stress:SEED:MIB`.
fn parse_op(spec: &[u8]) -> Option<BlkOp> {
    let mut parts = spec.split(|&b| b == b':');
    let mode = match parts.next()? {
        b"write" => BlkMode::Write,
        b"read" => BlkMode::Read,
        b"stress" => BlkMode::Stress,
        b"trim" => BlkMode::Trim,
        b"bench" => BlkMode::Bench,
        b"noflush" => BlkMode::NoFlush,
        _ => return None,
    };
    let seed = parse_dec(parts.next()?)?;
    let mib = parse_dec(parts.next()?)?;
    parts.next().is_none().then_some(BlkOp { mode, seed, mib })
}

/// The base address in `<size>@0x<addr>:<irq>`, if below 4 GiB.
pub(crate) fn parse_base(spec: &[u8]) -> Option<u64> {
    let at = spec.iter().position(|&b| b == b'@')?;
    let rest = spec[at + 1..].strip_prefix(b"0x")?;
    let end = rest.iter().position(|&b| b == b':').unwrap_or(rest.len());
    if end == 0 || end > 8 {
        return None;
    }
    rest[..end].iter().try_fold(0u64, |n, &c| {
        let digit = (c as char).to_digit(16)?;
        Some(n << 4 | u64::from(digit))
    })
}

/// Probes every announced device, then runs `probe.blk=` on the first block device.
pub fn run(cmdline: &[u8]) -> Result<(), &'static str> {
    let words = || cmdline.split(|&b| b == b' ');
    let op = words()
        .find_map(|w| w.strip_prefix(b"probe.blk="))
        .map(parse_op);
    let mut blk = None;
    let bases = words().filter_map(|w| w.strip_prefix(b"virtio_mmio.device="));
    for (n, spec) in bases.enumerate() {
        let base = parse_base(spec).ok_or("bad virtio_mmio.device")?;
        let mut dev = Device { base, sent: 0 };
        let line = report("virtio dev=").dec(n as u64);
        match dev.identify() {
            Ok(BLOCK_ID) => match dev.negotiate() {
                Ok(()) => line.str(" id=2 ok").end(),
                Err(why) => {
                    line.str(" id=2 fail ").str(why).end();
                    return Err("virtio");
                }
            },
            Ok(id) => line.str(" id=").dec(id.into()).str(" ok").end(),
            Err(why) => {
                line.str(" fail ").str(why).end();
                return Err("virtio");
            }
        }
        // The queue memory is shared: leave each device reset until it is used.
        dev.wr(0x70, 0);
        if blk.is_none() && dev.identify() == Ok(BLOCK_ID) {
            blk = Some(dev);
        }
    }
    match (op, blk) {
        (None, _) => Ok(()),
        (Some(None), _) => Err("bad probe.blk"),
        (Some(Some(_)), None) => Err("probe.blk without a block device"),
        (Some(Some(op)), Some(mut dev)) => blk_test(&mut dev, &op),
    }
}

fn blk_test(dev: &mut Device, op: &BlkOp) -> Result<(), &'static str> {
    let what = match op.mode {
        BlkMode::Write => "blk write mib=",
        BlkMode::Read => "blk read mib=",
        BlkMode::Stress => "blk stress mib=",
        BlkMode::Trim => "blk trim mib=",
        BlkMode::Bench => "blk bench mib=",
        BlkMode::NoFlush => "blk noflush mib=",
    };
    match dev.negotiate().and_then(|()| blk_run(dev, op)) {
        Ok(()) => {
            report(what).dec(op.mib).str(" ok").end();
            Ok(())
        }
        Err(why) => {
            report(what).dec(op.mib).str(" fail ").str(why).end();
            Err("blk")
        }
    }
}

fn ok(status: u8, why: &'static str) -> Result<(), &'static str> {
    if status == 0 {
        Ok(())
    } else {
        Err(why)
    }
}

/// Generation `g` writes chunk `mix(seed, g * 16 + i) % chunks` for i in
/// 0..16, stamped with seed + g, then FLUSHes and reports `blk stress gen=g`:
/// every chunk a reported generation wrote must survive a crash. Before
/// each generation it checks the owner stamp (`claim`), if the disk has one.
fn blk_stress(dev: &mut Device, seed: u64, chunks: u64) -> Result<(), &'static str> {
    if chunks == 0 {
        return Err("disk too small");
    }
    let owner = claim(dev, seed, chunks)?;
    for gen in 1..=STRESS_GENS {
        if let Some(owner) = owner {
            check_owner(dev, owner)?;
        }
        for i in 0..GEN_WRITES {
            let chunk = mix(seed, gen * GEN_WRITES + i) % chunks;
            stamp_chunk(seed.wrapping_add(gen), chunk);
            ok(
                dev.request(T_OUT, chunk * CHUNK_SECTORS, CHUNK as u32)?,
                "write ioerr",
            )?;
        }
        ok(dev.request(T_FLUSH, 0, 0)?, "flush ioerr")?;
        report("blk stress gen=").dec(gen).end();
    }
    Ok(())
}

/// The owner stamp's first word; the second is the writing boot's id.
const STAMP_MAGIC: u64 = u64::from_le_bytes(*b"VIREOOWN");

/// This boot's owner stamp and where it lives.
#[derive(Clone, Copy)]
struct Owner {
    sector: u64,
    id: u64,
}

/// Stamps the sector right past the stress area (if the disk has it) with
/// an id unique to this boot (the time-stamp counter mixed with the seed)
/// and flushes it. A copy of the VM that boots later overwrites it: an
/// older copy still writing then finds a foreign id (`check_owner`). A
/// migrated or restored guest keeps its memory, hence its id.
fn claim(dev: &mut Device, seed: u64, chunks: u64) -> Result<Option<Owner>, &'static str> {
    let sector = chunks * CHUNK_SECTORS;
    if dev.capacity() <= sector {
        return Ok(None);
    }
    let owner = Owner {
        sector,
        id: mix(seed, crate::cpu::rdtsc()),
    };
    // SAFETY: an address only; no request is in flight. Words 0 and 1 of
    // the template are restored below (stamp_chunk rewrites only word 0).
    let expect = unsafe { addr_of_mut!((*dma()).expect) } as *mut u64;
    // SAFETY: inside the array.
    unsafe {
        write_volatile(expect, STAMP_MAGIC);
        write_volatile(expect.add(1), owner.id);
    }
    ok(dev.request(T_OUT, sector, 512)?, "stamp ioerr")?;
    ok(dev.request(T_FLUSH, 0, 0)?, "flush ioerr")?;
    // SAFETY: as above.
    unsafe { write_volatile(expect.add(1), mix(seed, 1)) };
    report("blk owner=").hex(owner.id).end();
    Ok(Some(owner))
}

/// Re-reads the owner stamp: another id there means a second copy of this
/// VM took the disk; this one stops writing and says so.
fn check_owner(dev: &mut Device, owner: Owner) -> Result<(), &'static str> {
    ok(dev.request(T_IN, owner.sector, 512)?, "stamp ioerr")?;
    // SAFETY: the read has completed; volatile sees the device's write.
    let (magic, id) = unsafe {
        let data = addr_of_mut!((*dma()).data) as *const u64;
        (read_volatile(data), read_volatile(data.add(1)))
    };
    if magic == STAMP_MAGIC && id == owner.id {
        return Ok(());
    }
    report("blk second writer: stamp ")
        .hex(id)
        .str(" (mine ")
        .hex(owner.id)
        .str(")")
        .end();
    Err("second writer")
}

fn blk_run(dev: &mut Device, op: &BlkOp) -> Result<(), &'static str> {
    let chunks = op.mib * ((1 << 20) / CHUNK as u64);
    if dev.capacity() < chunks * CHUNK_SECTORS {
        return Err("disk too small");
    }
    fill_template(op.seed);
    if op.mode == BlkMode::Stress {
        return blk_stress(dev, op.seed, chunks);
    }
    if op.mode == BlkMode::Bench {
        return blk_bench(dev, op.seed, chunks);
    }
    if op.mode != BlkMode::Read {
        for c in 0..chunks {
            stamp_chunk(op.seed, c);
            ok(
                dev.request(T_OUT, c * CHUNK_SECTORS, CHUNK as u32)?,
                "write ioerr",
            )?;
        }
        if op.mode != BlkMode::NoFlush {
            ok(dev.request(T_FLUSH, 0, 0)?, "flush ioerr")?;
        }
    }
    for c in 0..chunks {
        ok(
            dev.request(T_IN, c * CHUNK_SECTORS, CHUNK as u32)?,
            "read ioerr",
        )?;
        stamp_chunk(op.seed, c);
        if !data_matches() {
            return Err("data mismatch");
        }
    }
    if op.mode == BlkMode::Trim {
        return blk_trim(dev, op.mib);
    }
    Ok(())
}

/// 4 KiB requests in each random phase of `bench`.
const BENCH_RANDOM_OPS: u64 = 4096;
const SMALL: u32 = 4096;

/// The benchmark workload: sequential 64 KiB writes then FLUSH, sequential
/// 64 KiB reads, random 4 KiB reads, random 4 KiB writes then FLUSH; a
/// `blk bench PHASE` line after each, which the host times. Nothing is
/// compared: guest instructions are what PVM makes slow.
fn blk_bench(dev: &mut Device, seed: u64, chunks: u64) -> Result<(), &'static str> {
    for c in 0..chunks {
        ok(
            dev.request(T_OUT, c * CHUNK_SECTORS, CHUNK as u32)?,
            "write ioerr",
        )?;
    }
    ok(dev.request(T_FLUSH, 0, 0)?, "flush ioerr")?;
    report("blk bench seqwrite").end();
    for c in 0..chunks {
        ok(
            dev.request(T_IN, c * CHUNK_SECTORS, CHUNK as u32)?,
            "read ioerr",
        )?;
    }
    report("blk bench seqread").end();
    let blocks = chunks * (CHUNK as u64 / SMALL as u64);
    let sector = |i: u64| (mix(seed, i) % blocks) * (SMALL as u64 / 512);
    for i in 0..BENCH_RANDOM_OPS {
        ok(dev.request(T_IN, sector(i), SMALL)?, "read ioerr")?;
    }
    report("blk bench randread").end();
    for i in 0..BENCH_RANDOM_OPS {
        ok(dev.request(T_OUT, sector(!i), SMALL)?, "write ioerr")?;
    }
    ok(dev.request(T_FLUSH, 0, 0)?, "flush ioerr")?;
    report("blk bench randwrite").end();
    Ok(())
}

/// After the pattern: WRITE_ZEROES sectors 2048..4096 and 4097..4103 (one
/// request, two ranges), DISCARD sectors 6144..8192, FLUSH.
fn blk_trim(dev: &mut Device, mib: u64) -> Result<(), &'static str> {
    if mib < 4 {
        return Err("trim needs 4 MiB");
    }
    let ranges = |list: &[(u64, u64)]| {
        // SAFETY: an address only; no request is in flight.
        let out = unsafe { addr_of_mut!((*dma()).expect) } as *mut u64;
        for (i, &(sector, count)) in list.iter().enumerate() {
            // SAFETY: two words per range, well inside the array.
            unsafe {
                write_volatile(out.add(2 * i), sector);
                write_volatile(out.add(2 * i + 1), count); // flags (high half) 0
            }
        }
        16 * list.len() as u32
    };
    let len = ranges(&[(2048, 2048), (4097, 6)]);
    ok(dev.request(T_WRITE_ZEROES, 0, len)?, "write-zeroes ioerr")?;
    let len = ranges(&[(6144, 2048)]);
    ok(dev.request(T_DISCARD, 0, len)?, "discard ioerr")?;
    ok(dev.request(T_FLUSH, 0, 0)?, "flush ioerr")
}
