//! The arm64 Image header (Documentation/arch/arm64/booting.rst), read for
//! the kernel's memory footprint: linux-loader copies the file, but the
//! kernel also needs room for its BSS and early page tables past it.

use super::{Error, Result};

/// Size of the header at the start of every arm64 Image.
pub const HEADER_LEN: usize = 64;
/// "ARM\x64", little-endian, at offset 56.
const MAGIC: u32 = 0x644d_5241;
/// text_offset that kernels older than 3.17 (image_size 0) assume.
const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

/// The fields of the header that decide where the kernel lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the Image from the 2 MiB aligned base.
    pub text_offset: u64,
    /// Memory the kernel uses from its load address on, BSS included; 0 when
    /// the kernel does not say.
    pub image_size: u64,
}

impl ImageHeader {
    pub fn parse(header: &[u8]) -> Result<Self> {
        if header.len() < HEADER_LEN {
            return Err(Error::KernelHeader);
        }
        let field = |at: usize| -> u64 {
            let bytes = &header[at..at + 8];
            u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
        };
        let magic = u32::from_le_bytes(header[56..60].try_into().expect("4 bytes"));
        if magic != MAGIC {
            return Err(foreign_kernel(header));
        }
        let image_size = field(16);
        // Same rule linux-loader applies when it picks the load address.
        let text_offset = if image_size == 0 {
            LEGACY_TEXT_OFFSET
        } else {
            field(8)
        };
        Ok(Self {
            text_offset,
            image_size,
        })
    }

    /// End of the kernel's memory footprint when its file of `file_len`
    /// bytes is loaded at `load_addr`: the larger of the file and image_size.
    pub fn footprint_end(&self, load_addr: u64, file_len: u64) -> Option<u64> {
        load_addr.checked_add(self.image_size.max(file_len))
    }
}

/// The error for a file without the Image magic, naming what it is when
/// that is a common mistake: an x86 bzImage (the setup header's "HdrS" at
/// 0x202, when the caller read that far: [`PROBE_LEN`]) or an ELF vmlinux.
fn foreign_kernel(header: &[u8]) -> Error {
    if header.starts_with(b"\x7fELF") {
        return Error::KernelIsElf;
    }
    if header.get(0x202..0x206) == Some(b"HdrS") {
        return Error::KernelIsBzImage;
    }
    Error::KernelHeader
}

/// Bytes to read from the start of a kernel file to tell an arm64 Image
/// from an x86 bzImage (whose "HdrS" setup header magic is at 0x202).
pub const PROBE_LEN: usize = 0x206;

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[56..60].copy_from_slice(&MAGIC.to_le_bytes());
        h
    }

    #[test]
    fn reads_offset_and_size() {
        let h = ImageHeader::parse(&header(0, 0x200_0000)).unwrap();
        assert_eq!(h.text_offset, 0);
        assert_eq!(h.image_size, 0x200_0000);
        assert_eq!(h.footprint_end(0x8000_0000, 0x100_0000), Some(0x8200_0000));
        assert_eq!(h.footprint_end(0x8000_0000, 0x300_0000), Some(0x8300_0000));
        assert_eq!(h.footprint_end(u64::MAX, 1), None);
    }

    #[test]
    fn legacy_header_defaults_text_offset() {
        let h = ImageHeader::parse(&header(0x1234, 0)).unwrap();
        assert_eq!(h.text_offset, 0x8_0000);
    }

    #[test]
    fn names_x86_and_elf_kernels() {
        let mut bz = vec![0u8; PROBE_LEN];
        bz[..2].copy_from_slice(b"MZ");
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert!(matches!(
            ImageHeader::parse(&bz),
            Err(Error::KernelIsBzImage)
        ));
        let mut elf = vec![0u8; PROBE_LEN];
        elf[..4].copy_from_slice(b"\x7fELF");
        assert!(matches!(ImageHeader::parse(&elf), Err(Error::KernelIsElf)));
        // An arm64 Image with the EFI stub also starts with "MZ": the Image
        // magic wins.
        let mut efi = header(0, 1).to_vec();
        efi[..2].copy_from_slice(b"MZ");
        efi.resize(PROBE_LEN, 0);
        assert!(ImageHeader::parse(&efi).is_ok());
    }

    #[test]
    fn rejects_short_or_foreign_files() {
        assert!(ImageHeader::parse(&[0u8; 10]).is_err());
        let mut h = header(0, 1);
        h[56] = b'X';
        assert!(ImageHeader::parse(&h).is_err());
    }
}
