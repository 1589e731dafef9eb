//! Early mounts and the persistent state disk.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::log;
use crate::modules::Loader;

/// Where the node keeps state; the agent gets it as VIREO_STATE_DIR.
pub const STATE_DIR: &str = "/var/lib/vireo";
/// The filesystem label that marks the state disk.
pub const STATE_LABEL: &str = "VIREO-DATA";

/// What init mounted, in order, so shutdown unmounts in reverse.
/// The links into /proc/self/fd that udev makes on other systems and
/// devtmpfs does not: programs open /dev/stdin by name (the agent hands its
/// nftables rules to `nft -f /dev/stdin`).
fn dev_fd_links() {
    let links = [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ];
    for (target, link) in links {
        match std::os::unix::fs::symlink(target, link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => log!("{link}: {e}"),
        }
    }
}

/// Where the root's bind mount is made before it moves onto `/`.
const NEW_ROOT: &str = "/.root";

/// The initramfs is unpacked into rootfs, the one mount pivot_root(2)
/// refuses to move (EINVAL: it has no parent), and vireo-jailer pivots
/// every VMM into its jail. So init does what switch_root does on other
/// systems, with a bind mount of rootfs itself as the new root: the same
/// files, nothing copied, now an ordinary mount on top of rootfs. Kernel
/// threads share PID 1's root, so the kernel's request_module() and
/// firmware loads see it too.
fn root_off_rootfs() {
    let moved = nix::unistd::mkdir(NEW_ROOT, nix::sys::stat::Mode::from_bits_truncate(0o755))
        .and_then(|()| {
            mount(
                Some("/"),
                NEW_ROOT,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        })
        .and_then(|()| nix::unistd::chdir(NEW_ROOT))
        .and_then(|()| mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>))
        .and_then(|()| nix::unistd::chroot("."))
        .and_then(|()| nix::unistd::chdir("/"));
    match moved {
        Ok(()) => {
            let _ = fs::remove_dir(NEW_ROOT);
        }
        Err(e) => log!("root: cannot move it off rootfs ({e}); VMMs cannot be jailed"),
    }
}

#[derive(Default)]
pub struct Mounts {
    targets: Vec<PathBuf>,
}

impl Mounts {
    fn mount(&mut self, src: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) {
        let _ = fs::create_dir_all(target);
        match mount(Some(src), target, Some(fstype), flags, data) {
            Ok(()) => self.targets.push(target.into()),
            // EBUSY: already mounted (the kernel mounts devtmpfs itself with
            // CONFIG_DEVTMPFS_MOUNT on some configs).
            Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => log!("mount {fstype} on {target}: {e}"),
        }
    }

    /// The root moved off rootfs, then proc, sysfs, devtmpfs (+devpts),
    /// /run and /tmp in RAM, cgroup2.
    pub fn early(&mut self) {
        root_off_rootfs();
        let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        self.mount("proc", "/proc", "proc", nodev, None);
        self.mount("sysfs", "/sys", "sysfs", nodev, None);
        self.mount(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        );
        self.mount(
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("gid=5,mode=620,ptmxmode=666"),
        );
        dev_fd_links();
        let tmp = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        self.mount("tmpfs", "/run", "tmpfs", tmp, Some("mode=0755"));
        self.mount("tmpfs", "/tmp", "tmpfs", tmp, Some("mode=1777"));
        self.mount(
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            nodev,
            Some("nsdelegate"),
        );
    }

    /// Mounts the VIREO-DATA disk at STATE_DIR, or a tmpfs there if there is
    /// none, and says which: losing state at reboot must never be a surprise.
    pub fn state(&mut self, loader: &Loader) {
        match find_state_disk() {
            Some(dev) => {
                loader.load_logged("ext4");
                let dev = dev.to_string_lossy().into_owned();
                self.mount(&dev, STATE_DIR, "ext4", MsFlags::MS_NOATIME, None);
                if self
                    .targets
                    .last()
                    .is_some_and(|t| t == Path::new(STATE_DIR))
                {
                    log!("state: {dev} ({STATE_LABEL}) mounted on {STATE_DIR}: persistent");
                    return;
                }
                log!("state: {dev} ({STATE_LABEL}) did not mount; falling back to RAM");
            }
            None => log!("state: no disk labelled {STATE_LABEL}"),
        }
        self.mount(
            "tmpfs",
            STATE_DIR,
            "tmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0700"),
        );
        log!("state: RAM ONLY on {STATE_DIR}: everything the node stores is lost at power-off");
    }

    /// Unmounts in reverse order; the kernel-owned ones (proc, sys, dev)
    /// may stay busy, and that is harmless once everything is synced.
    pub fn unmount_all(&mut self) {
        while let Some(t) = self.targets.pop() {
            if let Err(e) = umount2(&t, MntFlags::empty()) {
                if t == Path::new(STATE_DIR) {
                    log!("umount {}: {e}; detaching", t.display());
                    let _ = umount2(&t, MntFlags::MNT_DETACH);
                }
            }
        }
    }
}

/// Block devices as sysfs lists them (disks and partitions), as /dev paths.
fn block_devices() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/sys/class/block") else {
        return Vec::new();
    };
    let mut devs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("sr"))
        .map(|n| Path::new("/dev").join(n))
        .collect();
    devs.sort();
    devs
}

/// Disks show up asynchronously after their controller's driver loads, so
/// look a few times over about a second before deciding there is none.
fn find_state_disk() -> Option<PathBuf> {
    for wait_ms in [0, 200, 400, 600] {
        thread::sleep(Duration::from_millis(wait_ms));
        for dev in block_devices() {
            if read_label(&dev).as_deref() == Some(STATE_LABEL) {
                return Some(dev);
            }
        }
    }
    None
}

fn read_label(dev: &Path) -> Option<String> {
    let mut f = fs::File::open(dev).ok()?;
    let mut sb = [0u8; 1024];
    f.seek(SeekFrom::Start(1024)).ok()?;
    f.read_exact(&mut sb).ok()?;
    ext_label(&sb)
}

/// The volume label of an ext2/3/4 superblock (the 1 KiB at offset 1024):
/// magic 0xEF53 at 0x38, label (16 bytes, NUL-padded) at 0x78.
pub fn ext_label(sb: &[u8]) -> Option<String> {
    if sb.len() < 0x88 || sb[0x38..0x3a] != [0x53, 0xef] {
        return None;
    }
    let raw = &sb[0x78..0x88];
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let label = std::str::from_utf8(&raw[..end]).ok()?;
    (!label.is_empty()).then(|| label.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_labels() {
        let mut sb = vec![0u8; 1024];
        assert_eq!(ext_label(&sb), None, "no magic");
        sb[0x38] = 0x53;
        sb[0x39] = 0xef;
        assert_eq!(ext_label(&sb), None, "no label");
        sb[0x78..0x78 + 10].copy_from_slice(b"VIREO-DATA");
        assert_eq!(ext_label(&sb).as_deref(), Some("VIREO-DATA"));
        sb[0x78..0x88].copy_from_slice(b"sixteen-chars-xx");
        assert_eq!(ext_label(&sb).as_deref(), Some("sixteen-chars-xx"));
        assert_eq!(ext_label(&sb[..100]), None, "short read");
    }
}
