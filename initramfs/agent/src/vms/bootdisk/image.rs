//! A disk image read through the VMM's own disk code (raw, or qcow2 with
//! its backing chain and the same confinement of backing files), as byte
//! streams the partition and file system parsers take: the whole disk, or
//! one partition of it. Read-only: every write fails.

use std::cell::RefCell;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::rc::Rc;

use vireo_vmm::devices::virtio::block::disk::{self, DiskBackend, DiskFormat, OpenOptions};

use crate::storage::{ResolvedVolume, VolumeFormat};

/// Reads are served from an aligned window this large: the parsers read
/// sectors and blocks one at a time.
const WINDOW: u64 = 256 * 1024;

/// The open image, shared by the views on it (all on one thread).
pub struct Image {
    backend: Box<dyn DiskBackend>,
    window_start: u64,
    window: Vec<u8>,
}

pub type SharedImage = Rc<RefCell<Image>>;

impl Image {
    /// Opens `volume` read-only (a shared lock: refused while a VM writes it).
    pub fn open(volume: &ResolvedVolume) -> Result<SharedImage, String> {
        let opts = OpenOptions {
            format: match volume.format {
                VolumeFormat::Raw => DiskFormat::Raw,
                VolumeFormat::Qcow2 => DiskFormat::Qcow2,
            },
            readonly: true,
            direct: false,
            backing_dirs: volume.backing_dirs.clone(),
        };
        let backend = disk::open(&volume.path, opts).map_err(|e| e.to_string())?;
        Ok(Rc::new(RefCell::new(Image {
            backend,
            window_start: 0,
            window: Vec::new(),
        })))
    }

    pub fn size(&self) -> u64 {
        self.backend.size()
    }

    /// Fills `buf` from `offset`; past the end of the disk is an error.
    pub fn read_at(&mut self, buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.size())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "read past the disk's end")
            })?;
        let mut done = 0;
        while offset < end {
            self.load_window(offset)?;
            let at = (offset - self.window_start) as usize;
            let n = (self.window.len() - at).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&self.window[at..at + n]);
            done += n;
            offset += n as u64;
        }
        Ok(())
    }

    fn load_window(&mut self, offset: u64) -> io::Result<()> {
        let in_window =
            offset >= self.window_start && offset < self.window_start + self.window.len() as u64;
        if in_window {
            return Ok(());
        }
        let start = offset - offset % WINDOW;
        let len = WINDOW.min(self.size() - start) as usize;
        self.window.resize(len, 0);
        self.window_start = start;
        let read = self.backend.read_at(&mut self.window, start);
        if read.is_err() {
            self.window.clear();
        }
        read
    }
}

/// `[start, start + len)` of the image as a seekable stream.
#[derive(Clone)]
pub struct View {
    image: SharedImage,
    start: u64,
    len: u64,
    pos: u64,
}

impl View {
    pub fn whole(image: &SharedImage) -> Self {
        let len = image.borrow().size();
        Self::part(image, 0, len)
    }

    pub fn part(image: &SharedImage, start: u64, len: u64) -> Self {
        Self {
            image: image.clone(),
            start,
            len,
            pos: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Reads exactly `buf.len()` bytes at `offset` inside the view.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset.saturating_add(buf.len() as u64) > self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the partition's end",
            ));
        }
        self.image.borrow_mut().read_at(buf, self.start + offset)
    }
}

impl Read for View {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        self.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for View {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// fatfs wants a writable device even to read; nothing is ever written.
impl Write for View {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the boot disk is opened read-only",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ext4_view::Ext4Read for View {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn core::error::Error + Send + Sync + 'static>> {
        self.read_exact_at(dst, start_byte).map_err(|e| e.into())
    }
}
