//! Elapsed time from the PIT (8254), the one clock the probe may use (no
//! rdtsc): channel 0 free-running from 65536 at 1.193182 MHz, read often
//! enough (at least every 54 ms) that no wrap is missed.

use crate::cpu::{inb, outb};

pub const HZ: u64 = 1_193_182;
const CHANNEL0: u16 = 0x40;
const COMMAND: u16 = 0x43;
/// Channel 0, low then high byte, mode 2 (rate generator), binary.
const MODE2: u8 = 0x34;
const LATCH0: u8 = 0x00;

pub struct Clock {
    last: u16,
    /// PIT ticks since `start`.
    pub ticks: u64,
}

impl Clock {
    pub fn start() -> Self {
        outb(COMMAND, MODE2);
        // A reload value of 0 means 65536.
        outb(CHANNEL0, 0);
        outb(CHANNEL0, 0);
        Self {
            last: read(),
            ticks: 0,
        }
    }

    /// Adds the ticks since the last call.
    pub fn poll(&mut self) -> u64 {
        let now = read();
        // The counter counts down and wraps.
        self.ticks += u64::from(self.last.wrapping_sub(now));
        self.last = now;
        self.ticks
    }
}

fn read() -> u16 {
    outb(COMMAND, LATCH0);
    let lo = inb(CHANNEL0);
    let hi = inb(CHANNEL0);
    u16::from_le_bytes([lo, hi])
}
