//! Giving up root: rlimits, descriptors, capabilities, groups and ids.

use crate::{JailError, JailSpec};

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

fn setrlimit(resource: Resource, value: u64, name: &str) -> Result<(), JailError> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: lim is a valid rlimit for the call.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(JailError::last(format!("set {name}")));
    }
    Ok(())
}

/// The VMM's resource limits: descriptors, file size, no core dumps (they
/// would hold guest memory).
pub fn rlimits(spec: &JailSpec) -> Result<(), JailError> {
    setrlimit(libc::RLIMIT_NOFILE, spec.nofile, "RLIMIT_NOFILE")?;
    if let Some(fsize) = spec.fsize {
        setrlimit(libc::RLIMIT_FSIZE, fsize, "RLIMIT_FSIZE")?;
    }
    setrlimit(libc::RLIMIT_CORE, 0, "RLIMIT_CORE")
}

/// Marks every descriptor but stdio and the spec's `--keep-fd`s
/// close-on-exec, so the VMM inherits nothing of the jailer by accident.
pub fn close_inherited(spec: &JailSpec) -> Result<(), JailError> {
    let dir =
        std::fs::read_dir("/proc/self/fd").map_err(|e| JailError::io("list /proc/self/fd", e))?;
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd > 2 && !spec.keep_fds.contains(&fd) {
            // SAFETY: F_SETFD on a descriptor number; a stale one fails harmlessly.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    for &fd in &spec.keep_fds {
        // SAFETY: as above; the VMM is to inherit this one.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return Err(JailError::last(format!("keep descriptor {fd}")));
        }
    }
    Ok(())
}

/// Drops the capability bounding set and ambient set, the groups, then
/// becomes uid/gid (which clears the permitted and effective sets) with
/// no_new_privs, so nothing the VMM execs can gain privileges back.
pub fn drop_to(uid: u32, gid: u32) -> Result<(), JailError> {
    // SAFETY: prctl/set*id calls with integer arguments only.
    unsafe {
        for cap in 0..64 {
            // EINVAL past the last capability this kernel knows.
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(JailError::last("setgroups"));
        }
        if libc::setresgid(gid, gid, gid) != 0 {
            return Err(JailError::last("setresgid"));
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            return Err(JailError::last("setresuid"));
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(JailError::last("no_new_privs"));
        }
        // Paranoia: root must be gone for good.
        if libc::setresuid(0, 0, 0) == 0 || libc::geteuid() == 0 {
            return Err(JailError::Invalid(
                "still root after dropping privileges".into(),
            ));
        }
    }
    Ok(())
}
