//! Vireo probe guest: a freestanding x86_64 program that a VMM boots (PVH or
//! Linux 64-bit protocol) to check what it provides: command line, memory
//! map, MP table, vCPUs, usable RAM. It reports one `PROBE ...` fact per
//! line on COM1 and then asks to be shut down. See docs/probe.md.
//!
//! Integer code, port I/O, MMIO and HLT only: no SSE/x87 (the target is
//! soft-float), no timers, no CPUID-dependent paths.

#![no_std]
#![no_main]

mod apic;
mod boot;
mod cpu;
mod dirty;
mod kbd;
mod memtest;
mod mptable;
mod net;
mod options;
mod paging;
mod phys;
mod pit;
mod serial;
mod smp;
mod trap;
mod virtio;

use boot::BootInfo;
use mptable::MpTable;
use serial::report;

/// QEMU's isa-debug-exit; QEMU exits with (value << 1) | 1.
const DEBUG_EXIT_PORT: u16 = 0xF4;
/// i8042 command port; 0xFE pulses CPU reset (vireo-vmm exits on it).
const I8042_COMMAND: u16 = 0x64;
const I8042_RESET: u8 = 0xFE;

/// Everything after the protocol-specific copy of the boot information.
fn run(info: &BootInfo) -> ! {
    report("cmdline ").bytes(info.cmdline()).end();
    let ram_top = report_memory_map(info);
    if let Err(reason) = paging::install(info.e820(), ram_top) {
        fail(reason);
    }
    let expected_cpus = report_mptable();
    report_cpus(info, expected_cpus);
    report_memtest(info);
    if let Err(reason) = virtio::run(info.cmdline()) {
        fail(reason);
    }
    if let Err(reason) = net::run(info.cmdline()) {
        fail(reason);
    }
    match options::spam_mib(info.cmdline()) {
        Ok(0) => {}
        Ok(mib) => {
            serial::spam(mib);
            report("spam mib=").dec(mib).str(" ok").end();
        }
        Err(reason) => fail(reason),
    }
    report("done ok").end();
    match dirty::option(info.cmdline()) {
        Ok(None) => {}
        Ok(Some(workload)) => fail(workload.run(info.e820())),
        Err(reason) => fail(reason),
    }
    // probe.cad: watch the keyboard while holding or ticking.
    let mut cad = options::cad(info.cmdline()).then(kbd::CadWatch::new);
    match options::after(info.cmdline()) {
        options::After::Exit => exit(true),
        options::After::Hold => match cad.as_mut() {
            Some(watch) => hold_until_cad(watch),
            None => cpu::halt_forever(),
        },
        options::After::Tick => tick_forever(cad.as_mut()),
    }
}

/// Spins between ticks: no timer is needed, only visible progress. With a
/// Ctrl-Alt-Del watch, the keyboard is polled between ticks.
fn tick_forever(mut cad: Option<&mut kbd::CadWatch>) -> ! {
    const SPIN: u32 = 1 << 12;
    let mut n = 0u64;
    loop {
        report("tick ").dec(n).end();
        n += 1;
        for i in 0..SPIN {
            core::hint::black_box(i);
            if i % 256 == 0 && cad.as_mut().is_some_and(|w| w.poll()) {
                answer_cad();
            }
        }
    }
}

/// Polls the keyboard (a pause between polls keeps the exits few).
fn hold_until_cad(watch: &mut kbd::CadWatch) -> ! {
    const PAUSE: u32 = 1 << 14;
    loop {
        if watch.poll() {
            answer_cad();
        }
        for i in 0..PAUSE {
            core::hint::black_box(i);
        }
    }
}

/// What a Linux guest's init does on Ctrl-Alt-Del: reboot.
fn answer_cad() -> ! {
    report("ctrl-alt-del").end();
    exit(true)
}

/// Print the e820 and RAM summary lines; returns the top of RAM.
fn report_memory_map(info: &BootInfo) -> u64 {
    let mut total: u64 = 0;
    let mut top = 0;
    for entry in info.e820() {
        report("e820 ")
            .hex(entry.addr)
            .str(" ")
            .hex(entry.end())
            .str(" ")
            .dec(entry.kind.into())
            .end();
        if entry.is_ram() {
            total = total.saturating_add(entry.size);
            top = top.max(entry.end());
        }
    }
    report("ram total=").dec(total).str(" top=").hex(top).end();
    if total == 0 {
        fail("no ram in memory map");
    }
    top
}

/// Print the MP table line; returns its CPU count (0 without a table).
fn report_mptable() -> u32 {
    match mptable::scan() {
        Ok(MpTable::None) => {
            report("mptable none").end();
            0
        }
        Ok(MpTable::Cpus(n)) => {
            report("mptable cpus=").dec(n.into()).end();
            n
        }
        Err(reason) => fail(reason),
    }
}

fn report_cpus(info: &BootInfo, expected: u32) {
    let cpus = match smp::bring_up(info, expected) {
        Ok(cpus) => cpus,
        Err(reason) => fail(reason),
    };
    for &id in cpus.ids() {
        report("cpu apic=").dec(id.into()).end();
    }
    report("cpus online=").dec(cpus.ids().len() as u64).end();
    if cpus.has_duplicates() {
        fail("duplicate apic id");
    }
}

fn report_memtest(info: &BootInfo) {
    match memtest::run(info.e820()) {
        Ok(passed) => report("memtest regions=")
            .dec(passed.regions)
            .str(" probes=")
            .dec(passed.probes)
            .str(" ok")
            .end(),
        Err(bad) => {
            report("memtest fail at=")
                .hex(bad.addr)
                .str(" wrote=")
                .hex(bad.wrote)
                .str(" read=")
                .hex(bad.read)
                .end();
            fail("memtest");
        }
    }
}

/// Report a failure and stop.
pub fn fail(reason: &str) -> ! {
    report("done fail ").str(reason).end();
    exit(false)
}

/// Ask the VMM to end the VM: QEMU's debug-exit port first (0 ok, 1 fail),
/// then an i8042 reset; halt if neither is there.
pub fn exit(ok: bool) -> ! {
    cpu::outb(DEBUG_EXIT_PORT, u8::from(!ok));
    cpu::outb(I8042_COMMAND, I8042_RESET);
    cpu::halt_forever()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let line = report("done fail panic");
    let line = match info.location() {
        Some(at) => line
            .str(" at ")
            .str(at.file())
            .str(":")
            .dec(at.line().into()),
        None => line,
    };
    line.end();
    exit(false)
}
