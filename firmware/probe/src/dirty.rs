//! `probe.dirty=MIB[:MBPS]`: the migration tests' workload. Forever, in
//! generations, every 4 KiB page of MIB MiB from 16 MiB up is first checked
//! then rewritten: its first word holds `generation << 32 | page index`,
//! its last the complement, and the probe keeps in its own memory the
//! generation it last wrote to each page. A page that does not hold what
//! the probe last wrote there (a migration lost or tore it) fails the run.
//! After each generation: `PROBE dirty gen=G ok`, so the host sees the
//! counter go on, one by one, across migrations. MBPS caps the rate at
//! which pages are dirtied (0 or absent: as fast as the CPU goes), paced by
//! the PIT.

use crate::boot::E820Entry;
use crate::pit::{self, Clock};
use crate::serial::report;

const PAGE: u64 = 4096;
const WORDS: usize = (PAGE / 8) as usize;
/// The region starts here (above the probe, its tables and stacks).
const REGION: u64 = 16 << 20;
/// Last-written generations, one u32 per page (2 MiB: up to 2 GiB of region).
const GENS: u64 = 8 << 20;
const MAX_PAGES: u64 = (REGION - GENS) / 4;

pub struct Dirty {
    pages: u64,
    /// Pages a second, 0 for no cap.
    rate: u64,
}

/// Parses `probe.dirty=MIB[:MBPS]` from the command line.
pub fn option(cmdline: &[u8]) -> Result<Option<Dirty>, &'static str> {
    let mut found = None;
    for word in cmdline.split(|b| *b == b' ') {
        let Some(spec) = word.strip_prefix(b"probe.dirty=") else {
            continue;
        };
        let mut parts = spec.split(|b| *b == b':');
        let parse = crate::virtio::parse_dec;
        let mib = parts.next().and_then(parse).ok_or("bad probe.dirty")?;
        let mbps = match parts.next() {
            Some(p) => parse(p).ok_or("bad probe.dirty")?,
            None => 0,
        };
        let pages = mib * (1 << 20) / PAGE;
        if pages == 0 || pages > MAX_PAGES {
            return Err("bad probe.dirty");
        }
        found = Some(Dirty {
            pages,
            rate: mbps * (1 << 20) / PAGE,
        });
    }
    Ok(found)
}

fn page_addr(page: u64) -> *mut u64 {
    (REGION + page * PAGE) as *mut u64
}

fn gen_slot(page: u64) -> *mut u32 {
    (GENS + page * 4) as *mut u32
}

impl Dirty {
    /// Runs forever; returns only with the reason it failed.
    pub fn run(&self, e820: &[E820Entry]) -> &'static str {
        let end = REGION + self.pages * PAGE;
        if !e820.iter().any(|e| e.is_ram() && e.addr <= GENS && e.end() >= end) {
            return "probe.dirty region not in ram";
        }
        // SAFETY: [GENS, GENS + 4 × pages) is RAM above the probe (checked
        // above) that nothing else uses; generation 0 means "never written".
        unsafe { core::ptr::write_bytes(gen_slot(0), 0, self.pages as usize) };
        let mut clock = Clock::start();
        let mut written = 0u64;
        for gen in 1u64.. {
            for page in 0..self.pages {
                if let Err(why) = self.check(page) {
                    return why;
                }
                self.write(page, gen as u32);
                written += 1;
                self.pace(&mut clock, written);
            }
            report("dirty gen=").dec(gen).str(" ok").end();
        }
        unreachable!()
    }

    fn check(&self, page: u64) -> Result<(), &'static str> {
        // SAFETY: inside the region and the generation table (see run).
        let (want, first, last) = unsafe {
            let p = page_addr(page);
            (gen_slot(page).read_volatile(), p.read_volatile(), p.add(WORDS - 1).read_volatile())
        };
        if want == 0 {
            return Ok(());
        }
        let expect = u64::from(want) << 32 | page;
        if first != expect || last != !expect {
            report("dirty fail page=")
                .dec(page)
                .str(" want=")
                .hex(expect)
                .str(" got=")
                .hex(first)
                .str(" last=")
                .hex(last)
                .end();
            return Err("dirty page lost");
        }
        Ok(())
    }

    fn write(&self, page: u64, gen: u32) {
        let stamp = u64::from(gen) << 32 | page;
        // SAFETY: as in `check`. The whole page is written (one `rep
        // stosq`: instructions are what PVM makes slow), so it really is
        // dirty for the VMM to track.
        unsafe {
            let p = page_addr(page);
            core::arch::asm!("rep stosq", inout("rdi") p => _, inout("rcx") WORDS - 1 => _,
                             in("rax") stamp, options(nostack, preserves_flags));
            p.add(WORDS - 1).write_volatile(!stamp);
            gen_slot(page).write_volatile(gen);
        }
    }

    /// Waits until `written` pages are within the rate since the start.
    fn pace(&self, clock: &mut Clock, written: u64) {
        if self.rate == 0 {
            // Still read the PIT now and then so it never wraps unseen.
            if written.is_multiple_of(256) {
                clock.poll();
            }
            return;
        }
        while written * pit::HZ > clock.poll() * self.rate {}
    }
}
