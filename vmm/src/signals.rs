//! SIGTERM and SIGINT end the VM in order (vCPUs stopped, terminal restored,
//! sockets removed) instead of killing the process mid-way.
//!
//! The handler may only do async-signal-safe work, so it writes to an
//! eventfd that the event loop watches.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::signal::register_signal_handler;

static STOP_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let fd = STOP_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; the buffer is a live u64.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// Installs the handlers; the returned eventfd becomes readable on a signal.
pub fn install_stop_handlers() -> std::io::Result<EventFd> {
    let evt = EventFd::new(EFD_NONBLOCK)?;
    STOP_FD.store(evt.as_raw_fd(), Ordering::Relaxed);
    for signal in [libc::SIGTERM, libc::SIGINT] {
        register_signal_handler(signal, on_stop_signal).map_err(std::io::Error::from)?;
    }
    Ok(evt)
}
