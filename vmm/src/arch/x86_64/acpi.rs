//! ACPI tables: how a stock distribution kernel finds the CPUs, the interrupt
//! controllers and the virtio-mmio devices.
//!
//! The MP table and `virtio_mmio.device=` on the command line are enough for
//! a kernel built for us, but distribution kernels (Debian's among them) are
//! built without `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`: they learn of
//! virtio-mmio transports only from ACPI (`LNRO0005` devices in the DSDT), as
//! under Firecracker and QEMU's microvm. The tables describe a "hardware
//! reduced" ACPI platform (no SCI, no PM timer, no fixed-feature registers),
//! plus the PC devices this VMM emulates at their ISA ports — COM1, the i8042
//! and the CMOS clock — so the guest's PNP layer finds them where it looks.
//!
//! Everything sits in the BIOS area (0xE0000, reserved in the e820 map), the
//! RSDP first: Linux finds it there by scanning, and through `boot_params` /
//! PVH `start_info` without scanning.

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{aml, Aml, AmlSink};
use vm_memory::{Bytes, GuestAddress};

use super::layout::{ACPI_TABLES_END, I8042_IRQ, IOAPIC_ADDR, LAPIC_ADDR, RSDP_ADDR, SERIAL_IRQ};
use crate::arch::{MmioDeviceInfo, MmioDeviceKind};
use crate::memory::GuestRam;

const OEM_ID: [u8; 6] = *b"VIREO ";
const OEM_REVISION: u32 = 1;
const DSDT_REVISION: u8 = 6;
/// IA-PC boot architecture flags (FADT): an i8042 is present (without it
/// Linux treats the keyboard controller as absent and never probes it: no
/// Ctrl-Alt-Del), there is no VGA, no MSI, and ASPM is not ours to control.
const IAPC_8042: u16 = 1 << 1;
const IAPC_NO_VGA: u16 = 1 << 2;
const IAPC_NO_MSI: u16 = 1 << 3;
const IAPC_NO_ASPM: u16 = 1 << 4;
/// The CMOS clock's interrupt line.
const RTC_IRQ: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    #[error("the ACPI tables ({0} bytes) do not fit in the BIOS area")]
    TooLarge(u64),
    #[error("the ACPI tables cannot be written to guest memory at {0:#x}")]
    Write(u64),
}

/// Places tables one after the other from the RSDP's end, 16-byte aligned.
struct Placer {
    next: u64,
    tables: Vec<(u64, Vec<u8>)>,
}

impl Placer {
    fn place(&mut self, bytes: Vec<u8>) -> u64 {
        let addr = self.next;
        self.next = (addr + bytes.len() as u64).next_multiple_of(16);
        self.tables.push((addr, bytes));
        addr
    }
}

/// AML already serialized (the devices), placed inside a scope as it is.
struct Raw(Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

fn aml_bytes(item: &dyn Aml) -> Vec<u8> {
    let mut out = Vec::new();
    item.to_aml_bytes(&mut out);
    out
}

/// One `Device` with a hardware ID, a unique ID and its resources.
fn device(name: &str, hid: &dyn Aml, uid: u32, resources: Vec<&dyn Aml>) -> Vec<u8> {
    let template = aml::ResourceTemplate::new(resources);
    aml_bytes(&aml::Device::new(
        name.into(),
        vec![
            &aml::Name::new("_HID".into(), hid),
            &aml::Name::new("_UID".into(), &uid),
            &aml::Name::new("_CRS".into(), &template),
        ],
    ))
}

/// An ISA device at `port` (`len` ports) on interrupt line `irq`.
fn isa_device(name: &str, pnp_id: &str, port: u16, len: u8, irq: u32) -> Vec<u8> {
    let io = aml::IO::new(port, port, 1, len);
    let int = aml::Interrupt::new(true, true, false, false, irq);
    device(name, &aml::EISAName::new(pnp_id), 0, vec![&io, &int])
}

/// The i8042: data port 0x60 and command/status port 0x64, keyboard on IRQ 1.
fn i8042_device() -> Vec<u8> {
    let data = aml::IO::new(0x60, 0x60, 1, 1);
    let command = aml::IO::new(0x64, 0x64, 1, 1);
    let int = aml::Interrupt::new(true, true, false, false, I8042_IRQ);
    device(
        "PS2K",
        &aml::EISAName::new("PNP0303"),
        0,
        vec![&data, &command, &int],
    )
}

/// A virtio-mmio transport: register window and edge-triggered interrupt.
fn virtio_mmio_device(index: usize, d: &MmioDeviceInfo) -> Vec<u8> {
    let window = aml::Memory32Fixed::new(true, d.addr.0 as u32, d.len as u32);
    let int = aml::Interrupt::new(true, true, false, false, d.irq);
    let name = format!("V{index:03X}");
    device(&name, &"LNRO0005", index as u32, vec![&window, &int])
}

fn dsdt(devices: &[MmioDeviceInfo]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(isa_device("COM1", "PNP0501", 0x3f8, 8, SERIAL_IRQ));
    body.extend(i8042_device());
    body.extend(isa_device("RTC0", "PNP0B00", 0x70, 2, RTC_IRQ));
    let virtio = devices
        .iter()
        .filter(|d| d.kind == MmioDeviceKind::VirtioMmio);
    for (i, d) in virtio.enumerate() {
        body.extend(virtio_mmio_device(i, d));
    }
    let devices = Raw(body);
    let scope = aml::Scope::new("_SB_".into(), vec![&devices]);
    let mut table = Sdt::new(
        *b"DSDT",
        36,
        DSDT_REVISION,
        OEM_ID,
        *b"VIREODSD",
        OEM_REVISION,
    );
    table.append_slice(&aml_bytes(&scope));
    table.as_slice().to_vec()
}

fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, *b"VIREOFAC", OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.iapc_boot_arch = (IAPC_8042 | IAPC_NO_VGA | IAPC_NO_MSI | IAPC_NO_ASPM).into();
    fadt.hypervisor_vendor_identity = u64::from_le_bytes(*b"VIREOVMM").into();
    aml_bytes(&fadt.finalize())
}

fn madt(cpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        *b"VIREOAPC",
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_ADDR),
    );
    for cpu in 0..cpus {
        madt.add_structure(ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled));
    }
    // The same IOAPIC ID the MP table gives: the first one past the CPUs.
    madt.add_structure(IoApic::new(cpus, IOAPIC_ADDR, 0));
    aml_bytes(&madt)
}

/// Builds RSDP, XSDT, FADT, MADT and DSDT for `cpus` vCPUs and `devices`, as
/// (guest address, bytes) pairs starting at [`RSDP_ADDR`].
pub fn build(cpus: u8, devices: &[MmioDeviceInfo]) -> Result<Vec<(u64, Vec<u8>)>, AcpiError> {
    let mut placer = Placer {
        next: RSDP_ADDR + Rsdp::len() as u64,
        tables: Vec::new(),
    };
    placer.next = placer.next.next_multiple_of(16);
    let dsdt_addr = placer.place(dsdt(devices));
    let fadt_addr = placer.place(fadt(dsdt_addr));
    let madt_addr = placer.place(madt(cpus));
    let mut xsdt = XSDT::new(OEM_ID, *b"VIREOXSD", OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt_addr = placer.place(aml_bytes(&xsdt));
    if placer.next > ACPI_TABLES_END {
        return Err(AcpiError::TooLarge(placer.next - RSDP_ADDR));
    }
    let mut tables = vec![(RSDP_ADDR, aml_bytes(&Rsdp::new(OEM_ID, xsdt_addr)))];
    tables.extend(placer.tables);
    Ok(tables)
}

/// Writes the tables into guest memory.
pub fn write(mem: &GuestRam, cpus: u8, devices: &[MmioDeviceInfo]) -> Result<(), AcpiError> {
    for (addr, bytes) in build(cpus, devices)? {
        mem.write_slice(&bytes, GuestAddress(addr))
            .map_err(|_| AcpiError::Write(addr))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn virtio(n: u32) -> Vec<MmioDeviceInfo> {
        (0..n)
            .map(|slot| {
                let (addr, len, irq) = super::super::layout::virtio_mmio_slot(slot).unwrap();
                MmioDeviceInfo {
                    kind: MmioDeviceKind::VirtioMmio,
                    addr,
                    len,
                    irq,
                }
            })
            .collect()
    }

    fn table<'a>(tables: &'a [(u64, Vec<u8>)], sig: &[u8; 4]) -> &'a (u64, Vec<u8>) {
        tables.iter().find(|(_, t)| &t[0..4] == sig).unwrap()
    }

    #[test]
    fn every_table_checksums_and_declares_its_length() {
        let tables = build(4, &virtio(3)).unwrap();
        let (addr, rsdp) = &tables[0];
        assert_eq!(*addr, RSDP_ADDR);
        assert_eq!(&rsdp[0..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(rsdp), 0);
        for (_, t) in &tables[1..] {
            let len = u32::from_le_bytes(t[4..8].try_into().unwrap()) as usize;
            assert_eq!(len, t.len(), "{}", String::from_utf8_lossy(&t[0..4]));
            assert_eq!(sum(t), 0, "{}", String::from_utf8_lossy(&t[0..4]));
        }
    }

    #[test]
    fn pointers_lead_from_the_rsdp_to_every_table() {
        let tables = build(2, &virtio(1)).unwrap();
        let rsdp = &tables[0].1;
        let xsdt_addr = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
        let (addr, xsdt) = table(&tables, b"XSDT");
        assert_eq!(*addr, xsdt_addr);
        let entries: Vec<u64> = xsdt[36..]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(
            entries,
            vec![table(&tables, b"FACP").0, table(&tables, b"APIC").0]
        );
        let fadt = &table(&tables, b"FACP").1;
        // X_DSDT sits at offset 140 of the FADT.
        let x_dsdt = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
        assert_eq!(x_dsdt, table(&tables, b"DSDT").0);
    }

    #[test]
    fn madt_lists_each_cpu_and_the_ioapic() {
        let tables = build(4, &[]).unwrap();
        let madt = &table(&tables, b"APIC").1;
        let entries = &madt[44..];
        let kinds: Vec<u8> = {
            let mut kinds = Vec::new();
            let mut at = 0;
            while at < entries.len() {
                kinds.push(entries[at]);
                at += entries[at + 1] as usize;
            }
            kinds
        };
        assert_eq!(kinds, vec![0, 0, 0, 0, 1]);
    }

    #[test]
    fn dsdt_names_each_virtio_transport_and_the_pc_devices() {
        let dsdt = &build(1, &virtio(3)).unwrap()[1].1;
        let count = |needle: &[u8]| dsdt.windows(needle.len()).filter(|w| w == &needle).count();
        assert_eq!(count(b"LNRO0005"), 3);
        for name in [b"V000", b"V001", b"V002", b"COM1", b"PS2K", b"RTC0"] {
            assert_eq!(count(name), 1, "{}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn tables_fit_with_every_virtio_slot_and_many_cpus() {
        let slots = super::super::layout::VIRTIO_MMIO_SLOTS;
        let tables = build(254, &virtio(slots)).unwrap();
        let end = tables
            .iter()
            .map(|(a, t)| a + t.len() as u64)
            .max()
            .unwrap();
        assert!(end <= ACPI_TABLES_END);
    }
}
