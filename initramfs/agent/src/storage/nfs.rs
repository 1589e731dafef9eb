//! NFS pools: the export is mounted by the kernel's NFS client with
//! mount(2) directly (the appliance has no mount.nfs). The kernel parses
//! text options itself; for NFSv4 it needs only the server's address
//! (`addr=`), for v3 also `mountaddr=` (it asks the server's rpcbind for
//! the ports). Mounts are `soft` with short timeouts: when the export goes
//! away, I/O on it fails with EIO after `timeo`/`retrans` (a VM sees disk
//! errors, the agent an error answer) instead of waiting forever, which a
//! `hard` mount would.

use std::ffi::CString;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};

use crate::store::Paths;

/// Default options: about 5 + 10 + 15 s before an operation fails.
const DEFAULT_OPTIONS: &str = "soft,timeo=50,retrans=2";

/// Where pool `name` is mounted: under the run directory, so a reboot
/// (a new tmpfs) never finds a stale mount point.
pub fn mount_point(paths: &Paths, name: &str) -> PathBuf {
    paths.run.join("pools").join(name)
}

/// The file system type and option string mount(2) gets.
fn mount_data(
    ip: &str,
    version: Option<&str>,
    options: Option<&str>,
) -> Result<(&'static str, String), String> {
    let version = version.unwrap_or("4.2");
    let fstype = match version {
        "4" | "4.0" | "4.1" | "4.2" => "nfs4",
        "3" => "nfs",
        other => {
            return Err(format!(
                "NFS version '{other}' is not one of 3, 4, 4.1, 4.2"
            ))
        }
    };
    let mut data = format!("vers={version},addr={ip},{DEFAULT_OPTIONS}");
    if fstype == "nfs" {
        data.push_str(&format!(",mountaddr={ip}"));
    }
    if let Some(extra) = options.filter(|o| !o.is_empty()) {
        if extra.contains(['\0', '\n']) {
            return Err("mount options must be one line".into());
        }
        // Later options win in the kernel's parser: these override ours.
        data.push(',');
        data.push_str(extra);
    }
    Ok((fstype, data))
}

/// The server's address as the kernel wants it (an IP, no names).
fn server_ip(server: &str) -> Result<String, String> {
    let addr = (server, 2049)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the NFS server '{server}': {e}"))?
        .next()
        .ok_or_else(|| format!("the NFS server '{server}' has no address"))?;
    Ok(addr.ip().to_string())
}

/// Mounts `server:export` at `at` (created if missing).
pub fn mount(
    server: &str,
    export: &str,
    version: Option<&str>,
    options: Option<&str>,
    at: &Path,
) -> Result<(), String> {
    if !export.starts_with('/') {
        return Err(format!("the export '{export}' must be an absolute path"));
    }
    let ip = server_ip(server)?;
    let (fstype, data) = mount_data(&ip, version, options)?;
    std::fs::create_dir_all(at).map_err(|e| format!("{}: {e}", at.display()))?;
    let cstr =
        |s: &str| CString::new(s).map_err(|_| "a NUL byte in the pool's definition".to_string());
    let source = cstr(&format!("{server}:{export}"))?;
    let target = cstr(&at.to_string_lossy())?;
    let (fstype_c, data_c) = (cstr(fstype)?, cstr(&data)?);
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype_c.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data_c.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let hint = match e.raw_os_error() {
            Some(libc::ENODEV) => " (this kernel has no NFS client)",
            Some(libc::EACCES) => " (the server refuses this node: check its exports)",
            _ => "",
        };
        return Err(format!(
            "mounting {server}:{export} ({fstype} {data}): {e}{hint}"
        ));
    }
    Ok(())
}

/// Unmounts `at`; a server that is gone is detached lazily rather than
/// waited for.
pub fn unmount(at: &Path) -> Result<(), String> {
    let target = CString::new(at.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: target is a NUL-terminated string that outlives the calls.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_FORCE) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EBUSY) {
        return Err(format!("{} is still in use: {e}", at.display()));
    }
    // SAFETY: as above.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    Err(format!("unmounting {}: {e}", at.display()))
}

/// Whether something is mounted at `at`, from /proc/self/mounts (never
/// touching the mount itself, which may hang on a dead server).
pub fn is_mounted(at: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let want = at.to_string_lossy().replace(' ', "\\040");
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .any(|point| point == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_for_each_version() {
        let (t, d) = mount_data("10.1.2.3", None, None).unwrap();
        assert_eq!(
            (t, d.as_str()),
            ("nfs4", "vers=4.2,addr=10.1.2.3,soft,timeo=50,retrans=2")
        );
        let (t, d) = mount_data("10.1.2.3", Some("3"), Some("timeo=10")).unwrap();
        assert_eq!(t, "nfs");
        assert!(d.ends_with(",mountaddr=10.1.2.3,timeo=10"), "{d}");
        assert!(mount_data("1.1.1.1", Some("2"), None).is_err());
        assert!(mount_data("1.1.1.1", None, Some("a\nb")).is_err());
    }
}
