//! The host side of a virtio-net device: a tap (by name through
//! /dev/net/tun, or an fd the caller passes) or the /dev/tapN character
//! device of a macvtap link. Each is a file whose reads and writes are
//! whole Ethernet frames, each behind a 12-byte virtio-net header.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::inbox::Inbox;

/// Length of the vnet header both sides use (virtio 1.x `virtio_net_hdr`
/// with `num_buffers`, which is what a VERSION_1 driver always sends).
pub const VNET_HDR_LEN: usize = 12;

// <linux/if_tun.h>, from libc.
use libc::{TUNGETIFF, TUNSETIFF, TUNSETOFFLOAD, TUNSETVNETHDRSZ};
const IFF_TAP: i16 = libc::IFF_TAP as i16;
const IFF_NO_PI: i16 = libc::IFF_NO_PI as i16;
const IFF_VNET_HDR: i16 = libc::IFF_VNET_HDR as i16;
/// TUNSETOFFLOAD bits: what the kernel may hand us (the guest accepts).
pub use libc::{TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6};

const IFNAMSIZ: usize = 16;

/// `struct ifreq` with the flags member of its union; padded to full size.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: i16,
    _pad: [u8; 22],
}

/// What a virtio-net device needs from its host side. A trait so unit tests
/// can stand a socket pair in for a tap.
pub trait NetBackend: Send + Sync {
    /// Frames (with vnet header) are read from and written to this file.
    fn file(&self) -> &File;
    /// Which offloads the kernel may use in frames it hands us (TUN_F_*).
    fn set_offload(&self, flags: u32) -> io::Result<()>;
    /// Frames the VMM hands the guest besides the file's (see inbox.rs).
    fn inbox(&self) -> Option<&Inbox> {
        None
    }
}

/// A tap or macvtap file descriptor set up for 12-byte vnet headers.
pub struct Tap {
    file: File,
    inbox: Inbox,
}

impl NetBackend for Tap {
    fn file(&self) -> &File {
        &self.file
    }

    fn set_offload(&self, flags: u32) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        };
        check(rc)
    }

    fn inbox(&self) -> Option<&Inbox> {
        Some(&self.inbox)
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn ifreq(name: &str, flags: i16) -> io::Result<IfReq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface names are 1 to 15 bytes",
        ));
    }
    let mut req = IfReq {
        name: [0; IFNAMSIZ],
        flags,
        _pad: [0; 22],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    Ok(req)
}

fn open_rw(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

impl Tap {
    /// Attaches to (or creates) the tap interface `name`.
    pub fn open_named(name: &str) -> io::Result<Self> {
        Self::configure(Self::open_named_file(name)?)
    }

    /// The /dev/tapN character device of the macvtap link `name`.
    pub fn open_macvtap(name: &str) -> io::Result<Self> {
        Self::configure(Self::open_macvtap_file(name)?)
    }

    /// The tap `name` opened as `from_fd` expects it, not yet taken over:
    /// a management process (the agent) opens it for a jailed VMM, which
    /// has neither the interface's ownership nor CAP_NET_ADMIN.
    pub fn open_named_file(name: &str) -> io::Result<File> {
        let mut req = ifreq(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)?;
        let file = open_rw(Path::new("/dev/net/tun"))?;
        // SAFETY: TUNSETIFF reads and updates an ifreq we own.
        check(unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) })?;
        Ok(file)
    }

    /// The macvtap link `name`'s character device, as `open_named_file`.
    pub fn open_macvtap_file(name: &str) -> io::Result<File> {
        ifreq(name, 0)?;
        let index = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
            .map_err(|e| io::Error::new(e.kind(), format!("no interface '{name}': {e}")))?;
        let index: u32 = index
            .trim()
            .parse()
            .map_err(|_| io::Error::other("unreadable ifindex"))?;
        let marker = format!("/sys/class/net/{name}/macvtap");
        if !Path::new(&marker).is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{name}' is not a macvtap link"),
            ));
        }
        let file = open_rw(Path::new(&format!("/dev/tap{index}")))?;
        // A macvtap fd is a tap already; this only turns the vnet header on.
        let mut req = ifreq(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)?;
        // SAFETY: as in `open_named_file`.
        check(unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) })?;
        Ok(file)
    }

    /// Takes over `fd`, a tap the caller opened with IFF_TAP, IFF_NO_PI and IFF_VNET_HDR.
    pub fn from_fd(fd: RawFd) -> io::Result<Self> {
        // SAFETY: F_GETFD only asks whether `fd` is open.
        check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
        let mut req = ifreq("x", 0)?;
        // SAFETY: TUNGETIFF fills an ifreq we own; it fails on anything but a tap.
        check(unsafe { libc::ioctl(fd, TUNGETIFF, &mut req) })
            .map_err(|e| io::Error::new(e.kind(), format!("fd {fd} is not a tap: {e}")))?;
        let want = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if req.flags & want != want {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {fd} must be a tap opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR"),
            ));
        }
        // SAFETY: the fd is open and, from here on, ours alone.
        let file = unsafe { File::from_raw_fd(fd) };
        // SAFETY: F_SETFL on our own fd.
        check(unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) })?;
        // SAFETY: F_SETFD on our own fd.
        check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
        Self::configure(file)
    }

    /// 12-byte headers, and no offloads until the driver accepts some.
    fn configure(file: File) -> io::Result<Self> {
        let size: libc::c_int = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads an int we own.
        check(unsafe { libc::ioctl(file.as_raw_fd(), TUNSETVNETHDRSZ, &size) })?;
        let tap = Self {
            file,
            inbox: Inbox::new()?,
        };
        tap.set_offload(0)?;
        Ok(tap)
    }
}
