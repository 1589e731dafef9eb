//! Application processor bring-up: INIT-SIPI-SIPI to all other CPUs, each
//! of which records its APIC id and halts.
//!
//! Path of an AP: smp_trampoline.s (real mode, in a low page) ->
//! entry.s `probe_ap_entry32` (protected mode, long mode on with the
//! BSP's page tables) -> `probe_ap_main` here, on its own stack.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::boot::BootInfo;
use crate::{apic, cpu};

/// CPUs the probe handles, the boot CPU included.
pub const MAX_CPUS: usize = 64;
pub const MAX_APS: usize = MAX_CPUS - 1;
pub const AP_STACK_SIZE: usize = 16 * 1024;

const PAGE: u64 = 4096;
/// Preferred trampoline page; free under Vireo.
const PREFERRED_TRAMPOLINE: u64 = 0x8000;
/// SIPI vectors 0x01..=0x9F: the trampoline page must be below 0xA0000.
const TRAMPOLINE_PAGES: core::ops::Range<u64> = 1..0xA0;

/// INIT, level assert, to all excluding self.
const ICR_INIT_ALL_BUT_SELF: u32 = 0x000C_4500;
/// Start-up IPI to all excluding self; OR in the vector (page number).
const ICR_SIPI_ALL_BUT_SELF: u32 = 0x000C_4600;

// There is no calibrated timer, so delays are counted loop iterations. They
// are short on purpose: under a software KVM (PVM) every guest instruction
// may be emulated, and in-kernel (KVM) and QEMU LAPICs need no settling time.
const INIT_DELAY: u32 = 1 << 10;
const SIPI_DELAY: u32 = 1 << 8;
/// The BSP stops waiting once no AP has shown up for this many polls...
const QUIET_POLLS: u32 = 1 << 24;
/// ...or for this many while fewer CPUs are online than the MP table lists
/// (slow AP start under a loaded host or an emulated real mode).
const PATIENT_QUIET_POLLS: u32 = 1 << 28;

core::arch::global_asm!(include_str!("smp_trampoline.s"), options(att_syntax));

extern "C" {
    static probe_trampoline_start: u8;
    static probe_trampoline_end: u8;
}

/// Next free AP slot; entry.s claims slots with `lock xadd` before it has a
/// stack. Can exceed MAX_APS, which is how the BSP spots too many CPUs.
#[no_mangle]
static PROBE_AP_NEXT: AtomicU32 = AtomicU32::new(0);
/// APs that finished recording their id.
static AP_ARRIVED: AtomicU32 = AtomicU32::new(0);
/// APIC id + 1 of the AP in each slot; 0 = slot not (yet) filled.
static AP_IDS: [AtomicU32; MAX_APS] = [const { AtomicU32::new(0) }; MAX_APS];

/// First Rust code of an AP; `slot` < MAX_APS (checked by entry.s).
#[no_mangle]
extern "C" fn probe_ap_main(slot: u32) -> ! {
    if let Some(entry) = AP_IDS.get(slot as usize) {
        entry.store(apic::id() + 1, Ordering::Release);
    }
    AP_ARRIVED.fetch_add(1, Ordering::Release);
    cpu::halt_forever()
}

/// APIC ids of the CPUs that came online, sorted.
pub struct Cpus {
    ids: [u32; MAX_CPUS],
    count: usize,
}

impl Cpus {
    pub fn ids(&self) -> &[u32] {
        &self.ids[..self.count]
    }

    /// Two CPUs with one APIC id: a VMM bug worth failing on.
    pub fn has_duplicates(&self) -> bool {
        self.ids().windows(2).any(|pair| pair[0] == pair[1])
    }
}

/// Start all APs and collect the APIC ids of every online CPU. `expected`
/// (from the MP table, 0 if none) only makes the wait more patient.
pub fn bring_up(info: &BootInfo, expected: u32) -> Result<Cpus, &'static str> {
    let page = pick_trampoline_page(info).ok_or("no free page for ap trampoline")?;
    copy_trampoline(page);

    apic::enable();
    apic::send_ipi(ICR_INIT_ALL_BUT_SELF)?;
    delay(INIT_DELAY);
    for _ in 0..2 {
        apic::send_ipi(ICR_SIPI_ALL_BUT_SELF | (page / PAGE) as u32)?;
        delay(SIPI_DELAY);
    }
    wait_until_quiet(expected);
    collect()
}

/// A page inside RAM and clear of the boot info; 0x8000 if possible.
fn pick_trampoline_page(info: &BootInfo) -> Option<u64> {
    core::iter::once(PREFERRED_TRAMPOLINE)
        .chain(TRAMPOLINE_PAGES.map(|n| n * PAGE))
        .find(|&page| page_is_free(info, page))
}

fn page_is_free(info: &BootInfo, page: u64) -> bool {
    let end = page + PAGE;
    let in_ram = info
        .e820()
        .iter()
        .any(|e| e.is_ram() && e.addr <= page && end <= e.end());
    let clear = info
        .sources()
        .iter()
        .all(|&(start, len)| end <= start || start.saturating_add(len) <= page);
    in_ram && clear
}

fn copy_trampoline(page: u64) {
    let start = core::ptr::addr_of!(probe_trampoline_start);
    let len = core::ptr::addr_of!(probe_trampoline_end) as usize - start as usize;
    // SAFETY: the trampoline is far smaller than a page, and the page is
    // RAM that nothing else uses (pick_trampoline_page).
    unsafe { core::ptr::copy_nonoverlapping(start, page as *mut u8, len) }
}

fn delay(iterations: u32) {
    for i in 0..iterations {
        core::hint::black_box(i);
    }
}

/// Wait until neither a slot claim nor an arrival has happened for
/// QUIET_POLLS polls (PATIENT_QUIET_POLLS while CPUs are still missing).
fn wait_until_quiet(expected: u32) {
    let activity = || {
        PROBE_AP_NEXT
            .load(Ordering::Acquire)
            .wrapping_add(AP_ARRIVED.load(Ordering::Acquire))
    };
    let mut seen = activity();
    let mut quiet = 0;
    loop {
        let now = activity();
        if now != seen {
            seen = now;
            quiet = 0;
            continue;
        }
        quiet += 1;
        let all_in = 1 + AP_ARRIVED.load(Ordering::Acquire) >= expected;
        // With an MP table the count is known: stop as soon as all are in
        // (polls are costly where instructions are emulated).
        if quiet >= PATIENT_QUIET_POLLS || (all_in && (expected > 0 || quiet >= QUIET_POLLS)) {
            return;
        }
    }
}

fn collect() -> Result<Cpus, &'static str> {
    if PROBE_AP_NEXT.load(Ordering::Acquire) as usize > MAX_APS {
        return Err("more than 64 cpus");
    }
    let mut cpus = Cpus {
        ids: [0; MAX_CPUS],
        count: 1,
    };
    cpus.ids[0] = apic::id();
    for entry in &AP_IDS {
        let stored = entry.load(Ordering::Acquire);
        if stored != 0 {
            cpus.ids[cpus.count] = stored - 1;
            cpus.count += 1;
        }
    }
    insertion_sort(&mut cpus.ids[..cpus.count]);
    Ok(cpus)
}

/// At most 64 ids: a plain insertion sort is all that is needed.
fn insertion_sort(ids: &mut [u32]) {
    for i in 1..ids.len() {
        let mut j = i;
        while j > 0 && ids[j - 1] > ids[j] {
            ids.swap(j - 1, j);
            j -= 1;
        }
    }
}
