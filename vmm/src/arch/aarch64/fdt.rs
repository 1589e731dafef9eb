//! The flattened device tree the arm64 kernel boots from.
//!
//! This is pure data, with no KVM call, so it is built and tested on every
//! host. The tree describes a `linux,dummy-virt` machine: RAM, the vCPUs
//! (brought up through PSCI), the GICv3, the architected timer, the 16550
//! UART and the virtio-mmio transports, plus `/chosen` for the command line
//! and the initrd.

use vm_fdt::{FdtWriter, FdtWriterNode};
use vm_memory::GuestAddress;

use super::layout::{mpidr_affinity, GicLayout, DRAM_START, FDT_MAX_SIZE};
use super::{Error, Result};
use crate::arch::{MmioDeviceInfo, MmioDeviceKind};

/// phandle of the interrupt controller every device points to.
const GIC_PHANDLE: u32 = 1;
/// phandle of the fixed clock that feeds the UART.
const UART_CLOCK_PHANDLE: u32 = 2;

/// First cell of a GIC interrupt specifier.
const GIC_FDT_IRQ_TYPE_SPI: u32 = 0;
const GIC_FDT_IRQ_TYPE_PPI: u32 = 1;
/// Third cell: trigger type (include/dt-bindings/interrupt-controller/irq.h).
const IRQ_TYPE_EDGE_RISING: u32 = 1;
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;

/// Architected timer PPIs, in the order the binding lists them: secure
/// physical, non-secure physical, virtual, hypervisor physical.
const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
/// PPI of the vGIC maintenance interrupt (used by a nested hypervisor).
const GIC_MAINTENANCE_PPI: u32 = 9;

/// The 16550's traditional 1.8432 MHz input clock. The emulated UART ignores
/// the divisor, but the 8250 driver needs a clock to compute one.
const UART_CLOCK_HZ: u32 = 1_843_200;

/// arm64's COMMAND_LINE_SIZE, NUL included: the kernel cuts longer bootargs.
pub const CMDLINE_MAX_LEN: usize = 2048;

/// Everything the device tree describes.
#[derive(Clone, Copy, Debug)]
pub struct FdtConfig<'a> {
    /// RAM size in bytes; RAM starts at [`DRAM_START`].
    pub mem_size: u64,
    /// MPIDR_EL1 of each vCPU, boot vCPU first.
    pub mpidrs: &'a [u64],
    pub cmdline: &'a str,
    /// Start and size of the initrd in guest memory.
    pub initrd: Option<(GuestAddress, u64)>,
    /// The UART(s) and virtio-mmio transports.
    pub devices: &'a [MmioDeviceInfo],
    pub gic: GicLayout,
}

/// Builds the device tree blob for `cfg`.
pub fn create_fdt(cfg: &FdtConfig) -> Result<Vec<u8>> {
    if cfg.cmdline.len() >= CMDLINE_MAX_LEN {
        return Err(Error::CmdlineTooLong(cfg.cmdline.len()));
    }
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;

    write_memory(&mut fdt, cfg.mem_size)?;
    write_cpus(&mut fdt, cfg.mpidrs)?;
    write_psci(&mut fdt)?;
    write_gic(&mut fdt, &cfg.gic)?;
    write_timer(&mut fdt)?;
    write_uart_clock(&mut fdt)?;
    for dev in devices_of(cfg.devices, MmioDeviceKind::Serial) {
        write_serial(&mut fdt, dev)?;
    }
    for dev in devices_of(cfg.devices, MmioDeviceKind::VirtioMmio) {
        write_virtio_mmio(&mut fdt, dev)?;
    }
    // The first UART is the console.
    let stdout = devices_of(cfg.devices, MmioDeviceKind::Serial).next();
    write_chosen(&mut fdt, cfg, stdout)?;

    fdt.end_node(root)?;
    let blob = fdt.finish()?;
    if blob.len() as u64 > FDT_MAX_SIZE {
        return Err(Error::FdtTooBig(blob.len()));
    }
    Ok(blob)
}

fn devices_of(
    devices: &[MmioDeviceInfo],
    kind: MmioDeviceKind,
) -> impl Iterator<Item = &MmioDeviceInfo> {
    devices.iter().filter(move |d| d.kind == kind)
}

/// Opens `name@addr`, the unit address being the first `reg` address.
fn begin_at(fdt: &mut FdtWriter, name: &str, addr: u64) -> Result<FdtWriterNode> {
    Ok(fdt.begin_node(&format!("{name}@{addr:x}"))?)
}

fn write_memory(fdt: &mut FdtWriter, mem_size: u64) -> Result<()> {
    let node = begin_at(fdt, "memory", DRAM_START)?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[DRAM_START, mem_size])?;
    Ok(fdt.end_node(node)?)
}

fn write_cpus(fdt: &mut FdtWriter, mpidrs: &[u64]) -> Result<()> {
    let cpus = fdt.begin_node("cpus")?;
    // Two address cells so the reg can hold Aff3 (MPIDR bits 39:32) too.
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 0)?;
    for &mpidr in mpidrs {
        let affinity = mpidr_affinity(mpidr);
        let cpu = begin_at(fdt, "cpu", affinity)?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,arm-v8")?;
        // Secondaries start powered off; the guest wakes them with PSCI CPU_ON.
        fdt.property_string("enable-method", "psci")?;
        fdt.property_u64("reg", affinity)?;
        fdt.end_node(cpu)?;
    }
    Ok(fdt.end_node(cpus)?)
}

fn write_psci(fdt: &mut FdtWriter) -> Result<()> {
    let node = fdt.begin_node("psci")?;
    let compatible = ["arm,psci-0.2", "arm,psci"].map(String::from).to_vec();
    fdt.property_string_list("compatible", compatible)?;
    // KVM implements PSCI itself and takes the calls as HVCs from EL1.
    fdt.property_string("method", "hvc")?;
    Ok(fdt.end_node(node)?)
}

fn write_gic(fdt: &mut FdtWriter, gic: &GicLayout) -> Result<()> {
    let node = begin_at(fdt, "intc", gic.dist_addr)?;
    fdt.property_string("compatible", "arm,gic-v3")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_null("interrupt-controller")?;
    // Address cells and an identity `ranges` let a future ITS child node be
    // addressed like the root's, and dtc expects them on interrupt providers.
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_null("ranges")?;
    // One contiguous redistributor region covers every vCPU.
    fdt.property_u32("#redistributor-regions", 1)?;
    let reg = [
        gic.dist_addr,
        gic.dist_size,
        gic.redist_addr,
        gic.redist_size,
    ];
    fdt.property_array_u64("reg", &reg)?;
    let maintenance = [
        GIC_FDT_IRQ_TYPE_PPI,
        GIC_MAINTENANCE_PPI,
        IRQ_TYPE_LEVEL_HIGH,
    ];
    fdt.property_array_u32("interrupts", &maintenance)?;
    fdt.property_phandle(GIC_PHANDLE)?;
    Ok(fdt.end_node(node)?)
}

fn write_timer(fdt: &mut FdtWriter) -> Result<()> {
    let node = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    let irqs: Vec<u32> = TIMER_PPIS
        .iter()
        .flat_map(|&ppi| [GIC_FDT_IRQ_TYPE_PPI, ppi, IRQ_TYPE_LEVEL_HIGH])
        .collect();
    fdt.property_array_u32("interrupts", &irqs)?;
    // The counter keeps running in every guest power state KVM offers.
    fdt.property_null("always-on")?;
    Ok(fdt.end_node(node)?)
}

fn write_uart_clock(fdt: &mut FdtWriter) -> Result<()> {
    let node = fdt.begin_node("uartclk")?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", UART_CLOCK_HZ)?;
    fdt.property_string("clock-output-names", "uartclk")?;
    fdt.property_phandle(UART_CLOCK_PHANDLE)?;
    Ok(fdt.end_node(node)?)
}

/// `interrupts` of an MMIO device. Edge-triggered because the VMM raises
/// them through irqfds, which deliver a pulse, not a held line.
fn spi_edge(dev: &MmioDeviceInfo) -> [u32; 3] {
    [GIC_FDT_IRQ_TYPE_SPI, dev.irq, IRQ_TYPE_EDGE_RISING]
}

fn write_serial(fdt: &mut FdtWriter, dev: &MmioDeviceInfo) -> Result<()> {
    let node = begin_at(fdt, "serial", dev.addr.0)?;
    fdt.property_string("compatible", "ns16550a")?;
    fdt.property_array_u64("reg", &[dev.addr.0, dev.len])?;
    fdt.property_array_u32("interrupts", &spi_edge(dev))?;
    fdt.property_u32("clocks", UART_CLOCK_PHANDLE)?;
    fdt.property_u32("clock-frequency", UART_CLOCK_HZ)?;
    Ok(fdt.end_node(node)?)
}

fn write_virtio_mmio(fdt: &mut FdtWriter, dev: &MmioDeviceInfo) -> Result<()> {
    let node = begin_at(fdt, "virtio_mmio", dev.addr.0)?;
    fdt.property_string("compatible", "virtio,mmio")?;
    fdt.property_array_u64("reg", &[dev.addr.0, dev.len])?;
    fdt.property_array_u32("interrupts", &spi_edge(dev))?;
    // Guest RAM is ordinary cacheable memory the VMM reads directly.
    fdt.property_null("dma-coherent")?;
    Ok(fdt.end_node(node)?)
}

fn write_chosen(
    fdt: &mut FdtWriter,
    cfg: &FdtConfig,
    stdout: Option<&MmioDeviceInfo>,
) -> Result<()> {
    let node = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", cfg.cmdline)?;
    if let Some(dev) = stdout {
        // Lets `earlycon` with no argument find the UART.
        fdt.property_string("stdout-path", &format!("/serial@{:x}", dev.addr.0))?;
    }
    if let Some((start, size)) = cfg.initrd {
        let end = start.0.checked_add(size).ok_or(Error::InitrdTooBig {
            size,
            mem_size: cfg.mem_size,
        })?;
        fdt.property_u64("linux,initrd-start", start.0)?;
        fdt.property_u64("linux,initrd-end", end)?;
    }
    Ok(fdt.end_node(node)?)
}

#[cfg(test)]
#[path = "fdt_tests.rs"]
mod tests;
