//! The PC's CMOS real-time clock (an MC146818 at ports 0x70/0x71): the
//! host's UTC time, 114 bytes of CMOS RAM, no interrupts.
//!
//! Why: stock kernels (Debian's, for one) carry the rtc_cmos driver, and
//! without ACPI to say otherwise x86 Linux assumes the clock is there. Ports
//! with nothing behind them read 0xFF, which is "update in progress" forever:
//! the driver polled it for 4.9-5.3 s of every boot in the rig before giving
//! up ("rtc_cmos: broken or not accessible"; QEMU microvm, with no RTC
//! either, pays the same). With a clock it answers in a few reads, and the
//! guest gets /dev/rtc0.
//!
//! The time is the host's, shifted by whatever the guest set (hwclock,
//! an NTP daemon's 11-minute mode): writes to the time registers move an
//! offset, never the host clock. No periodic, alarm or update interrupts
//! (IRQ 8 never fires): alarm registers are plain storage.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::devices::bus::BusDevice;

/// Index port 0x70 (bit 7: NMI mask, ignored), data port 0x71.
pub const CMOS_PORT_BASE: u64 = 0x70;
pub const CMOS_PORT_LEN: u64 = 2;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
/// The century byte where PC firmware keeps it (ACPI's usual FADT.century).
const REG_CENTURY: u8 = 0x32;

/// Register A: 32.768 kHz time base, 1024 Hz rate; bit 7 (update in
/// progress) is never set: reads are consistent at any time.
const A_DEFAULT: u8 = 0x26;
const A_UPDATE_IN_PROGRESS: u8 = 0x80;
/// Register B: 24-hour mode, BCD; bit 2 = binary, bit 1 = 24-hour.
const B_DEFAULT: u8 = 0x02;
const B_BINARY: u8 = 0x04;
const B_24_HOUR: u8 = 0x02;
const HOUR_PM: u8 = 0x80;
/// Register D: the battery is fine, the time and RAM are valid.
const D_VALID: u8 = 0x80;

/// A broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DateTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 1 = Sunday, as the RTC counts.
    weekday: u32,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of `days_from_civil`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl DateTime {
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rest = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: rest / 3600,
            minute: rest / 60 % 60,
            second: rest % 60,
            // 1970-01-01 was a Thursday (5 when Sunday is 1).
            weekday: ((days + 4).rem_euclid(7) + 1) as u32,
        }
    }

    fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour * 3600 + self.minute * 60 + self.second)
    }
}

fn host_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub struct Cmos {
    index: u8,
    ram: [u8; 128],
    /// Seconds the guest's clock is ahead of the host's.
    offset: i64,
    /// The clock's source; the host's UTC time outside tests.
    now: fn() -> i64,
}

/// The clock's state for snapshots: the guest's offset from host time
/// travels, so a migrated guest's clock keeps what it set.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CmosState {
    index: u8,
    ram: Vec<u8>,
    offset: i64,
}

impl Default for Cmos {
    fn default() -> Self {
        Self::new()
    }
}

impl Cmos {
    pub fn new() -> Self {
        Self::with_clock(host_now)
    }

    fn with_clock(now: fn() -> i64) -> Self {
        let mut ram = [0u8; 128];
        ram[usize::from(REG_A)] = A_DEFAULT;
        ram[usize::from(REG_B)] = B_DEFAULT;
        Self {
            index: 0,
            ram,
            offset: 0,
            now,
        }
    }

    pub fn save(&self) -> CmosState {
        CmosState {
            index: self.index,
            ram: self.ram.to_vec(),
            offset: self.offset,
        }
    }

    /// Fails on a RAM image of the wrong size (a corrupt state file).
    pub fn restore(&mut self, saved: &CmosState) -> Result<(), String> {
        self.ram = saved
            .ram
            .as_slice()
            .try_into()
            .map_err(|_| format!("CMOS RAM of {} bytes, not 128", saved.ram.len()))?;
        self.index = saved.index & 0x7f;
        self.offset = saved.offset;
        Ok(())
    }

    fn time(&self) -> DateTime {
        DateTime::from_unix((self.now)() + self.offset)
    }

    /// A value as register B says the guest wants numbers: BCD or binary.
    fn encode(&self, value: u32) -> u8 {
        let v = value as u8;
        if self.ram[usize::from(REG_B)] & B_BINARY != 0 {
            v
        } else {
            (v / 10) << 4 | (v % 10)
        }
    }

    fn decode(&self, value: u8) -> u32 {
        if self.ram[usize::from(REG_B)] & B_BINARY != 0 {
            u32::from(value)
        } else {
            u32::from(value >> 4) * 10 + u32::from(value & 0x0f)
        }
    }

    fn encode_hour(&self, hour: u32) -> u8 {
        if self.ram[usize::from(REG_B)] & B_24_HOUR != 0 {
            return self.encode(hour);
        }
        let h12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(h12) | if hour >= 12 { HOUR_PM } else { 0 }
    }

    fn decode_hour(&self, value: u8) -> u32 {
        if self.ram[usize::from(REG_B)] & B_24_HOUR != 0 {
            return self.decode(value);
        }
        let h12 = self.decode(value & !HOUR_PM) % 12;
        h12 + if value & HOUR_PM != 0 { 12 } else { 0 }
    }

    fn read_register(&self, reg: u8) -> u8 {
        let t = self.time();
        match reg {
            REG_SECONDS => self.encode(t.second),
            REG_MINUTES => self.encode(t.minute),
            REG_HOURS => self.encode_hour(t.hour),
            REG_WEEKDAY => self.encode(t.weekday),
            REG_DAY => self.encode(t.day),
            REG_MONTH => self.encode(t.month),
            REG_YEAR => self.encode(t.year.rem_euclid(100) as u32),
            REG_CENTURY => self.encode(t.year.div_euclid(100) as u32),
            REG_A => self.ram[usize::from(REG_A)] & !A_UPDATE_IN_PROGRESS,
            // No interrupt is ever pending.
            REG_C => 0,
            REG_D => D_VALID,
            _ => self.ram[usize::from(reg & 0x7f)],
        }
    }

    /// A write to a time register sets the guest's clock: the offset moves
    /// so that the field reads back as written (the others keep going).
    fn set_time_field(&mut self, reg: u8, value: u8) {
        let mut t = self.time();
        match reg {
            REG_SECONDS => t.second = self.decode(value).min(59),
            REG_MINUTES => t.minute = self.decode(value).min(59),
            REG_HOURS => t.hour = self.decode_hour(value).min(23),
            REG_DAY => t.day = self.decode(value).clamp(1, 31),
            REG_MONTH => t.month = self.decode(value).clamp(1, 12),
            REG_YEAR => t.year = t.year.div_euclid(100) * 100 + i64::from(self.decode(value) % 100),
            REG_CENTURY => t.year = i64::from(self.decode(value)) * 100 + t.year.rem_euclid(100),
            // The weekday follows from the date.
            _ => return,
        }
        self.offset = t.to_unix() - (self.now)();
    }

    fn write_register(&mut self, reg: u8, value: u8) {
        match reg {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
            | REG_YEAR | REG_CENTURY => self.set_time_field(reg, value),
            REG_A => self.ram[usize::from(REG_A)] = value & !A_UPDATE_IN_PROGRESS,
            REG_C | REG_D => {}
            _ => self.ram[usize::from(reg & 0x7f)] = value,
        }
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            0 => self.index,
            _ => self.read_register(self.index),
        };
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            0 => self.index = value & 0x7f,
            _ => self.write_register(self.index, value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-05 13:45:07 UTC, a Saturday.
    const NOW: i64 = 1_796_478_307;

    fn cmos() -> Cmos {
        Cmos::with_clock(|| NOW)
    }

    fn reg(c: &mut Cmos, r: u8) -> u8 {
        c.write(0, &[r | 0x80]);
        let mut b = [0u8];
        c.read(1, &mut b);
        b[0]
    }

    fn set(c: &mut Cmos, r: u8, v: u8) {
        c.write(0, &[r]);
        c.write(1, &[v]);
    }

    #[test]
    fn dates_round_trip() {
        for secs in [0, 951_782_400, NOW, 4_102_444_800, -86_400] {
            assert_eq!(DateTime::from_unix(secs).to_unix(), secs);
        }
        let t = DateTime::from_unix(951_782_400); // 2000-02-29, a Tuesday
        assert_eq!((t.year, t.month, t.day, t.weekday), (2000, 2, 29, 3));
    }

    #[test]
    fn the_time_reads_in_bcd_and_24_hours() {
        let mut c = cmos();
        let got: Vec<u8> = [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32]
            .iter()
            .map(|&r| reg(&mut c, r))
            .collect();
        assert_eq!(got, [0x07, 0x45, 0x13, 0x07, 0x05, 0x12, 0x26, 0x20]);
        assert_eq!(reg(&mut c, REG_A) & A_UPDATE_IN_PROGRESS, 0, "never UIP");
        assert_eq!(reg(&mut c, REG_D), D_VALID);
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let mut c = cmos();
        set(&mut c, REG_B, B_BINARY);
        assert_eq!(reg(&mut c, REG_MINUTES), 45);
        assert_eq!(reg(&mut c, REG_HOURS), 1 | HOUR_PM);
    }

    #[test]
    fn setting_the_clock_moves_an_offset() {
        let mut c = cmos();
        set(&mut c, REG_YEAR, 0x30);
        set(&mut c, REG_HOURS, 0x02);
        assert_eq!(reg(&mut c, REG_YEAR), 0x30);
        assert_eq!(reg(&mut c, REG_HOURS), 0x02);
        assert_eq!(reg(&mut c, REG_MINUTES), 0x45, "other fields keep going");
        let t = c.time();
        assert_eq!((t.year, t.month, t.day, t.hour), (2030, 12, 5, 2));
    }

    #[test]
    fn ram_keeps_what_is_written() {
        let mut c = cmos();
        set(&mut c, 0x0f, 0x0a);
        set(&mut c, 0x7f, 0x55);
        assert_eq!((reg(&mut c, 0x0f), reg(&mut c, 0x7f)), (0x0a, 0x55));
        assert_eq!(reg(&mut c, REG_C), 0, "no interrupt flags");
    }

    #[test]
    fn a_restored_clock_keeps_the_guests_time_and_ram() {
        let mut a = cmos();
        set(&mut a, REG_YEAR, 0x30);
        set(&mut a, 0x40, 0x99);
        let saved = a.save();
        let mut b = cmos();
        b.restore(&saved).unwrap();
        assert_eq!((reg(&mut b, REG_YEAR), reg(&mut b, 0x40)), (0x30, 0x99));
        let mut short = saved.clone();
        short.ram.truncate(5);
        assert!(b.restore(&short).is_err(), "a short RAM image is refused");
    }
}
