//! The interface functions `crate::vm` calls (see the module docs), and the
//! copying of kernel, initrd and FDT into guest memory.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use kvm_ioctls::{DeviceFd, VcpuFd, VmFd};
use linux_loader::loader::pe::PE;
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::fdt::{create_fdt, FdtConfig};
use super::image::{ImageHeader, HEADER_LEN, PROBE_LEN};
use super::layout::{self, kvm_mpidr, mpidr_affinity, GicLayout, DRAM_START, KERNEL_BASE};
use super::{gic, vcpu, Error, Result};
use crate::arch::{BootEntry, BootProtocol, BootSources, MmioDeviceInfo};
use crate::memory::GuestRam;

/// What the VM keeps of the aarch64 setup once the vCPUs and GIC exist.
pub struct ArchVm {
    /// The vGIC device, kept for later state save/restore. Dropping it
    /// would not remove the vGIC (it lives as long as the VM).
    pub gic: DeviceFd,
    /// MPIDR_EL1 of each vCPU as KVM reports it.
    pub mpidrs: Vec<u64>,
}

/// Nothing to do before the vCPUs: KVM sizes the vGIC by the vCPUs that exist.
pub fn setup_vm_pre_vcpus(_vm: &VmFd) -> Result<()> {
    Ok(())
}

/// Initialises every vCPU, checks that KVM numbered them the way the FDT
/// will ([`kvm_mpidr`]), then creates and initialises the GICv3.
pub fn setup_vm_post_vcpus(vm: &VmFd, vcpus: &[VcpuFd]) -> Result<ArchVm> {
    let layout = GicLayout::for_vcpus(vcpus.len())?;
    let target = vcpu::preferred_target(vm)?;
    let mut mpidrs = Vec::with_capacity(vcpus.len());
    for (index, fd) in vcpus.iter().enumerate() {
        vcpu::init(fd, &target, index)?;
        let found = vcpu::read_mpidr(fd)?;
        let expected = kvm_mpidr(index);
        if mpidr_affinity(found) != mpidr_affinity(expected) {
            return Err(Error::MpidrMismatch {
                index,
                expected,
                found,
            });
        }
        mpidrs.push(found);
    }
    let gic = gic::create(vm, &layout)?;
    Ok(ArchVm { gic, mpidrs })
}

/// Loads the kernel at the bottom of RAM, the initrd and the FDT at the top,
/// and returns where the boot vCPU starts.
pub fn load_guest(
    mem: &GuestRam,
    boot: &BootSources,
    devices: &[MmioDeviceInfo],
    vcpu_count: usize,
) -> Result<BootEntry> {
    let mem_size = ram_size(mem);
    let fdt_addr = layout::fdt_addr(mem_size)?;
    let (entry, kernel_end) = load_kernel(mem, &boot.kernel)?;
    if kernel_end > fdt_addr.0 {
        return Err(Error::KernelTooBig {
            end: kernel_end,
            fdt: fdt_addr.0,
        });
    }
    let initrd = match &boot.initrd {
        Some(file) => Some(load_initrd(mem, mem_size, file, kernel_end)?),
        None => None,
    };
    // The MPIDRs setup_vm_post_vcpus has checked the vCPUs against.
    let mpidrs: Vec<u64> = (0..vcpu_count).map(kvm_mpidr).collect();
    let blob = create_fdt(&FdtConfig {
        mem_size,
        mpidrs: &mpidrs,
        cmdline: &boot.cmdline,
        initrd,
        devices,
        gic: GicLayout::for_vcpus(vcpu_count)?,
    })?;
    mem.write_slice(&blob, fdt_addr).map_err(Error::FdtWrite)?;
    Ok(BootEntry {
        entry,
        protocol: BootProtocol::Arm64Image,
        boot_info: fdt_addr,
    })
}

/// Boot registers for vCPU 0. The others stay powered off; PSCI CPU_ON
/// gives them their entry point and context when the guest wakes them.
pub fn configure_vcpu(
    _vm: &VmFd,
    vcpu: &VcpuFd,
    index: usize,
    _vcpu_count: usize,
    entry: &BootEntry,
    _mem: &GuestRam,
) -> Result<()> {
    if index != 0 {
        return Ok(());
    }
    vcpu::set_boot_regs(vcpu, entry.entry, entry.boot_info)
}

/// Bytes of RAM: memory_regions made one region from DRAM_START up.
fn ram_size(mem: &GuestRam) -> u64 {
    mem.last_addr().0 + 1 - DRAM_START
}

/// Copies the Image to KERNEL_BASE + text_offset; returns its entry point
/// (the first byte of the Image) and the end of its memory footprint.
fn load_kernel(mem: &GuestRam, kernel: &File) -> Result<(GuestAddress, u64)> {
    // Enough to name an x86 bzImage too; an Image is longer than that.
    let mut header = [0u8; PROBE_LEN];
    let read = read_up_to(kernel, &mut header).map_err(Error::KernelRead)?;
    if read < HEADER_LEN {
        // Shorter than an Image header: not an Image at all.
        return Err(Error::KernelHeader);
    }
    let header = ImageHeader::parse(&header[..read])?;
    let file_len = kernel.metadata().map_err(Error::KernelRead)?.len();
    let mut image = kernel;
    let loaded = PE::load(mem, Some(GuestAddress(KERNEL_BASE)), &mut image, None)
        .map_err(Error::KernelLoad)?;
    let entry = loaded.kernel_load;
    let end = header
        .footprint_end(entry.0, file_len)
        .ok_or(Error::KernelHeader)?;
    Ok((entry, end))
}

/// Reads from offset 0 until `buf` is full or the file ends; returns the
/// bytes read.
fn read_up_to(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Copies the initrd below the FDT; returns its address and size.
fn load_initrd(
    mem: &GuestRam,
    mem_size: u64,
    initrd: &File,
    kernel_end: u64,
) -> Result<(GuestAddress, u64)> {
    let size = initrd.metadata().map_err(Error::InitrdRead)?.len();
    let addr = layout::initrd_addr(mem_size, size, kernel_end)?;
    let len = usize::try_from(size).map_err(|_| Error::InitrdTooBig { size, mem_size })?;
    let mut file = initrd;
    file.seek(SeekFrom::Start(0)).map_err(Error::InitrdRead)?;
    mem.read_exact_volatile_from(addr, &mut file, len)
        .map_err(Error::InitrdLoad)?;
    Ok((addr, size))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use vmm_sys_util::tempfile::TempFile;

    use super::*;
    use crate::arch::MmioDeviceKind;

    const MIB: u64 = 1 << 20;
    /// Bytes read back for parsing; the test tree is far smaller.
    const FDT_PEEK: usize = 64 * 1024;

    /// A file with `bytes` in it, rewound.
    fn file_with(bytes: &[u8]) -> File {
        let mut f = TempFile::new().unwrap().into_file();
        f.write_all(bytes).unwrap();
        f
    }

    /// A fake arm64 Image: a valid header claiming `image_size`, then a marker.
    fn image(image_size: u64) -> Vec<u8> {
        let mut img = vec![0u8; 4096];
        img[16..24].copy_from_slice(&image_size.to_le_bytes());
        img[56..60].copy_from_slice(b"ARM\x64");
        img[64..72].copy_from_slice(b"KERNEL!!");
        img
    }

    fn guest(mem_size: u64) -> GuestRam {
        GuestRam::from_ranges(&layout::memory_regions(mem_size).unwrap()).unwrap()
    }

    fn read_at(mem: &GuestRam, addr: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
        buf
    }

    #[test]
    fn loads_kernel_initrd_and_fdt() {
        let mem = guest(64 * MIB);
        let serial = MmioDeviceInfo {
            kind: MmioDeviceKind::Serial,
            addr: GuestAddress(layout::SERIAL_MMIO_ADDR),
            len: layout::SERIAL_MMIO_LEN,
            irq: layout::SERIAL_IRQ,
        };
        let boot = BootSources {
            kernel: file_with(&image(8 * MIB)),
            initrd: Some(file_with(b"INITRD-CONTENTS")),
            cmdline: "console=ttyS0".into(),
        };
        let entry = load_guest(&mem, &boot, &[serial], 2).unwrap();
        assert_eq!(entry.entry, GuestAddress(DRAM_START));
        assert_eq!(entry.protocol, BootProtocol::Arm64Image);
        assert_eq!(entry.boot_info, GuestAddress(DRAM_START + 62 * MIB));
        assert_eq!(read_at(&mem, DRAM_START + 64, 8), b"KERNEL!!");

        let blob = read_at(&mem, entry.boot_info.0, FDT_PEEK);
        let fdt = ::fdt::Fdt::new(&blob).unwrap();
        assert_eq!(fdt.chosen().bootargs(), Some("console=ttyS0"));
        assert_eq!(fdt.cpus().count(), 2);
        let chosen = fdt.find_node("/chosen").unwrap();
        let start = chosen
            .property("linux,initrd-start")
            .unwrap()
            .as_usize()
            .unwrap();
        let end = chosen
            .property("linux,initrd-end")
            .unwrap()
            .as_usize()
            .unwrap();
        assert_eq!(end - start, 15);
        assert!(end as u64 <= entry.boot_info.0);
        assert_eq!(read_at(&mem, start as u64, 15), b"INITRD-CONTENTS");
    }

    #[test]
    fn kernel_footprint_must_clear_the_fdt() {
        let mem = guest(32 * MIB);
        let boot = BootSources {
            kernel: file_with(&image(31 * MIB)),
            initrd: None,
            cmdline: String::new(),
        };
        let err = load_guest(&mem, &boot, &[], 1).unwrap_err();
        assert!(matches!(err, Error::KernelTooBig { .. }), "{err}");
    }

    #[test]
    fn initrd_must_clear_the_kernel() {
        let mem = guest(32 * MIB);
        let boot = BootSources {
            kernel: file_with(&image(20 * MIB)),
            initrd: Some(file_with(&vec![0u8; 12 << 20])),
            cmdline: String::new(),
        };
        let err = load_guest(&mem, &boot, &[], 1).unwrap_err();
        assert!(matches!(err, Error::InitrdTooBig { .. }), "{err}");
    }

    #[test]
    fn rejects_a_non_image_kernel() {
        let mem = guest(32 * MIB);
        let mut elf = vec![0u8; 4096];
        elf[..4].copy_from_slice(b"\x7fELF");
        let mut bz = vec![0u8; 8192];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let cases: [(Vec<u8>, fn(&Error) -> bool); 3] = [
            (elf, |e| matches!(e, Error::KernelIsElf)),
            (bz, |e| matches!(e, Error::KernelIsBzImage)),
            (b"\x7fELF".to_vec(), |e| matches!(e, Error::KernelHeader)),
        ];
        for (kernel, expected) in cases {
            let boot = BootSources {
                kernel: file_with(&kernel),
                initrd: None,
                cmdline: String::new(),
            };
            let err = load_guest(&mem, &boot, &[], 1).unwrap_err();
            assert!(expected(&err), "{err}");
        }
    }
}
