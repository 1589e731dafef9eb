//! The jailer's fork: a child that is PID 1 of a new PID namespace and,
//! where the kernel can, born inside the VM's cgroup.
//!
//! Why not fork and then write the child's pid to `cgroup.procs`: that
//! write takes the kernel's global cgroup_threadgroup_rwsem for writing,
//! which waits for an RCU grace period, 6-20 ms on the bench host, and was
//! most of what a jailed start cost (docs/security.md, "Why the jailed start
//! costs what it costs"). `clone3(CLONE_INTO_CGROUP)` (cgroup v2, Linux
//! 5.7) places the child in the group as it is made, under the read side
//! every fork takes anyway. On v1 the child moves itself instead
//! (`Cgroup::enter`), which current kernels do without that lock.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::JailError;

/// `struct clone_args` of clone3(2), up to `cgroup` (Linux 5.7): the libc
/// crate has it for some targets only.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Who we are after [`fork_jailed`].
pub enum Forked {
    /// The parent, with the child's pid.
    Parent(i32),
    /// The child; `in_cgroup` when it was born in the VM's cgroup.
    Child { in_cgroup: bool },
}

/// Forks the child into a new PID namespace, inside the cgroup `group`
/// (an open v2 cgroup directory) when one is given and the kernel can.
///
/// The jailer is single-threaded, so the child may do anything after.
pub fn fork_jailed(group: Option<&OwnedFd>) -> Result<Forked, JailError> {
    if let Some(dir) = group {
        let args = CloneArgs {
            flags: libc::CLONE_NEWPID as u64 | CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: dir.as_raw_fd() as u64,
            ..Default::default()
        };
        // SAFETY: clone3 without CLONE_VM and without a stack is fork(2)
        // with flags: the child runs on a copy of this address space. The
        // size is the struct's, which the kernel checks. Unlike fork(3),
        // libc does not refresh the thread id it caches (musl's raise and
        // abort use it); in the child's new PID namespace that stale id
        // names no process, so an abort there cannot signal the parent.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match pid {
            0 => return Ok(Forked::Child { in_cgroup: true }),
            p if p > 0 => return Ok(Forked::Parent(p as i32)),
            // Older kernels (no clone3, or no CLONE_INTO_CGROUP): the
            // child moves itself, as on v1.
            _ => {}
        }
    }
    // SAFETY: unshare with a namespace flag only. A new PID namespace
    // applies to the next child, which becomes its PID 1.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        return Err(JailError::last("unshare the PID namespace"));
    }
    // SAFETY: the jailer is single-threaded.
    match unsafe { libc::fork() } {
        0 => Ok(Forked::Child { in_cgroup: false }),
        p if p > 0 => Ok(Forked::Parent(p)),
        _ => Err(JailError::last("fork")),
    }
}
