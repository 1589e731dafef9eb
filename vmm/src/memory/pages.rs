//! Which guest pages hold something, and moving pages between guest RAM
//! and a file: a snapshot's memory file is guest RAM laid out region after
//! region, written sparsely (pages the guest never touched, and pages of
//! zeros, are holes), read back by its data extents.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

use super::GuestRam;

pub const PAGE_SIZE: u64 = 4096;

/// One bit per page of one region, as KVM's dirty log lays it out.
pub type PageBitmap = Vec<u64>;

/// The host address where a region's memory is mapped.
fn host_base(region: &impl GuestMemoryRegion) -> io::Result<*mut u8> {
    region
        .get_host_address(MemoryRegionAddress(0))
        .map_err(|e| io::Error::other(e.to_string()))
}

/// The pages of each region that the guest (or the VMM) has touched: those
/// present in RAM or swapped out, per /proc/self/pagemap. Untouched pages
/// of an anonymous mapping read as zeros and need not be copied.
pub fn touched(ram: &GuestRam) -> io::Result<Vec<PageBitmap>> {
    let pagemap = File::open("/proc/self/pagemap")?;
    ram.iter()
        .map(|region| {
            let base = host_base(region)? as u64;
            let pages = (region.len() / PAGE_SIZE) as usize;
            let mut bitmap = vec![0u64; pages.div_ceil(64)];
            // 8 bytes per page; read 64 pages (one bitmap word) at a time.
            let mut entries = [0u8; 64 * 8];
            for (word, bits) in bitmap.iter_mut().enumerate() {
                let first = word * 64;
                let n = (pages - first).min(64);
                let at = (base / PAGE_SIZE + first as u64) * 8;
                pagemap.read_exact_at(&mut entries[..n * 8], at)?;
                for (i, e) in entries[..n * 8].chunks_exact(8).enumerate() {
                    let e = u64::from_le_bytes(e.try_into().unwrap());
                    // Bit 63: present; bit 62: swapped.
                    if e >> 62 != 0 {
                        *bits |= 1 << i;
                    }
                }
            }
            Ok(bitmap)
        })
        .collect()
}

/// Calls `each(region index, page index)` for every set bit.
pub fn for_each_page(bitmaps: &[PageBitmap], mut each: impl FnMut(usize, u64)) {
    for (r, bitmap) in bitmaps.iter().enumerate() {
        for (w, &word) in bitmap.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let bit = bits.trailing_zeros() as u64;
                bits &= bits - 1;
                each(r, w as u64 * 64 + bit);
            }
        }
    }
}

/// Where page `page` starts in a region of `len` bytes, if it lies wholly
/// inside. Checked: a migration stream names pages, and a huge number must
/// be refused, not wrap around to a page that exists (found by fuzzing).
fn page_offset(page: u64, len: u64) -> io::Result<u64> {
    page.checked_add(1)
        .and_then(|n| n.checked_mul(PAGE_SIZE))
        .filter(|&end| end <= len)
        .map(|end| end - PAGE_SIZE)
        .ok_or_else(|| io::Error::other("page beyond its region"))
}

/// The bytes of page `page` of region `r`.
pub fn page(ram: &GuestRam, r: usize, page: u64) -> io::Result<&[u8]> {
    let region = ram
        .iter()
        .nth(r)
        .ok_or_else(|| io::Error::other("no such memory region"))?;
    let base = host_base(region)?;
    let at = page_offset(page, region.len())?;
    // SAFETY: the page lies inside the region's mapping, which lives as
    // long as `ram`; guest writes may race with this read (the caller
    // pauses the VM when it needs a consistent copy), which is why only
    // bytes, never typed values, are read.
    Ok(unsafe { std::slice::from_raw_parts(base.add(at as usize), PAGE_SIZE as usize) })
}

/// Writes page `page` of region `r` with `data` (one page).
pub fn write_page(ram: &GuestRam, r: usize, page: u64, data: &[u8]) -> io::Result<()> {
    let region = ram
        .iter()
        .nth(r)
        .ok_or_else(|| io::Error::other("no such memory region"))?;
    if data.len() as u64 != PAGE_SIZE {
        return Err(io::Error::other("not one page of data"));
    }
    let at = page_offset(page, region.len())?;
    region
        .write_slice(data, MemoryRegionAddress(at))
        .map_err(|e| io::Error::other(e.to_string()))
}

/// Where each region starts in a memory file.
fn file_offsets(ram: &GuestRam) -> Vec<u64> {
    let mut at = 0;
    ram.iter()
        .map(|r| {
            let here = at;
            at += r.len();
            here
        })
        .collect()
}

/// Writes the pages set in `bitmaps` that hold anything but zeros; the
/// file is as long as all of RAM, holes elsewhere. Returns bytes written.
pub fn write_file(ram: &GuestRam, bitmaps: &[PageBitmap], file: &File) -> io::Result<u64> {
    let offsets = file_offsets(ram);
    file.set_len(ram.iter().map(|r| r.len()).sum())?;
    let mut written = 0;
    let mut result = Ok(());
    for_each_page(bitmaps, |r, p| {
        if result.is_err() {
            return;
        }
        result = page(ram, r, p).and_then(|bytes| {
            if bytes.iter().all(|&b| b == 0) {
                return Ok(());
            }
            written += PAGE_SIZE;
            file.write_all_at(bytes, offsets[r] + p * PAGE_SIZE)
        });
    });
    result.map(|()| written)
}

/// Reads a memory file's data extents back into `ram` (holes stay zero).
pub fn read_file(ram: &GuestRam, file: &File) -> io::Result<u64> {
    let total: u64 = ram.iter().map(|r| r.len()).sum();
    let len = file.metadata()?.len();
    if len != total {
        return Err(io::Error::other(format!(
            "the memory file holds {len} bytes, the VM has {total} bytes of RAM"
        )));
    }
    let mut read = 0;
    for (region, start) in ram.iter().zip(file_offsets(ram)) {
        for (from, to) in data_extents(file, start, start + region.len())? {
            let mut buf = vec![0u8; (to - from) as usize];
            file.read_exact_at(&mut buf, from)?;
            region
                .write_slice(&buf, MemoryRegionAddress(from - start))
                .map_err(|e| io::Error::other(e.to_string()))?;
            read += to - from;
        }
    }
    Ok(read)
}

/// The data (non-hole) extents of `file` within [start, end), in bounded
/// pieces (SEEK_DATA / SEEK_HOLE).
fn data_extents(file: &File, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    const PIECE: u64 = 8 << 20;
    let seek = |from: u64, whence| {
        // SAFETY: lseek on our own open file.
        let at = unsafe { libc::lseek(file.as_raw_fd(), from as libc::off_t, whence) };
        if at < 0 {
            let e = io::Error::last_os_error();
            // ENXIO: no data (or hole) past `from`.
            if e.raw_os_error() == Some(libc::ENXIO) {
                return Ok(end);
            }
            return Err(e);
        }
        Ok((at as u64).min(end))
    };
    let mut extents = Vec::new();
    let mut at = start;
    while at < end {
        let data = seek(at, libc::SEEK_DATA)?;
        if data >= end {
            break;
        }
        let hole = seek(data, libc::SEEK_HOLE)?;
        let mut from = data;
        while from < hole {
            let to = (from + PIECE).min(hole);
            extents.push((from, to));
            from = to;
        }
        at = hole;
    }
    Ok(extents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress};

    /// Regression (fuzz target `migration`): a page number whose offset
    /// overflows was multiplied unchecked; wrapped, it named page 0.
    #[test]
    fn huge_page_numbers_are_refused_not_wrapped() {
        let ram = GuestRam::from_ranges(&[(GuestAddress(0), 0x4000)]).unwrap();
        let data = [0xa4u8; PAGE_SIZE as usize];
        let huge = u64::MAX / PAGE_SIZE;
        for p in [huge, huge + 1, u64::MAX, 1 << 52] {
            assert!(write_page(&ram, 0, p, &data).is_err(), "page {p:#x}");
            assert!(page(&ram, 0, p).is_err(), "page {p:#x}");
        }
        assert!(write_page(&ram, 0, 4, &data).is_err());
        write_page(&ram, 0, 3, &data).unwrap();
        assert_eq!(page(&ram, 0, 3).unwrap(), &data[..]);
        let first: u8 = ram.read_obj(GuestAddress(0)).unwrap();
        assert_eq!(first, 0, "page 0 untouched");
    }
}
