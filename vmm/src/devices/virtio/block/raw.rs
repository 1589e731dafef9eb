//! A raw image: the file (or block device) is the disk, byte for byte.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use super::disk::{DiskBackend, DiskError};

/// O_DIRECT transfers need buffers, offsets and lengths aligned to the
/// device's logical block; 4 KiB covers every common one.
const DIRECT_ALIGN: usize = 4096;
/// Largest transfer one bounce-buffer pass moves (the request code sends
/// at most 64 KiB at a time).
const DIRECT_CHUNK: usize = 64 << 10;

pub struct RawDisk {
    file: File,
    readonly: bool,
    size: u64,
    /// Set with O_DIRECT: guest data goes through this aligned buffer.
    bounce: Option<AlignedBuf>,
}

impl RawDisk {
    pub fn new(mut file: File, readonly: bool, direct: bool) -> Result<Self, DiskError> {
        // seek works for block devices, whose metadata length is 0.
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|e| DiskError::io(std::path::Path::new("disk"), e))?;
        Ok(Self {
            file,
            readonly,
            size,
            bounce: direct.then(|| AlignedBuf::new(DIRECT_CHUNK)),
        })
    }
}

impl DiskBackend for RawDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn set_locked(&mut self, locked: bool) -> io::Result<()> {
        match locked {
            true => super::disk::lock_image(&self.file, !self.readonly),
            false => super::disk::unlock_image(&self.file),
        }
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let Some(bounce) = self.bounce.as_mut() else {
            return self.file.read_exact_at(buf, offset);
        };
        for (n, piece) in buf.chunks_mut(DIRECT_CHUNK).enumerate() {
            let pos = offset + (n * DIRECT_CHUNK) as u64;
            let aligned = bounce.slice(piece.len())?;
            self.file.read_exact_at(aligned, pos)?;
            piece.copy_from_slice(aligned);
        }
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.readonly {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        let Some(bounce) = self.bounce.as_mut() else {
            return self.file.write_all_at(buf, offset);
        };
        for (n, piece) in buf.chunks(DIRECT_CHUNK).enumerate() {
            let pos = offset + (n * DIRECT_CHUNK) as u64;
            let aligned = bounce.slice(piece.len())?;
            aligned.copy_from_slice(piece);
            self.file.write_all_at(aligned, pos)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.readonly {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        let mode = if unmap {
            libc::FALLOC_FL_PUNCH_HOLE
        } else {
            libc::FALLOC_FL_ZERO_RANGE
        };
        match self.fallocate(mode, offset, len) {
            Err(e) if unsupported(&e) => self.write_zero_bytes(offset, len),
            other => other,
        }
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        match self.fallocate(libc::FALLOC_FL_PUNCH_HOLE, offset, len) {
            // Discard is a hint: where holes cannot be punched, keep the data.
            Err(e) if unsupported(&e) => Ok(()),
            other => other,
        }
    }
}

/// fallocate modes a file system (or block device) may not implement.
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENODEV)
    )
}

impl RawDisk {
    fn fallocate(&self, mode: i32, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        if self.readonly {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        let (off, len) = (offset as libc::off_t, len as libc::off_t);
        // SAFETY: plain syscall on an owned fd; KEEP_SIZE keeps the disk size.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                mode | libc::FALLOC_FL_KEEP_SIZE,
                off,
                len,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn write_zero_bytes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let zeros = vec![0u8; DIRECT_CHUNK];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(DIRECT_CHUNK as u64) as usize;
            self.write_at(&zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

/// A heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: the buffer is owned memory with no thread affinity.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, DIRECT_ALIGN).expect("constant layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Self { ptr, layout }
    }

    /// The first `len` bytes; `len` must be a whole number of sectors.
    fn slice(&mut self, len: usize) -> io::Result<&mut [u8]> {
        if len > self.layout.size() || !len.is_multiple_of(512) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: ptr owns layout.size() >= len initialised bytes.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr, len) })
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}
