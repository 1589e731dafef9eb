//! Console log lines with the time since boot, so boot timings and the
//! agent's restart delay can be read straight from the serial log.

use std::io::Write;

/// Seconds since boot (CLOCK_BOOTTIME, the clock dmesg uses).
pub fn uptime() -> f64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(t) => t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9,
        Err(_) => 0.0,
    }
}

pub fn write(args: std::fmt::Arguments<'_>) {
    // One write per line so lines from several threads do not interleave.
    let line = format!("[{:10.3}] vireo-init: {args}\n", uptime());
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Waits until the console has sent what init wrote. Killing the debug
/// shell, the console's session leader, hangs the tty up, and a hangup
/// throws away output still queued for a slow serial port: without this the
/// first shutdown lines can vanish. Not a tty (tests): returns at once.
pub fn drain() {
    let _ = nix::sys::termios::tcdrain(std::io::stderr());
}

#[macro_export]
macro_rules! log {
    ($($t:tt)*) => { $crate::log::write(format_args!($($t)*)) };
}
