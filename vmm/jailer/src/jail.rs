//! The jail's file system, built by the child in its own mount namespace:
//! a small tmpfs holding the VMM binary, the exposed files (bind mounts,
//! read-only unless asked otherwise), device nodes and a /proc of the
//! child's PID namespace; then pivot_root into it, the old root detached
//! and the new one made read-only.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::ptr;

use crate::rewrite::Mapping;
use crate::{JailError, JailSpec};

/// Where the VMM binary appears in the jail.
pub const VMM_IN_JAIL: &str = "/vireo-vmm";

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL")
}

fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), JailError> {
    let src_c = src.map(cstr);
    let target_c = cstr(target);
    let fstype_c = fstype.map(|f| CString::new(f).expect("no NUL"));
    let data_c = data.map(|d| CString::new(d).expect("no NUL"));
    let opt = |c: &Option<CString>| c.as_ref().map_or(ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string alive for the call.
    let rc = unsafe {
        libc::mount(
            opt(&src_c),
            target_c.as_ptr(),
            opt(&fstype_c),
            flags,
            opt(&data_c).cast(),
        )
    };
    if rc != 0 {
        return Err(JailError::last(format!(
            "mount {} on {}",
            src.map_or("-".into(), |s| s.display().to_string()),
            target.display()
        )));
    }
    Ok(())
}

/// `inside` (absolute, in the jail) as a path under `root` on the host.
fn under(root: &Path, inside: &Path) -> PathBuf {
    root.join(inside.strip_prefix("/").unwrap_or(inside))
}

fn create_dirs(path: &Path) -> Result<(), JailError> {
    fs::create_dir_all(path).map_err(|e| JailError::io(format!("create {}", path.display()), e))
}

/// Bind-mounts `host` at `target` (made first), read-only unless `writable`;
/// never setuid or device files through it.
fn bind(host: &Path, target: &Path, is_dir: bool, writable: bool) -> Result<(), JailError> {
    if is_dir {
        create_dirs(target)?;
    } else {
        if let Some(parent) = target.parent() {
            create_dirs(parent)?;
        }
        fs::File::create(target)
            .map_err(|e| JailError::io(format!("create {}", target.display()), e))?;
    }
    mount(Some(host), target, None, libc::MS_BIND | libc::MS_REC, None)?;
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV;
    if !writable {
        flags |= libc::MS_RDONLY;
    }
    mount(None, target, None, flags, None)
}

/// A copy of `host` in the jail's tmpfs that the VM's uid alone reads: a
/// bind mount would show the host file's owner and mode (root, 0600), and
/// a host copy would outlive a VMM killed with its jailer.
fn private_copy(host: &Path, target: &Path, uid: u32, gid: u32) -> Result<(), JailError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let bytes = fs::read(host).map_err(|e| JailError::io(format!("read {}", host.display()), e))?;
    if let Some(parent) = target.parent() {
        create_dirs(parent)?;
    }
    let what = |e| {
        JailError::io(
            format!("copy {} to {}", host.display(), target.display()),
            e,
        )
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(target)
        .map_err(what)?;
    file.write_all(&bytes).map_err(what)?;
    std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(what)
}

/// A character device node like the host's `path`, owned by the VM's ids.
fn device(root: &Path, path: &Path, uid: u32, gid: u32) -> Result<(), JailError> {
    let meta =
        fs::metadata(path).map_err(|e| JailError::io(format!("stat {}", path.display()), e))?;
    if !meta.file_type().is_char_device() {
        return Err(JailError::Invalid(format!(
            "{} is not a character device",
            path.display()
        )));
    }
    let node = under(root, path);
    if let Some(parent) = node.parent() {
        create_dirs(parent)?;
    }
    let c = cstr(&node);
    // SAFETY: c is a NUL-terminated path; mode and rdev are plain integers.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, meta.rdev()) } != 0 {
        return Err(JailError::last(format!("mknod {}", node.display())));
    }
    // SAFETY: as above.
    if unsafe { libc::chown(c.as_ptr(), uid, gid) } != 0 {
        return Err(JailError::last(format!("chown {}", node.display())));
    }
    Ok(())
}

/// The devices a VMM needs when the spec names none.
pub fn default_devices() -> Vec<PathBuf> {
    ["/dev/kvm", "/dev/net/tun"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

/// Builds the jail at `spec.root()` and moves this process into it.
pub fn enter(spec: &JailSpec, maps: &[Mapping]) -> Result<(), JailError> {
    // Nothing mounted from here on may leak back to the host.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    let root = spec.root();
    create_dirs(&root)?;
    mount(
        Some(Path::new("tmpfs")),
        &root,
        Some("tmpfs"),
        libc::MS_NOSUID,
        Some("size=1m,mode=0755"),
    )?;
    bind(
        &spec.exec,
        &under(&root, Path::new(VMM_IN_JAIL)),
        false,
        false,
    )?;
    for m in maps {
        let target = under(&root, &m.inside);
        match m.copied {
            true => private_copy(&m.host, &target, spec.uid, spec.gid)?,
            false => bind(&m.host, &target, m.is_dir, m.writable)?,
        }
    }
    let devices = if spec.devices.is_empty() {
        default_devices()
    } else {
        spec.devices.clone()
    };
    for d in &devices {
        device(&root, d, spec.uid, spec.gid)?;
    }
    let proc_dir = root.join("proc");
    create_dirs(&proc_dir)?;
    let noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount(
        Some(Path::new("proc")),
        &proc_dir,
        Some("proc"),
        noexec,
        None,
    )?;
    pivot(&root)?;
    // The jail's own files are fixed from now on; only rw bind mounts write.
    let ro = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID;
    mount(None, Path::new("/"), None, ro, None)
}

/// pivot_root(".", "."): the old root ends up stacked on the new one and
/// is detached at once, so nothing of the host stays reachable.
fn pivot(root: &Path) -> Result<(), JailError> {
    let c = cstr(root);
    let dot = c".";
    // SAFETY: NUL-terminated paths; pivot_root has no libc wrapper.
    unsafe {
        if libc::chdir(c.as_ptr()) != 0 {
            return Err(JailError::last("chdir into the jail"));
        }
        if libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) != 0 {
            return Err(JailError::last("pivot_root"));
        }
        if libc::umount2(dot.as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(JailError::last("detach the old root"));
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            return Err(JailError::last("chdir /"));
        }
    }
    Ok(())
}
