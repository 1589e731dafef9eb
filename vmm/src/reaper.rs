//! The reaper: a small process that holds the VM's KVM file while the
//! VMM exits, so that KVM's destruction of the VM does not delay the exit
//! a supervisor waits for.
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
//! The reaper is forked before the VMM opens anything of the VM's, and the
//! child at once executes this binary again as `vireo-vmm --reaper-of PID`
//! (`main` checks for that before anything else) with only its end of the
//! socket, as descriptor 3, and /dev/null as its standard streams. So it
//! never holds a disk, a tap, the console's output or the API socket, and
//! it is a process of its own: not a copy of the VMM's memory, and not a
//! second `vireo-vmm` with the VM's command line to whoever reads /proc.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// The first argument that makes `vireo-vmm` a reaper.
pub const REAPER_FLAG: &str = "--reaper-of";
/// The reaper's end of the socket, in the reaper.
const REAPER_FD: RawFd = 3;

/// The VMM's end of the socket to its reaper, once started.
static REAPER: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Starts the reaper. Call early, from the VMM's binary only (a library
/// user's process is not to be forked), before seccomp confines it.
pub fn start() -> io::Result<()> {
    // As PID 1 of its own PID namespace (vireo-jailer's), the VMM is that
    // namespace's init: the kernel makes init's exit wait until every
    // other process of the namespace has gone, so a reaper would only
    // keep the jail (and its cleanup) alive for as long as KVM takes.
    if std::process::id() == 1 {
        return Ok(());
    }
    let exec = Exec::new()?;
    let (ours, theirs) = socket_pair()?;
    // SAFETY: the child runs only async-signal-safe system calls on
    // memory prepared before the fork (`exec_reaper`), then execve or
    // _exit: it never returns into Rust code that could touch state
    // another thread held at the fork.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => exec_reaper(theirs.as_raw_fd(), &exec),
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

fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
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
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// What the forked child executes, built before the fork (the child may
/// not allocate): this binary, by /proc/self/exe (still the binary that
/// runs, even if an upgrade replaced the file) or else by its path.
struct Exec {
    paths: [CString; 2],
    _args: [CString; 3],
    argv: [*const libc::c_char; 4],
}

impl Exec {
    fn new() -> io::Result<Self> {
        let own = std::env::current_exe()
            .ok()
            .and_then(|p| CString::new(p.into_os_string().into_encoded_bytes()).ok())
            .unwrap_or_else(|| c"/proc/self/exe".into());
        let pid = CString::new(std::process::id().to_string()).map_err(io::Error::other)?;
        let args = [c"vireo-vmm".into(), CString::new(REAPER_FLAG)?, pid];
        let argv = [
            args[0].as_ptr(),
            args[1].as_ptr(),
            args[2].as_ptr(),
            std::ptr::null(),
        ];
        Ok(Self {
            paths: [c"/proc/self/exe".into(), own],
            _args: args,
            argv,
        })
    }
}

/// The forked child: its socket end becomes descriptor 3, the standard
/// streams /dev/null, everything else is closed, and the binary runs again
/// as the reaper. Exits 127 if it cannot: the VMM then has no reaper
/// (`hand_over` finds the socket closed) and destroys the VM itself.
fn exec_reaper(sock: RawFd, exec: &Exec) -> ! {
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: async-signal-safe system calls on descriptors this process
    // owns and on strings `exec` prepared before the fork.
    unsafe {
        // A terminal's Ctrl-C or a signal to the whole process group is for
        // the VMM, which stops in order; the reaper goes when the VMM has.
        // (Ignored signals stay ignored across execve.)
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // dup2 leaves the copy open across execve; if the socket already
        // is descriptor 3, its close-on-exec flag is cleared instead.
        let moved = match sock == REAPER_FD {
            true => libc::fcntl(REAPER_FD, libc::F_SETFD, 0),
            false => libc::dup2(sock, REAPER_FD),
        };
        if moved < 0 {
            libc::_exit(127);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        for std_fd in 0..3 {
            if null >= 0 && null != std_fd {
                libc::dup2(null, std_fd);
            }
        }
        libc::syscall(libc::SYS_close_range, REAPER_FD + 1, libc::c_uint::MAX, 0);
        for path in &exec.paths {
            libc::execve(path.as_ptr(), exec.argv.as_ptr(), env.as_ptr());
        }
        libc::_exit(127);
    }
}

/// `vireo-vmm --reaper-of PID`: the reaper's whole life. Keeps what the
/// VMM sends until the VMM has gone, then exits (closing it, which is when
/// KVM destroys the VM). Returns None when the arguments are not a
/// reaper's; `main` asks this before anything else.
pub fn run_if_reaper() -> Option<std::process::ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != REAPER_FLAG {
        return None;
    }
    // SAFETY: prctl on this process with a static name.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"vireo-reaper".as_ptr()) };
    let mut byte = 0u8;
    let mut space = [0u64; 8];
    loop {
        let mut iov = one_byte(&mut byte);
        let mut msg = message(&mut iov, &mut space);
        // SAFETY: `msg` and the buffers it points to live on this stack.
        // Received descriptors stay open until this process exits.
        let n = unsafe { libc::recvmsg(REAPER_FD, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n == 0 || (n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted) {
            return Some(std::process::ExitCode::SUCCESS);
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
/// outlive it.
fn message(iov: &mut libc::iovec, control: &mut [u64]) -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(control) as _;
    msg
}
