//! The reaper: a small child process that holds the VM's KVM file while
//! the VMM exits, so that KVM's destruction of the VM does not delay the
//! exit a supervisor waits for.
//!
//! KVM destroys a VM when the last reference to its file goes, and does
//! so synchronously: stopping the PIT's worker, the NX-huge-page recovery
//! thread, waiting for SRCU grace periods (48 ms of the VMM's 50 ms
//! teardown on a quiet host, 60-117 ms of it in the nested rig). Once the
//! vCPUs are stopped and the disks flushed nothing of the guest's remains
//! to save, but the exit (and the supervisor's restart of a rebooting VM)
//! waited for that. The VMM hands the VM's file to the reaper just before
//! its final teardown; the reaper lets go of it when the VMM's end of
//! their socket closes (the VMM has exited, however it ended) and exits.
//!
//! The reaper is forked before the VMM opens anything of the VM's and
//! closes every descriptor it inherited: it never holds a disk, a tap, the
//! console's output or the API socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// The VMM's end of the socket to its reaper, once started.
static REAPER: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Forks the reaper. Call early, from the VMM's binary only (a library
/// user's process is not to be forked), before seccomp confines it.
pub fn start() -> io::Result<()> {
    // As PID 1 of its own PID namespace (vireo-jailer's), the VMM is that
    // namespace's init: the kernel makes init's exit wait until every
    // other process of the namespace has gone, so a reaper would only
    // keep the jail (and its cleanup) alive for as long as KVM takes.
    if std::process::id() == 1 {
        return Ok(());
    }
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into `fds`.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and ours alone.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child runs only async-signal-safe system calls (see
    // `reap`) and never returns into Rust code that could touch state
    // another thread held at the fork.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => reap(theirs.as_raw_fd()),
        _ => {
            drop(theirs);
            *lock() = Some(ours);
            Ok(())
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<OwnedFd>> {
    REAPER.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reaper's whole life: drop everything inherited, keep what the VMM
/// sends until it has gone, then exit (closing it, which is when KVM
/// destroys the VM).
fn reap(sock: RawFd) -> ! {
    // SAFETY: raw system calls on descriptors this process owns; nothing
    // allocates or takes a lock.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"vireo-reaper".as_ptr());
        // A terminal's Ctrl-C or a signal to the whole process group is for
        // the VMM, which stops in order; the reaper goes when the VMM has.
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let sock = sock as libc::c_uint;
        if sock > 0 {
            libc::syscall(libc::SYS_close_range, 0, sock - 1, 0);
        }
        libc::syscall(libc::SYS_close_range, sock + 1, libc::c_uint::MAX, 0);
        let mut byte = 0u8;
        let mut space = [0u64; 8];
        loop {
            let mut iov = one_byte(&mut byte);
            let mut msg = message(&mut iov, &mut space);
            // Received descriptors stay open until this process exits.
            let n = libc::recvmsg(sock as RawFd, &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                libc::_exit(0);
            }
        }
    }
}

/// Gives the reaper a reference to `fd`'s file (the VM's). Returns false
/// when there is no reaper or it is gone: the VM is then destroyed here,
/// as before, when the VMM closes the file.
pub fn hand_over(fd: RawFd) -> bool {
    let guard = lock();
    let Some(sock) = guard.as_ref() else {
        return false;
    };
    let mut byte = 0u8;
    let mut space = [0u64; 4];
    // SAFETY: the message and its control buffer live on this stack and
    // are sized for one descriptor (CMSG_SPACE of one int fits in 32 bytes).
    unsafe {
        let mut iov = one_byte(&mut byte);
        let mut msg = message(&mut iov, &mut space);
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) == 1
    }
}

fn one_byte(byte: &mut u8) -> libc::iovec {
    libc::iovec {
        iov_base: (byte as *mut u8).cast(),
        iov_len: 1,
    }
}

/// A message of `iov` with `control` as its control buffer; both must
/// outlive it. (No allocation: the reaper calls it after the fork.)
fn message(iov: &mut libc::iovec, control: &mut [u64]) -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(control) as _;
    msg
}
