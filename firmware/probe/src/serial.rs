//! Polled output on the COM1 16550 UART, and the `PROBE ` report lines.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::cpu::{inb, outb};

const COM1: u16 = 0x3F8;
// Register offsets from COM1.
const THR: u16 = 0; // transmit holding (DLAB=0) / divisor low (DLAB=1)
const IER: u16 = 1; // interrupt enable (DLAB=0) / divisor high (DLAB=1)
const FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;

const LCR_DLAB: u8 = 0x80;
const LCR_8N1: u8 = 0x03;
const LSR_THR_EMPTY: u8 = 0x20;

/// Give up waiting for THR-empty after this many polls and send anyway, so
/// a VMM without a working UART cannot hang the probe.
const MAX_POLLS: u32 = 1 << 20;

/// Whether the last byte written ended a line, so that a failure report
/// cut into the middle of a line (panic, exception) still starts afresh.
static AT_LINE_START: AtomicBool = AtomicBool::new(true);

/// 115200 8N1, no interrupts, FIFOs on. Harmless on UARTs that ignore it.
pub fn init() {
    outb(COM1 + IER, 0);
    outb(COM1 + LCR, LCR_DLAB);
    outb(COM1 + THR, 1); // divisor 1 = 115200 baud
    outb(COM1 + IER, 0);
    outb(COM1 + LCR, LCR_8N1);
    outb(COM1 + FCR, 0x07); // enable and clear FIFOs
    outb(COM1 + MCR, 0x03); // DTR | RTS, OUT2 clear: no IRQ
}

fn write_byte(byte: u8) {
    let mut polls = 0;
    while inb(COM1 + LSR) & LSR_THR_EMPTY == 0 && polls < MAX_POLLS {
        polls += 1;
    }
    outb(COM1 + THR, byte);
}

pub fn write_bytes(bytes: &[u8]) {
    for &byte in bytes {
        write_byte(byte);
    }
    if let Some(&last) = bytes.last() {
        AT_LINE_START.store(last == b'\n', Ordering::Relaxed);
    }
}

/// Prints `mib` MiB of `PROBE spam` lines as fast as the UART takes them:
/// 4 KiB at a time through `rep outsb`, without waiting for THR-empty (a
/// VMM's UART is always ready). For tests of a console nobody reads.
pub fn spam(mib: u64) {
    const LINE: &[u8; 64] = b"PROBE spam 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdef\n";
    let mut page = [0u8; 4096];
    for chunk in page.chunks_mut(LINE.len()) {
        chunk.copy_from_slice(LINE);
    }
    for _ in 0..mib * 256 {
        crate::cpu::outsb(COM1 + THR, &page);
    }
    AT_LINE_START.store(true, Ordering::Relaxed);
}

/// Start a report line: `PROBE ` followed by `text`.
pub fn report(text: &str) -> Line {
    if !AT_LINE_START.load(Ordering::Relaxed) {
        write_bytes(b"\n");
    }
    Line.str("PROBE ").str(text)
}

/// A report line being written; `end` terminates it.
#[must_use = "a report line needs .end()"]
pub struct Line;

impl Line {
    pub fn str(self, text: &str) -> Line {
        self.bytes(text.as_bytes())
    }

    pub fn bytes(self, bytes: &[u8]) -> Line {
        write_bytes(bytes);
        self
    }

    /// Unsigned decimal.
    pub fn dec(self, value: u64) -> Line {
        let mut buf = [0u8; 20];
        let mut pos = buf.len();
        let mut rest = value;
        loop {
            pos -= 1;
            buf[pos] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.bytes(&buf[pos..])
    }

    /// `0x` and lower-case hex digits, no leading zeros.
    pub fn hex(self, value: u64) -> Line {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 18];
        let mut pos = buf.len();
        let mut rest = value;
        loop {
            pos -= 1;
            buf[pos] = DIGITS[(rest & 0xf) as usize];
            rest >>= 4;
            if rest == 0 {
                break;
            }
        }
        pos -= 2;
        buf[pos] = b'0';
        buf[pos + 1] = b'x';
        self.bytes(&buf[pos..])
    }

    pub fn end(self) {
        write_bytes(b"\n");
    }
}
