//! x86_64 boot: memory layout, in-kernel irqchip and PIT, MP table, Linux
//! 64-bit and PVH boot protocols, per-vCPU CPUID and registers.

pub mod acpi;
pub mod boot;
pub mod cpuid;
pub mod layout;
pub mod memory;
pub mod mptable;
pub mod regs;
pub mod vm_state;

use kvm_bindings::{kvm_pit_config, CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestAddress;

use super::{BootEntry, BootSources, MmioDeviceInfo, MmioDeviceKind};
use crate::memory::GuestRam;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("KVM refused to {what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    #[error(transparent)]
    MpTable(#[from] mptable::MpTableError),
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
    #[error("{0} bytes of guest memory cannot be placed in the guest address space")]
    MemoryLayout(u64),
    #[error("the reset-vector stub cannot be written to guest memory")]
    ResetStub,
    #[error("{0} vCPUs do not fit the x86_64 boot tables (at most 254)")]
    VcpuCount(usize),
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

/// KVM GSI of the serial console's interrupt.
pub const SERIAL_GSI: u32 = layout::SERIAL_IRQ;

pub use self::layout::virtio_mmio_slot;

/// GSI an irqfd must use to raise the interrupt line the guest knows as
/// `irq` (the IOAPIC pins are GSIs 0-23).
pub const fn virtio_gsi(irq: u32) -> u32 {
    irq
}

/// Nothing of the VM's interrupt setup has to be kept on x86_64.
pub struct ArchVm;

/// Guest RAM regions for `size` bytes (split around the 32-bit MMIO hole).
pub fn memory_regions(size: u64) -> Result<Vec<(GuestAddress, usize)>, Error> {
    memory::memory_regions(size).ok_or(Error::MemoryLayout(size))
}

/// In-kernel PIC/IOAPIC/LAPIC and PIT, and the pages KVM needs for
/// real-mode emulation on Intel hosts.
pub fn setup_vm_pre_vcpus(vm: &VmFd) -> Result<(), Error> {
    vm.set_tss_address(layout::KVM_TSS_ADDR)
        .map_err(kvm("set the TSS address"))?;
    vm.set_identity_map_address(layout::KVM_IDENTITY_MAP_ADDR)
        .map_err(kvm("set the identity map address"))?;
    vm.create_irq_chip().map_err(kvm("create the irqchip"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm("create the PIT"))
}

/// Nothing to do on x86_64: the interrupt controllers already exist.
pub fn setup_vm_post_vcpus(_vm: &VmFd, _vcpus: &[VcpuFd]) -> Result<ArchVm, Error> {
    Ok(ArchVm)
}

/// The host's CPUID as KVM can offer it, plus what KVM emulates beyond the
/// host (`cpuid::add_kvm_emulated`); asked of KVM once per process.
pub fn supported_cpuid(kvm_fd: &Kvm) -> Result<CpuId, Error> {
    // The host's answer does not change while this process runs; asked
    // once (at `VmCore::build`), an incoming migration does not pay for
    // the ioctl (0.1 ms) again in its switch-over, where it checks the
    // guest's CPUID against it.
    static SUPPORTED: std::sync::OnceLock<CpuId> = std::sync::OnceLock::new();
    if let Some(cpuid) = SUPPORTED.get() {
        return Ok(cpuid.clone());
    }
    let cpuid = ask_supported_cpuid(kvm_fd)?;
    Ok(SUPPORTED.get_or_init(|| cpuid).clone())
}

fn ask_supported_cpuid(kvm_fd: &Kvm) -> Result<CpuId, Error> {
    let mut cpuid = kvm_fd
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm("report supported CPUID"))?;
    let emulated = cpuid::KvmEmulated {
        tsc_deadline: kvm_fd.check_extension(kvm_ioctls::Cap::TscDeadlineTimer),
    };
    cpuid::add_kvm_emulated(&mut cpuid, emulated);
    Ok(cpuid)
}

/// Kernel, initrd, command line (with virtio-mmio devices appended), MP table,
/// ACPI tables and the boot protocol's information block. Kernels built with
/// `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES` find the devices on the command line,
/// distribution kernels in the DSDT; a kernel without ACPI reads the MP table.
pub fn load_guest(
    mem: &GuestRam,
    sources: &BootSources,
    devices: &[MmioDeviceInfo],
    vcpu_count: usize,
) -> Result<BootEntry, Error> {
    let vcpu_count = u8::try_from(vcpu_count).map_err(|_| Error::VcpuCount(vcpu_count))?;
    let mut cmdline = sources.cmdline.clone();
    for d in devices
        .iter()
        .filter(|d| d.kind == MmioDeviceKind::VirtioMmio)
    {
        let arg = format!(
            "virtio_mmio.device={}K@{:#x}:{}",
            d.len >> 10,
            d.addr.0,
            d.irq
        );
        cmdline = if cmdline.is_empty() {
            arg
        } else {
            format!("{cmdline} {arg}")
        };
    }
    mptable::write(mem, layout::EBDA_START, vcpu_count)?;
    acpi::write(mem, vcpu_count, devices)?;
    write_reset_stub(mem)?;
    Ok(boot::load(
        mem,
        &sources.kernel,
        sources.initrd.as_ref(),
        &cmdline,
    )?)
}

/// There is no BIOS behind the reset vector, yet Linux jumps there to reboot
/// when its other ways failed or were skipped: on a hardware-reduced ACPI
/// platform it picks the EFI reboot first (none here), then the BIOS one,
/// and the vCPU would run zeros forever. The stub does what a BIOS's POST
/// would lead to: it pulses the reset line through the i8042 (command 0xFE
/// on port 0x64), which ends the VM as a guest reset.
fn write_reset_stub(mem: &GuestRam) -> Result<(), Error> {
    const STUB: [u8; 7] = [
        0xb0, 0xfe, // mov al, 0xfe
        0xe6, 0x64, // out 0x64, al
        0xf4, // hlt
        0xeb, 0xfd, // jmp to the hlt
    ];
    use vm_memory::Bytes;
    mem.write_slice(&STUB, GuestAddress(layout::RESET_VECTOR))
        .map_err(|_| Error::ResetStub)
}

/// CPUID, MSRs, FPU and LAPIC for every vCPU; registers for the boot vCPU.
/// The others wait for INIT/SIPI from the guest (in-kernel LAPIC). Returns
/// the CPUID the vCPU was given (a snapshot saves it: what KVM reports back
/// may hold more than was asked for on some hosts).
/// Sets on each of `vcpus` the CPUID `configure_vcpu` would; returns it.
pub fn preset_cpuid(
    supported: &CpuId,
    vcpus: &[VcpuFd],
    count: u8,
) -> Result<Vec<Vec<kvm_bindings::kvm_cpuid_entry2>>, Error> {
    let mut given = Vec::with_capacity(vcpus.len());
    for (index, vcpu) in vcpus.iter().enumerate() {
        given.push(
            give_cpuid(supported, vcpu, index as u8, count)?
                .as_slice()
                .to_vec(),
        );
    }
    Ok(given)
}

/// The CPUID vCPU `index` of `count` gets on this host, set on `vcpu`.
fn give_cpuid(supported: &CpuId, vcpu: &VcpuFd, index: u8, count: u8) -> Result<CpuId, Error> {
    let cpuid = cpuid::for_vcpu(supported, index, count);
    vcpu.set_cpuid2(&cpuid).map_err(kvm("set CPUID"))?;
    Ok(cpuid)
}

pub fn configure_vcpu(
    supported: &CpuId,
    vcpu: &VcpuFd,
    index: u8,
    count: u8,
    entry: &BootEntry,
    mem: &GuestRam,
) -> Result<CpuId, Error> {
    let given = give_cpuid(supported, vcpu, index, count)?;
    regs::setup_msrs(vcpu)?;
    regs::setup_fpu(vcpu)?;
    regs::setup_lapic(vcpu)?;
    if index == 0 {
        regs::setup_sregs(mem, vcpu, entry.protocol)?;
        regs::setup_regs(vcpu, entry)?;
    }
    Ok(given)
}
