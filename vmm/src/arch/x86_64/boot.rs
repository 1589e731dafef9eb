//! Loading a Linux kernel (ELF vmlinux or bzImage), its initrd and command
//! line, and writing the boot information the chosen protocol hands over.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{BzImage, Elf, KernelLoader, KernelLoaderResult};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, ReadVolatile};

use super::layout::*;
use super::memory::{e820_map, low_memory_end, ram_size, E820Entry};
use crate::arch::{BootEntry, BootProtocol};
use crate::memory::GuestRam;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read the kernel file: {0}")]
    ReadKernel(std::io::Error),
    #[error("the kernel file is not a Linux kernel: it is neither an ELF vmlinux nor a bzImage")]
    NotAKernel,
    #[error("the kernel ELF is invalid or truncated: {0}")]
    BadElf(linux_loader::loader::Error),
    #[error("the bzImage is invalid or truncated: {0}")]
    BadBzImage(linux_loader::loader::Error),
    #[error("the kernel command line is invalid: {0}")]
    Cmdline(linux_loader::cmdline::Error),
    #[error("the kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("cannot read the initrd: {0}")]
    ReadInitrd(std::io::Error),
    #[error(
        "the initrd ({size} bytes) does not fit in guest memory below {limit:#x} after the kernel"
    )]
    InitrdTooLarge { size: u64, limit: u64 },
    #[error("cannot write the {0} into guest memory")]
    GuestWrite(&'static str),
}

/// Magic of `hvm_start_info` (the PVH ABI's "xEn3" with bit 7 of the last byte set).
const PVH_MAGIC: u32 = 0x336e_c578;
/// boot_params header magic "HdrS" and boot flag, for kernels loaded from an ELF.
const HDRS_MAGIC: u32 = 0x5372_6448;
const BOOT_FLAG: u16 = 0xaa55;
/// "Undefined" boot loader id, as the boot protocol asks of loaders without one.
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// A bzImage's 64-bit entry point sits 0x200 past its protected-mode code start.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// Linux's default COMMAND_LINE_SIZE when the kernel does not announce one.
const DEFAULT_CMDLINE_SIZE: usize = 2048;

struct LoadedKernel {
    result: KernelLoaderResult,
    is_elf: bool,
}

fn load_kernel(mem: &GuestRam, kernel: &File) -> Result<LoadedKernel, BootError> {
    let mut file = kernel.try_clone().map_err(BootError::ReadKernel)?;
    let mut magic = [0u8; 4];
    file.seek(SeekFrom::Start(0))
        .map_err(BootError::ReadKernel)?;
    let n = file.read(&mut magic).map_err(BootError::ReadKernel)?;
    let high = Some(GuestAddress(HIGH_MEMORY_START));
    if n == 4 && magic == *b"\x7fELF" {
        let result = Elf::load(mem, None, &mut file, high).map_err(BootError::BadElf)?;
        return Ok(LoadedKernel {
            result,
            is_elf: true,
        });
    }
    match BzImage::load(mem, None, &mut file, high) {
        Ok(result) => Ok(LoadedKernel {
            result,
            is_elf: false,
        }),
        Err(linux_loader::loader::Error::Bzimage(
            linux_loader::loader::bzimage::Error::InvalidBzImage,
        )) => Err(BootError::NotAKernel),
        Err(e) => Err(BootError::BadBzImage(e)),
    }
}

/// Where the initrd goes: as high as the kernel allows in low RAM, page aligned.
fn place_initrd(
    mem: &GuestRam,
    kernel: &KernelLoaderResult,
    size: u64,
) -> Result<GuestAddress, BootError> {
    let addr_max = kernel
        .setup_header
        .map(|h| u64::from(h.initrd_addr_max) + 1)
        .filter(|m| *m > 1)
        .unwrap_or(DEFAULT_INITRD_ADDR_MAX);
    let limit = addr_max.min(low_memory_end(ram_size(mem)));
    let too_large = BootError::InitrdTooLarge { size, limit };
    let start = limit.checked_sub(size).ok_or(too_large)? & !0xfff;
    if start < kernel.kernel_end {
        return Err(BootError::InitrdTooLarge { size, limit });
    }
    Ok(GuestAddress(start))
}

fn load_initrd(
    mem: &GuestRam,
    kernel: &KernelLoaderResult,
    initrd: &File,
) -> Result<(GuestAddress, u64), BootError> {
    let mut file = initrd.try_clone().map_err(BootError::ReadInitrd)?;
    let size = file.metadata().map_err(BootError::ReadInitrd)?.len();
    let addr = place_initrd(mem, kernel, size)?;
    file.seek(SeekFrom::Start(0))
        .map_err(BootError::ReadInitrd)?;
    let mut slice = mem
        .get_slice(addr, size as usize)
        .map_err(|_| BootError::GuestWrite("initrd"))?;
    file.read_exact_volatile(&mut slice).map_err(|e| match e {
        vm_memory::VolatileMemoryError::IOError(io) => BootError::ReadInitrd(io),
        _ => BootError::GuestWrite("initrd"),
    })?;
    Ok((addr, size))
}

fn write_cmdline(
    mem: &GuestRam,
    kernel: &KernelLoaderResult,
    text: &str,
) -> Result<usize, BootError> {
    let max = kernel
        .setup_header
        .map(|h| h.cmdline_size as usize)
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_CMDLINE_SIZE)
        .min(CMDLINE_MAX_SIZE);
    if text.len() >= max {
        return Err(BootError::CmdlineTooLong {
            len: text.len(),
            max: max - 1,
        });
    }
    let mut cmdline = Cmdline::new(CMDLINE_MAX_SIZE).map_err(BootError::Cmdline)?;
    if !text.is_empty() {
        cmdline.insert_str(text).map_err(BootError::Cmdline)?;
    }
    linux_loader::loader::load_cmdline(mem, GuestAddress(CMDLINE_ADDR), &cmdline)
        .map_err(|_| BootError::GuestWrite("kernel command line"))?;
    Ok(text.len())
}

fn write_pvh_info(
    mem: &GuestRam,
    map: &[E820Entry],
    initrd: Option<(GuestAddress, u64)>,
) -> Result<(), BootError> {
    let memmap: Vec<hvm_memmap_table_entry> = map
        .iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.start,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        })
        .collect();
    let modules: Vec<hvm_modlist_entry> = initrd
        .iter()
        .map(|(addr, size)| hvm_modlist_entry {
            paddr: addr.0,
            size: *size,
            ..Default::default()
        })
        .collect();
    let info = hvm_start_info {
        magic: PVH_MAGIC,
        version: 1,
        nr_modules: modules.len() as u32,
        modlist_paddr: if modules.is_empty() {
            0
        } else {
            PVH_MODLIST_ADDR
        },
        cmdline_paddr: CMDLINE_ADDR,
        rsdp_paddr: RSDP_ADDR,
        memmap_paddr: PVH_MEMMAP_ADDR,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    let mut params = BootParams::new(&info, GuestAddress(PVH_INFO_ADDR));
    params.set_sections(&memmap, GuestAddress(PVH_MEMMAP_ADDR));
    if !modules.is_empty() {
        params.set_modules(&modules, GuestAddress(PVH_MODLIST_ADDR));
    }
    PvhBootConfigurator::write_bootparams(&params, mem)
        .map_err(|_| BootError::GuestWrite("PVH start info"))
}

fn write_zero_page(
    mem: &GuestRam,
    kernel: &KernelLoaderResult,
    map: &[E820Entry],
    cmdline_len: usize,
    initrd: Option<(GuestAddress, u64)>,
) -> Result<(), BootError> {
    let mut params = boot_params::default();
    match kernel.setup_header {
        Some(hdr) => params.hdr = hdr,
        None => {
            params.hdr.boot_flag = BOOT_FLAG;
            params.hdr.header = HDRS_MAGIC;
            params.hdr.kernel_alignment = 0x0100_0000;
        }
    }
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr.0 as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    for (slot, e) in params.e820_table.iter_mut().zip(map) {
        *slot = boot_e820_entry {
            addr: e.start,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_entries = map.len() as u8;
    params.acpi_rsdp_addr = RSDP_ADDR;
    let bp = BootParams::new(&params, GuestAddress(ZERO_PAGE_ADDR));
    LinuxBootConfigurator::write_bootparams(&bp, mem)
        .map_err(|_| BootError::GuestWrite("boot_params"))
}

/// Loads kernel, initrd and command line; writes the protocol's boot info.
/// Prefers PVH when an ELF kernel offers it, as it needs no page tables.
pub fn load(
    mem: &GuestRam,
    kernel_file: &File,
    initrd_file: Option<&File>,
    cmdline: &str,
) -> Result<BootEntry, BootError> {
    let LoadedKernel {
        result: kernel,
        is_elf,
    } = load_kernel(mem, kernel_file)?;
    let cmdline_len = write_cmdline(mem, &kernel, cmdline)?;
    let initrd = initrd_file
        .map(|f| load_initrd(mem, &kernel, f))
        .transpose()?;
    let map = e820_map(ram_size(mem));
    match kernel.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(entry) if is_elf => {
            write_pvh_info(mem, &map, initrd)?;
            Ok(BootEntry {
                entry,
                protocol: BootProtocol::Pvh,
                boot_info: GuestAddress(PVH_INFO_ADDR),
            })
        }
        _ => {
            write_zero_page(mem, &kernel, &map, cmdline_len, initrd)?;
            let entry = if is_elf {
                kernel.kernel_load
            } else {
                kernel.kernel_load.unchecked_add(BZIMAGE_64BIT_ENTRY_OFFSET)
            };
            Ok(BootEntry {
                entry,
                protocol: BootProtocol::Linux64,
                boot_info: GuestAddress(ZERO_PAGE_ADDR),
            })
        }
    }
}
