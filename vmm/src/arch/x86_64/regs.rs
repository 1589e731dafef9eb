//! Register state a vCPU starts from: segments, control registers, page
//! tables, general registers, FPU, MSRs and the local APIC's LINT pins.

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

use super::layout::{BOOT_STACK_POINTER, GDT_ADDR, PDPT_ADDR, PD_ADDR, PML4_ADDR};
use crate::arch::{BootEntry, BootProtocol};
use crate::memory::GuestRam;

#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    #[error("cannot write boot page tables or GDT into guest memory")]
    GuestWrite,
    #[error("KVM refused vCPU register state ({what}): {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("KVM accepted only {set} of {wanted} boot MSRs")]
    PartialMsrs { set: usize, wanted: usize },
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> RegsError {
    move |source| RegsError::Kvm { what, source }
}

const X86_CR0_PE: u64 = 1;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// GDT slots; selectors are index * 8.
const GDT_CODE: usize = 1;
const GDT_DATA: usize = 2;
const GDT_TSS: usize = 3;

/// A segment descriptor from its base, limit and access/flags word
/// (bits 0-7 access byte, bits 12-15 the flags nibble), in the GDT format.
const fn descriptor(flags: u64, base: u64, limit: u64) -> u64 {
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

/// The kvm_segment KVM wants for the descriptor in GDT slot `index`.
fn segment(index: usize, desc: u64) -> kvm_segment {
    let access = (desc >> 40) & 0xff;
    let flags = (desc >> 52) & 0xf;
    kvm_segment {
        base: ((desc >> 16) & 0xff_ffff) | ((desc >> 32) & 0xff00_0000),
        limit: {
            let raw = ((desc & 0xffff) | ((desc >> 32) & 0xf_0000)) as u32;
            if flags & 0x8 != 0 {
                (raw << 12) | 0xfff
            } else {
                raw
            }
        },
        selector: (index * 8) as u16,
        type_: (access & 0xf) as u8,
        present: ((access >> 7) & 1) as u8,
        dpl: ((access >> 5) & 3) as u8,
        db: ((flags >> 2) & 1) as u8,
        s: ((access >> 4) & 1) as u8,
        l: ((flags >> 1) & 1) as u8,
        g: ((flags >> 3) & 1) as u8,
        avl: (flags & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

/// Flat descriptors: 64-bit code (L=1) for Linux64, 32-bit code (D=1) for PVH.
fn gdt(protocol: BootProtocol) -> [u64; 4] {
    let code = match protocol {
        BootProtocol::Pvh => descriptor(0xc09b, 0, 0xfffff),
        _ => descriptor(0xa09b, 0, 0xfffff),
    };
    [
        0,
        code,
        descriptor(0xc093, 0, 0xfffff),
        descriptor(0x008b, 0, 0xfffff),
    ]
}

/// Identity-maps the first 1 GiB with 2 MiB pages for the Linux 64-bit entry.
fn write_page_tables(mem: &GuestRam) -> Result<(), RegsError> {
    let w = |v: u64, a: u64| {
        mem.write_obj(v, GuestAddress(a))
            .map_err(|_| RegsError::GuestWrite)
    };
    w(PDPT_ADDR | 0x03, PML4_ADDR)?;
    w(PD_ADDR | 0x03, PDPT_ADDR)?;
    for i in 0..512u64 {
        // Present, writable, 2 MiB page.
        w((i << 21) | 0x83, PD_ADDR + i * 8)?;
    }
    Ok(())
}

/// Segment and control registers for the boot vCPU.
pub fn setup_sregs(mem: &GuestRam, vcpu: &VcpuFd, protocol: BootProtocol) -> Result<(), RegsError> {
    let table = gdt(protocol);
    for (i, d) in table.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(GDT_ADDR + i as u64 * 8))
            .map_err(|_| RegsError::GuestWrite)?;
    }
    let mut sregs = vcpu.get_sregs().map_err(kvm("get sregs"))?;
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (table.len() * 8 - 1) as u16;
    let data = segment(GDT_DATA, table[GDT_DATA]);
    sregs.cs = segment(GDT_CODE, table[GDT_CODE]);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = segment(GDT_TSS, table[GDT_TSS]);
    match protocol {
        BootProtocol::Pvh => {
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
        _ => {
            write_page_tables(mem)?;
            sregs.cr3 = PML4_ADDR;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
            sregs.efer |= EFER_LME | EFER_LMA;
        }
    }
    set_sregs(vcpu, &sregs)
}

fn set_sregs(vcpu: &VcpuFd, sregs: &kvm_sregs) -> Result<(), RegsError> {
    vcpu.set_sregs(sregs).map_err(kvm("set sregs"))
}

/// General registers: entry point and the boot-info pointer the protocol names.
pub fn setup_regs(vcpu: &VcpuFd, entry: &BootEntry) -> Result<(), RegsError> {
    let mut regs = kvm_regs {
        rflags: 0x2,
        rip: entry.entry.0,
        ..Default::default()
    };
    match entry.protocol {
        BootProtocol::Pvh => regs.rbx = entry.boot_info.0,
        _ => {
            regs.rsi = entry.boot_info.0;
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
        }
    }
    vcpu.set_regs(&regs).map_err(kvm("set regs"))
}

/// x87 control word and SSE control/status as after FNINIT and reset.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm("set fpu"))
}

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MISC_ENABLE_FAST_STRING: u64 = 1;

/// MSRs a booting kernel expects at their reset values (fast strings on).
pub fn setup_msrs(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let wanted = [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
    ];
    let entries: Vec<kvm_msr_entry> = wanted
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|_| RegsError::PartialMsrs {
        set: 0,
        wanted: entries.len(),
    })?;
    let set = vcpu.set_msrs(&msrs).map_err(kvm("set msrs"))?;
    if set != entries.len() {
        return Err(RegsError::PartialMsrs {
            set,
            wanted: entries.len(),
        });
    }
    Ok(())
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// Wires LINT0 to the PIC (ExtINT) and LINT1 to NMI, as a PC's BIOS does.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let mut lapic = vcpu.get_lapic().map_err(kvm("get lapic"))?;
    for (reg, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i] as u8);
        let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (i, b) in value.to_le_bytes().iter().enumerate() {
            lapic.regs[reg + i] = *b as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(kvm("set lapic"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_round_trip_through_segments() {
        let code64 = gdt(BootProtocol::Linux64)[GDT_CODE];
        assert_eq!(code64, 0x00af_9b00_0000_ffff);
        let s = segment(GDT_CODE, code64);
        assert_eq!((s.l, s.db, s.g, s.present, s.type_), (1, 0, 1, 1, 0xb));
        assert_eq!(s.limit, 0xffff_ffff);
        assert_eq!(s.selector, 8);

        let code32 = gdt(BootProtocol::Pvh)[GDT_CODE];
        assert_eq!(code32, 0x00cf_9b00_0000_ffff);
        let s = segment(GDT_CODE, code32);
        assert_eq!((s.l, s.db), (0, 1));

        let data = segment(GDT_DATA, gdt(BootProtocol::Pvh)[GDT_DATA]);
        assert_eq!((data.type_, data.s, data.db), (3, 1, 1));
    }

    #[test]
    fn page_tables_identity_map_the_first_gigabyte() {
        let mem = GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_page_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_ADDR)).unwrap();
        assert_eq!(pml4 & !0xfff, PDPT_ADDR);
        let last: u64 = mem.read_obj(GuestAddress(PD_ADDR + 511 * 8)).unwrap();
        assert_eq!(last, (511 << 21) | 0x83);
    }
}
