//! The jailer's two processes: the parent (host namespaces, root) that
//! owns the cgroup and waits, and the child (PID 1 of a new PID namespace,
//! in the VM's cgroup before it does anything else) that builds the jail
//! and becomes vireo-vmm.

use std::ffi::CString;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::cgroup::Cgroup;
use crate::clone::{fork_jailed, Forked};
use crate::jail::{self, VMM_IN_JAIL};
use crate::rewrite::{mappings, rewrite_args, Mapping};
use crate::{privs, JailError, JailSpec};

/// The child's pid, for the signal handler that passes signals on.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Checks every exposed path exists as the kind it was given as.
fn check_paths(spec: &JailSpec, maps: &[Mapping]) -> Result<(), JailError> {
    let exec_ok = spec.exec.is_file();
    if !exec_ok {
        return Err(JailError::Invalid(format!(
            "{}: not a file",
            spec.exec.display()
        )));
    }
    for m in maps {
        let ok = if m.is_dir {
            m.host.is_dir()
        } else {
            m.host.is_file()
        };
        if !ok {
            let kind = if m.is_dir { "directory" } else { "file" };
            return Err(JailError::Invalid(format!(
                "{}: not a {kind}",
                m.host.display()
            )));
        }
    }
    Ok(())
}

fn join_netns(path: &Path) -> Result<(), JailError> {
    let file =
        fs::File::open(path).map_err(|e| JailError::io(format!("open {}", path.display()), e))?;
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a descriptor we own; the jailer has no other threads.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(JailError::last(format!(
            "join network namespace {}",
            path.display()
        )));
    }
    Ok(())
}

/// Runs the VM jailed; returns the exit status to leave with.
pub fn run(spec: &JailSpec) -> Result<i32, JailError> {
    spec.validate()?;
    let maps = mappings(spec);
    check_paths(spec, &maps)?;
    let cgroup = Cgroup::create(spec)?;
    let result = fork_and_wait(spec, &maps, &cgroup);
    let oom = cgroup.oom_kills();
    cgroup.remove();
    // The jail's mounts died with the child's namespace: only empty
    // directories are left on the host.
    let _ = fs::remove_dir(spec.root());
    let _ = fs::remove_dir(spec.base.join(&spec.id));
    if oom > 0 {
        eprintln!(
            "vireo-jailer: {}: the VMM was stopped by its cgroup's memory limit (oom_kill {oom})",
            spec.id
        );
    }
    result
}

fn fork_and_wait(spec: &JailSpec, maps: &[Mapping], cgroup: &Cgroup) -> Result<i32, JailError> {
    if let Some(ns) = &spec.netns {
        join_netns(ns)?;
    }
    let group = cgroup.v2_dir()?;
    let pid = match fork_jailed(group.as_ref())? {
        Forked::Parent(pid) => pid,
        Forked::Child { in_cgroup } => {
            let err = child(spec, maps, cgroup, in_cgroup);
            eprintln!("vireo-jailer: {}: {err}", spec.id);
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(1) };
        }
    };
    drop(group);
    CHILD.store(pid, Ordering::Relaxed);
    close_handed_fds(spec);
    // SAFETY: the handlers are plain functions.
    unsafe {
        libc::signal(libc::SIGTERM, forward as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, forward as *const () as libc::sighandler_t);
    }
    wait(pid)
}

/// The parent's copies of the `--keep-fd`s are the VMM's alone once the
/// child has its own. Kept here, they would outlive whoever else holds
/// them: a console client's socket whose VMM end the VMM closed would stay
/// open (and registered in the VMM's epoll set, which watches open file
/// descriptions, not numbers), a readiness pipe would not report the
/// VMM's death, a tap would outlive its VMM's close.
fn close_handed_fds(spec: &JailSpec) {
    for &fd in &spec.keep_fds {
        // SAFETY: closing descriptors handed to the child; nothing in the
        // parent uses them.
        unsafe { libc::close(fd) };
    }
}

fn wait(pid: i32) -> Result<i32, JailError> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(JailError::io("wait for the VMM", err));
        }
    }
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Ok(128 + libc::WTERMSIG(status))
    }
}

/// The child: cgroup, namespaces, jail, limits, ids, then exec. Returns
/// only on error.
fn child(spec: &JailSpec, maps: &[Mapping], cgroup: &Cgroup, in_cgroup: bool) -> JailError {
    match prepare(spec, maps, cgroup, in_cgroup) {
        Ok(argv) => exec(&argv),
        Err(e) => e,
    }
}

fn prepare(
    spec: &JailSpec,
    maps: &[Mapping],
    cgroup: &Cgroup,
    in_cgroup: bool,
) -> Result<Vec<CString>, JailError> {
    // First, while the host's /sys/fs/cgroup is in reach: everything from
    // here on, the VMM included, is under the VM's limits.
    if !in_cgroup {
        cgroup.enter()?;
    }
    let flags = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    // SAFETY: unshare with namespace flags only.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(JailError::last("unshare mount, IPC and UTS namespaces"));
    }
    let host = spec.id.as_bytes();
    // SAFETY: a buffer and its length.
    unsafe { libc::sethostname(host.as_ptr().cast(), host.len()) };
    jail::enter(spec, maps)?;
    privs::rlimits(spec)?;
    privs::close_inherited(spec)?;
    privs::drop_to(spec.uid, spec.gid)?;
    // The VMM dies with the jailer: a SIGKILL to the jailer (the agent's
    // hard stop) must not leave the VM running unwatched. Set after the
    // uid change, which clears it; exec of a plain binary keeps it.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        return Err(JailError::last("set the parent-death signal"));
    }
    let mut argv = vec![CString::new(VMM_IN_JAIL).expect("no NUL")];
    for a in rewrite_args(&spec.vmm_args, maps) {
        argv.push(CString::new(a).map_err(|_| JailError::Invalid("NUL in an argument".into()))?);
    }
    Ok(argv)
}

fn exec(argv: &[CString]) -> JailError {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: argv and env are NULL-terminated arrays of live C strings.
    unsafe { libc::execve(argv[0].as_ptr(), ptrs.as_ptr(), env.as_ptr()) };
    JailError::last(format!("exec {VMM_IN_JAIL}"))
}
