//! Streamed copies of a disk's contents, one chunk in memory at a time:
//! image to image (convert, full clone), image to a stream and back
//! (backups). Chunks that read as zeros are not written to a new image,
//! so copies stay sparse. Progress and cancellation go through the task.

use std::io::{self, Read, Write};
use std::time::Instant;

use sha2::{Digest, Sha256};
use vireo_vmm::devices::virtio::block::disk::DiskBackend;

use crate::tasks::TaskCtx;

/// What one read or write moves.
pub const CHUNK: usize = 1 << 20;

/// Counts a task's bytes and stops it when cancelled.
pub struct Meter<'a> {
    ctx: &'a TaskCtx,
    pub done: u64,
    pub total: u64,
    started: Instant,
}

impl<'a> Meter<'a> {
    pub fn new(ctx: &'a TaskCtx, total: u64) -> Self {
        ctx.progress(0, total);
        Self {
            ctx,
            done: 0,
            total,
            started: Instant::now(),
        }
    }

    /// `n` more bytes done; an error once the task is cancelled.
    pub fn add(&mut self, n: u64) -> Result<(), String> {
        self.done += n;
        self.ctx.progress(self.done, self.total);
        self.ctx.check()
    }

    /// Progress as a callee counts it; an error once cancelled.
    pub fn set(&mut self, done: u64, total: u64) -> Result<(), String> {
        self.total = total;
        self.done = 0;
        self.add(done)
    }

    /// Bytes per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-6)
    }
}

pub fn is_zero(buf: &[u8]) -> bool {
    // Word by word: a gigabyte of zeros is checked in well under a second.
    let words = buf.chunks_exact(8);
    let tail = words.remainder();
    tail.iter().all(|&b| b == 0)
        && words
            .map(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")))
            .all(|w| w == 0)
}

/// Reads `src` from start to end in chunks, handing each (offset, bytes)
/// to `sink` and counting it on `meter`.
fn each_chunk(
    src: &mut dyn DiskBackend,
    meter: &mut Meter,
    mut sink: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let size = src.size();
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0;
    while at < size {
        let n = (size - at).min(CHUNK as u64) as usize;
        src.read_at(&mut buf[..n], at)
            .map_err(|e| format!("reading the disk at {at}: {e}"))?;
        sink(at, &buf[..n])?;
        at += n as u64;
        meter.add(n as u64)?;
    }
    Ok(())
}

/// Copies what `src` holds into `dst` (a new image at least as large,
/// which reads zeros wherever it is not written), then flushes `dst`.
pub fn copy_disk(
    src: &mut dyn DiskBackend,
    dst: &mut dyn DiskBackend,
    meter: &mut Meter,
) -> Result<(), String> {
    each_chunk(src, meter, |at, chunk| match is_zero(chunk) {
        true => Ok(()),
        false => dst
            .write_at(chunk, at)
            .map_err(|e| format!("writing at {at}: {e}")),
    })?;
    dst.flush().map_err(|e| format!("flushing the copy: {e}"))
}

/// Streams the whole of `src` (zeros included) into `out`.
pub fn disk_to_stream(
    src: &mut dyn DiskBackend,
    out: &mut dyn Write,
    meter: &mut Meter,
) -> Result<(), String> {
    each_chunk(src, meter, |_, chunk| {
        out.write_all(chunk)
            .map_err(|e| format!("writing the backup: {e}"))
    })
}

/// Fills `dst` (a new image of `size` bytes) from `input`, leaving the
/// zero chunks unwritten; the stream must end exactly at `size`.
pub fn stream_to_disk(
    input: &mut dyn Read,
    dst: &mut dyn DiskBackend,
    size: u64,
    meter: &mut Meter,
) -> Result<(), String> {
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0;
    while at < size {
        let n = (size - at).min(CHUNK as u64) as usize;
        input
            .read_exact(&mut buf[..n])
            .map_err(|e| format!("reading the backup at {at}: {e}"))?;
        if !is_zero(&buf[..n]) {
            dst.write_at(&buf[..n], at)
                .map_err(|e| format!("writing the disk at {at}: {e}"))?;
        }
        at += n as u64;
        meter.add(n as u64)?;
    }
    let mut extra = [0u8; 1];
    match input.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => return Err("the backup holds more data than the disk's size".into()),
        Err(e) => return Err(format!("reading the end of the backup: {e}")),
    }
    dst.flush().map_err(|e| format!("flushing the disk: {e}"))
}

/// A writer that hashes and counts what passes through it.
pub struct Hashing<W> {
    pub inner: W,
    hash: Sha256,
    pub bytes: u64,
}

impl<W> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    /// The SHA-256 so far, in hex.
    pub fn hex(&self) -> String {
        hex(&self.hash.clone().finalize())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection_and_hashing() {
        assert!(is_zero(&[0; 4099]));
        let mut b = vec![0u8; 4099];
        b[4098] = 1;
        assert!(!is_zero(&b));
        b[4098] = 0;
        b[3] = 1;
        assert!(!is_zero(&b));
        let mut h = Hashing::new(Vec::new());
        h.write_all(b"abc").unwrap();
        assert_eq!(
            h.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.bytes, 3);
    }
}
