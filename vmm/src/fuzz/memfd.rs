//! Anonymous in-memory files: disk images and backends for the harnesses,
//! so no fuzz input ever touches the host's files.

use std::fs::File;
use std::os::fd::FromRawFd;

/// An empty in-memory file of `len` bytes holding `data` at its start.
pub fn file(data: &[u8], len: u64) -> File {
    // SAFETY: a static NUL-terminated name; the fd is checked and then owned.
    let fd = unsafe { libc::memfd_create(c"vireo-fuzz".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd is fresh and owned by nothing else.
    let f = unsafe { File::from_raw_fd(fd) };
    use std::io::Write;
    (&f).write_all(data).expect("write to a memfd");
    f.set_len(len.max(data.len() as u64)).expect("size a memfd");
    f
}
