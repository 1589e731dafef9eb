//! Builds device trees and parses them back with the `fdt` crate, so the
//! checks are on the blob the guest reads.

use fdt::node::FdtNode;
use fdt::Fdt;
use vm_memory::GuestAddress;

use super::*;
use crate::arch::aarch64::layout::{
    kvm_mpidr, virtio_mmio_slot, GIC_DIST_ADDR, GIC_REDIST_ADDR, SERIAL_IRQ, SERIAL_MMIO_ADDR,
    SERIAL_MMIO_LEN,
};

const MEM: u64 = 512 << 20;

fn serial() -> MmioDeviceInfo {
    MmioDeviceInfo {
        kind: MmioDeviceKind::Serial,
        addr: GuestAddress(SERIAL_MMIO_ADDR),
        len: SERIAL_MMIO_LEN,
        irq: SERIAL_IRQ,
    }
}

fn virtio(slot: u32) -> MmioDeviceInfo {
    let (addr, len, irq) = virtio_mmio_slot(slot).unwrap();
    MmioDeviceInfo {
        kind: MmioDeviceKind::VirtioMmio,
        addr,
        len,
        irq,
    }
}

fn mpidrs(n: usize) -> Vec<u64> {
    (0..n).map(kvm_mpidr).collect()
}

/// A blob for `vcpus` vCPUs, with the given initrd and devices.
fn build(vcpus: usize, initrd: Option<(GuestAddress, u64)>, devices: &[MmioDeviceInfo]) -> Vec<u8> {
    let mpidrs = mpidrs(vcpus);
    let cfg = FdtConfig {
        mem_size: MEM,
        mpidrs: &mpidrs,
        cmdline: "console=ttyS0 reboot=k panic=1",
        initrd,
        devices,
        gic: GicLayout::for_vcpus(vcpus).unwrap(),
    };
    create_fdt(&cfg).unwrap()
}

fn prop<'a>(node: FdtNode<'_, 'a>, name: &str) -> &'a [u8] {
    let found = node.property(name);
    found
        .unwrap_or_else(|| panic!("{} has no {name}", node.name))
        .value
}

fn cells(node: FdtNode, name: &str) -> Vec<u32> {
    let bytes = prop(node, name);
    assert_eq!(bytes.len() % 4, 0, "{name} is not a cell array");
    bytes
        .chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn u64s(node: FdtNode, name: &str) -> Vec<u64> {
    let bytes = prop(node, name);
    assert_eq!(bytes.len() % 8, 0, "{name} is not a u64 array");
    bytes
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn string_list(node: FdtNode, name: &str) -> Vec<String> {
    let bytes = prop(node, name).strip_suffix(&[0]).expect("NUL-terminated");
    bytes
        .split(|&b| b == 0)
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

fn node<'b, 'a>(fdt: &'b Fdt<'a>, path: &str) -> FdtNode<'b, 'a> {
    fdt.find_node(path)
        .unwrap_or_else(|| panic!("no node {path}"))
}

#[test]
fn root_describes_a_dummy_virt_machine() {
    let blob = build(1, None, &[]);
    let fdt = Fdt::new(&blob).unwrap();
    let root = node(&fdt, "/");
    assert_eq!(string_list(root, "compatible"), ["linux,dummy-virt"]);
    assert_eq!(cells(root, "#address-cells"), [2]);
    assert_eq!(cells(root, "#size-cells"), [2]);
    let gic = node(&fdt, "/intc@8000000");
    assert_eq!(cells(root, "interrupt-parent"), cells(gic, "phandle"));
}

#[test]
fn memory_node_covers_all_ram() {
    let blob = build(1, None, &[]);
    let fdt = Fdt::new(&blob).unwrap();
    let mem = node(&fdt, "/memory@80000000");
    assert_eq!(string_list(mem, "device_type"), ["memory"]);
    assert_eq!(u64s(mem, "reg"), [DRAM_START, MEM]);
    let region = fdt.memory().regions().next().unwrap();
    assert_eq!(region.starting_address as u64, DRAM_START);
    assert_eq!(region.size, Some(MEM as usize));
}

#[test]
fn one_cpu_node_per_vcpu_with_mpidr_reg() {
    for n in [1, 2, 8, 17] {
        let blob = build(n, None, &[]);
        let fdt = Fdt::new(&blob).unwrap();
        let cpus: Vec<_> = node(&fdt, "/cpus").children().collect();
        assert_eq!(cpus.len(), n);
        for (i, cpu) in cpus.into_iter().enumerate() {
            let affinity = kvm_mpidr(i) & 0xff_ffff;
            assert_eq!(cpu.name, format!("cpu@{affinity:x}"));
            assert_eq!(u64s(cpu, "reg"), [affinity]);
            assert_eq!(string_list(cpu, "compatible"), ["arm,arm-v8"]);
            assert_eq!(string_list(cpu, "device_type"), ["cpu"]);
            assert_eq!(string_list(cpu, "enable-method"), ["psci"]);
        }
        assert_eq!(fdt.cpus().count(), n);
    }
}

#[test]
fn psci_uses_hvc() {
    let blob = build(2, None, &[]);
    let fdt = Fdt::new(&blob).unwrap();
    let psci = node(&fdt, "/psci");
    assert_eq!(
        string_list(psci, "compatible"),
        ["arm,psci-0.2", "arm,psci"]
    );
    assert_eq!(string_list(psci, "method"), ["hvc"]);
}

#[test]
fn gic_reg_scales_with_vcpus() {
    for (n, redist) in [(1, 0x2_0000), (2, 0x4_0000), (8, 0x10_0000)] {
        let blob = build(n, None, &[]);
        let fdt = Fdt::new(&blob).unwrap();
        let gic = node(&fdt, "/intc@8000000");
        assert_eq!(string_list(gic, "compatible"), ["arm,gic-v3"]);
        assert_eq!(
            u64s(gic, "reg"),
            [GIC_DIST_ADDR, 0x1_0000, GIC_REDIST_ADDR, redist]
        );
        assert_eq!(cells(gic, "#interrupt-cells"), [3]);
        assert!(gic.property("interrupt-controller").is_some());
    }
}

#[test]
fn timer_has_four_level_ppis() {
    let blob = build(1, None, &[]);
    let fdt = Fdt::new(&blob).unwrap();
    let timer = node(&fdt, "/timer");
    assert_eq!(string_list(timer, "compatible"), ["arm,armv8-timer"]);
    let want = [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4];
    assert_eq!(cells(timer, "interrupts"), want);
    assert!(timer.property("always-on").is_some());
}

#[test]
fn uart_node_and_stdout_path() {
    let blob = build(1, None, &[serial(), virtio(0)]);
    let fdt = Fdt::new(&blob).unwrap();
    let uart = fdt.find_compatible(&["ns16550a"]).unwrap();
    assert_eq!(uart.name, "serial@9000000");
    assert_eq!(u64s(uart, "reg"), [SERIAL_MMIO_ADDR, SERIAL_MMIO_LEN]);
    assert_eq!(cells(uart, "interrupts"), [0, SERIAL_IRQ, 1]);
    assert_eq!(cells(uart, "clock-frequency"), [1_843_200]);
    let clock = node(&fdt, "/uartclk");
    assert_eq!(cells(uart, "clocks"), cells(clock, "phandle"));
    assert_eq!(string_list(clock, "compatible"), ["fixed-clock"]);
    let chosen = node(&fdt, "/chosen");
    assert_eq!(string_list(chosen, "stdout-path"), ["/serial@9000000"]);
    assert_eq!(fdt.chosen().stdout().unwrap().name, "serial@9000000");
}

#[test]
fn no_uart_means_no_stdout_path() {
    let blob = build(1, None, &[virtio(0)]);
    let fdt = Fdt::new(&blob).unwrap();
    assert!(fdt.find_compatible(&["ns16550a"]).is_none());
    assert!(node(&fdt, "/chosen").property("stdout-path").is_none());
}

#[test]
fn one_virtio_node_per_transport() {
    let devices = [serial(), virtio(0), virtio(1), virtio(5)];
    let blob = build(2, None, &devices);
    let fdt = Fdt::new(&blob).unwrap();
    let nodes: Vec<_> = fdt
        .all_nodes()
        .filter(|n| n.compatible().is_some_and(|c| c.first() == "virtio,mmio"))
        .collect();
    assert_eq!(nodes.len(), 3);
    for (dev, n) in devices[1..].iter().zip(nodes) {
        assert_eq!(n.name, format!("virtio_mmio@{:x}", dev.addr.0));
        assert_eq!(u64s(n, "reg"), [dev.addr.0, dev.len]);
        assert_eq!(cells(n, "interrupts"), [0, dev.irq, 1]);
        assert!(n.property("dma-coherent").is_some());
    }
}

#[test]
fn chosen_has_bootargs_and_initrd() {
    let initrd = (GuestAddress(0x9000_0000), 0x12_3456);
    let blob = build(1, Some(initrd), &[serial()]);
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(
        fdt.chosen().bootargs(),
        Some("console=ttyS0 reboot=k panic=1")
    );
    let chosen = node(&fdt, "/chosen");
    assert_eq!(u64s(chosen, "linux,initrd-start"), [0x9000_0000]);
    assert_eq!(u64s(chosen, "linux,initrd-end"), [0x9012_3456]);
}

#[test]
fn no_initrd_properties_without_initrd() {
    let blob = build(1, None, &[serial()]);
    let fdt = Fdt::new(&blob).unwrap();
    let chosen = node(&fdt, "/chosen");
    assert!(chosen.property("linux,initrd-start").is_none());
    assert!(chosen.property("linux,initrd-end").is_none());
}

#[test]
fn rejects_overlong_or_nul_cmdline() {
    let mpidrs = mpidrs(1);
    let long = "a".repeat(CMDLINE_MAX_LEN);
    let mut cfg = FdtConfig {
        mem_size: MEM,
        mpidrs: &mpidrs,
        cmdline: &long,
        initrd: None,
        devices: &[],
        gic: GicLayout::for_vcpus(1).unwrap(),
    };
    assert!(matches!(create_fdt(&cfg), Err(Error::CmdlineTooLong(2048))));
    cfg.cmdline = "console=ttyS0\0x";
    assert!(matches!(create_fdt(&cfg), Err(Error::Fdt(_))));
}

#[test]
fn dtc_accepts_the_blob() {
    // Cross-check with the reference compiler (package device-tree-compiler,
    // which CI installs): a missing dtc fails the test, never skips it.
    let path = std::env::temp_dir().join(format!("vireo-fdt-{}.dtb", std::process::id()));
    let blob = build(
        4,
        Some((GuestAddress(0x9000_0000), 4096)),
        &[serial(), virtio(0)],
    );
    std::fs::write(&path, blob).unwrap();
    let out = std::process::Command::new("dtc")
        .args(["-I", "dtb", "-O", "dts"])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out.expect("dtc (package device-tree-compiler) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dts = String::from_utf8(out.stdout).unwrap();
    assert!(dts.contains("compatible = \"virtio,mmio\""));
}
