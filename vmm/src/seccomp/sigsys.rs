//! The SIGSYS handler of `--seccomp kill`: names the system call and the
//! thread on stderr, then ends the process. It runs inside a thread that
//! just broke its filter, so it makes only the two calls every filter
//! allows (write, exit_group) and allocates nothing.

use std::cell::Cell;
use std::io;

use super::names;

/// Thread names are at most 15 bytes on Linux (TASK_COMM_LEN - 1).
const NAME_LEN: usize = 16;

thread_local! {
    // A const-initialised Cell without Drop: reading it from the handler
    // is a plain TLS load, no lazy initialisation, no allocation.
    static THREAD_NAME: Cell<[u8; NAME_LEN]> = const { Cell::new([0; NAME_LEN]) };
}

/// Keeps the calling thread's name where the handler can read it without
/// a system call (prctl would itself need allowing in every filter).
pub(super) fn remember_thread_name() {
    let mut buf = [0u8; NAME_LEN];
    let current = std::thread::current();
    let name = current.name().unwrap_or("main").as_bytes();
    let n = name.len().min(NAME_LEN);
    buf[..n].copy_from_slice(&name[..n]);
    THREAD_NAME.with(|c| c.set(buf));
}

pub(super) fn install_handler() -> io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the fields set below make it an
    // SA_SIGINFO handler with an empty mask.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigsys as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `action` is initialised; the old action is not wanted.
    let rc = unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A fixed buffer the message is put together in (no allocation).
struct Message {
    buf: [u8; 160],
    len: usize,
}

impl Message {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_number(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

/// The system call number in a SIGSYS siginfo (`si_syscall`): after
/// si_signo, si_errno, si_code and padding (16 bytes) comes
/// `void *_call_addr`, then `int _syscall` (64-bit layouts).
///
/// # Safety
/// `info` must point to the siginfo the kernel passed to the handler.
unsafe fn syscall_number(info: *const libc::siginfo_t) -> i64 {
    // SAFETY: the caller passes the kernel's siginfo, which is 128 bytes;
    // offset 24 is inside it and 4-byte aligned.
    unsafe { info.cast::<u8>().add(24).cast::<i32>().read() as i64 }
}

fn format_message(thread: &[u8], nr: i64) -> Message {
    let mut m = Message {
        buf: [0; 160],
        len: 0,
    };
    m.push(b"vireo-vmm: seccomp: thread ");
    let end = thread.iter().position(|&b| b == 0).unwrap_or(thread.len());
    m.push(&thread[..end]);
    m.push(b" made a forbidden system call: ");
    match names::name(nr) {
        Some(name) => {
            m.push(name.as_bytes());
            m.push(b" (");
            m.push_number(nr as u64);
            m.push(b")");
        }
        None => m.push_number(nr as u64),
    }
    m.push(b"; exiting\n");
    m
}

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let nr = unsafe { syscall_number(info) };
    let name = THREAD_NAME.with(Cell::get);
    let message = format_message(&name, nr);
    // SAFETY: write(2) and _exit(2) are async-signal-safe and allowed by
    // every filter; the buffer is live for the call.
    unsafe {
        libc::write(2, message.buf.as_ptr().cast(), message.len);
        libc::_exit(super::EXIT_STATUS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_the_call_and_the_thread() {
        let mut name = [0u8; NAME_LEN];
        name[..9].copy_from_slice(b"vireo-blk");
        let m = format_message(&name, libc::SYS_personality);
        let text = std::str::from_utf8(&m.buf[..m.len]).unwrap();
        assert_eq!(
            text,
            format!(
                "vireo-vmm: seccomp: thread vireo-blk made a forbidden system call: personality ({}); exiting\n",
                libc::SYS_personality
            )
        );
        let m = format_message(&[0; NAME_LEN], 99_999);
        let text = std::str::from_utf8(&m.buf[..m.len]).unwrap();
        assert!(text.contains("thread  made a forbidden system call: 99999;"));
    }
}
