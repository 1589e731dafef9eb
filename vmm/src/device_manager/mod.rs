//! The device manager: builds every guest-visible device of one VM, hands
//! out their MMIO slots and interrupt lines, puts them on the buses the
//! vCPUs dispatch exits to, and keeps a handle on each, so the VM can
//! pause, resume, save and restore them all (`persist.rs`).
//!
//! Adding a device kind: its folder under `devices/`, and one `place_*`
//! function here.

pub mod persist;

use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::arch::{self, MmioDeviceInfo, MmioDeviceKind};
use crate::backends::{Backends, OpenDisk};
use crate::devices::bus::{lock, Bus, BusDevice, BusError};
use crate::devices::legacy::i8042::KeyboardError;
use crate::devices::legacy::serial::{ConsoleOutput, SerialConsole};
use crate::devices::legacy::EventFdTrigger;
use crate::devices::virtio::block::Block;
use crate::devices::virtio::mmio::{MmioTransport, QUEUE_NOTIFY_OFFSET};
use crate::devices::virtio::net::NetPort;
use crate::devices::virtio::VirtioDevice;
use crate::memory::GuestRam;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("KVM refused to {what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("cannot set up the {what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("too many disks and networks: this architecture has room for {0} virtio devices")]
    TooManyDevices(u32),
    #[error(transparent)]
    Bus(#[from] BusError),
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> DeviceError {
    move |source| DeviceError::Kvm { what, source }
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> DeviceError {
    move |source| DeviceError::Io { what, source }
}

/// What a virtio slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VirtioKind {
    Block,
    Net,
}

/// One virtio device behind its transport.
pub struct VirtioSlot {
    pub kind: VirtioKind,
    /// The disk's or NIC's id (`id=`, else `diskN` / `netN`).
    pub id: String,
    pub transport: Arc<Mutex<MmioTransport>>,
}

/// The interrupt and reset lines legacy devices need from the VMM.
pub struct LegacyLines {
    /// Fired when the guest asks for a reset through the i8042.
    pub reset: EventFd,
}

pub struct DeviceManager {
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub serial: Arc<Mutex<SerialConsole>>,
    #[cfg(target_arch = "x86_64")]
    pub i8042: Arc<Mutex<crate::devices::legacy::i8042::I8042>>,
    #[cfg(target_arch = "x86_64")]
    pub cmos: Arc<Mutex<crate::devices::legacy::cmos::Cmos>>,
    /// In slot order: disks first, then NICs.
    pub virtio: Vec<VirtioSlot>,
    /// Memory-mapped devices the firmware tables must announce.
    pub announced: Vec<MmioDeviceInfo>,
}

/// Buses and announcements while the devices are being placed.
struct Placing {
    pio: Bus,
    mmio: Bus,
    virtio: Vec<VirtioSlot>,
    announced: Vec<MmioDeviceInfo>,
}

impl DeviceManager {
    /// Builds the legacy devices and one virtio transport per backend.
    pub fn create(
        vm: &VmFd,
        lines: &LegacyLines,
        memory: &GuestRam,
        backends: &Backends,
    ) -> Result<Self, DeviceError> {
        let mut placing = Placing {
            pio: Bus::default(),
            mmio: Bus::default(),
            virtio: Vec::new(),
            announced: Vec::new(),
        };
        let serial = create_serial(vm)?;
        place_serial(&mut placing, serial.clone())?;
        #[cfg(target_arch = "x86_64")]
        let i8042 = place_i8042(&mut placing, vm, lines)?;
        #[cfg(target_arch = "x86_64")]
        let cmos = place_cmos(&mut placing)?;
        #[cfg(not(target_arch = "x86_64"))]
        let _ = lines;
        for disk in &backends.disks {
            place_disk(&mut placing, vm, memory, disk)?;
        }
        for (n, port) in backends.nets.iter().enumerate() {
            place_net(&mut placing, vm, memory, port, n)?;
        }
        Ok(Self {
            pio: Arc::new(placing.pio),
            mmio: Arc::new(placing.mmio),
            serial,
            #[cfg(target_arch = "x86_64")]
            i8042,
            #[cfg(target_arch = "x86_64")]
            cmos,
            virtio: placing.virtio,
            announced: placing.announced,
        })
    }

    /// Parks every device worker (the vCPUs are paused first).
    pub fn pause(&self) {
        for slot in &self.virtio {
            lock(&slot.transport).pause();
        }
    }

    /// Runs every parked device worker again.
    pub fn resume(&self) -> std::io::Result<()> {
        for slot in &self.virtio {
            lock(&slot.transport).resume()?;
        }
        Ok(())
    }

    /// Stops every device worker for good (teardown).
    pub fn stop(&self) {
        for slot in &self.virtio {
            lock(&slot.transport).stop();
        }
    }

    /// Routes the console to `output`.
    pub fn set_console_output(&self, output: ConsoleOutput) {
        lock(&self.serial).set_output(output);
    }

    /// The legacy devices' registers, read without side effects.
    pub fn registers(&self) -> crate::api::DeviceRegisters {
        crate::api::DeviceRegisters {
            serial: lock(&self.serial).registers(),
            #[cfg(target_arch = "x86_64")]
            i8042: Some(lock(&self.i8042).registers()),
            #[cfg(not(target_arch = "x86_64"))]
            i8042: None,
        }
    }

    /// Types Ctrl-Alt-Del on the guest's keyboard (x86_64 only).
    pub fn ctrl_alt_del(&self) -> Result<(), KeyboardError> {
        #[cfg(target_arch = "x86_64")]
        return lock(&self.i8042).ctrl_alt_del();
        #[cfg(not(target_arch = "x86_64"))]
        Err(KeyboardError::Absent)
    }
}

fn create_serial(vm: &VmFd) -> Result<Arc<Mutex<SerialConsole>>, DeviceError> {
    let irq = EventFd::new(EFD_NONBLOCK).map_err(io_err("serial interrupt"))?;
    vm.register_irqfd(&irq, arch::current::SERIAL_GSI)
        .map_err(kvm_err("wire the serial interrupt"))?;
    Ok(Arc::new(Mutex::new(SerialConsole::new(
        EventFdTrigger(irq),
        ConsoleOutput::discard(),
    ))))
}

#[cfg(target_arch = "x86_64")]
fn place_serial(p: &mut Placing, serial: Arc<Mutex<SerialConsole>>) -> Result<(), DeviceError> {
    use crate::devices::legacy::serial::{COM1_PORT_BASE, COM1_PORT_LEN};
    Ok(p.pio.insert(serial, COM1_PORT_BASE, COM1_PORT_LEN)?)
}

#[cfg(target_arch = "aarch64")]
fn place_serial(p: &mut Placing, serial: Arc<Mutex<SerialConsole>>) -> Result<(), DeviceError> {
    use crate::arch::aarch64::layout::{SERIAL_IRQ, SERIAL_MMIO_ADDR, SERIAL_MMIO_LEN};
    p.mmio.insert(serial, SERIAL_MMIO_ADDR, SERIAL_MMIO_LEN)?;
    p.announced.push(MmioDeviceInfo {
        kind: MmioDeviceKind::Serial,
        addr: vm_memory::GuestAddress(SERIAL_MMIO_ADDR),
        len: SERIAL_MMIO_LEN,
        irq: SERIAL_IRQ,
    });
    Ok(())
}

#[cfg(target_arch = "x86_64")]
fn place_i8042(
    p: &mut Placing,
    vm: &VmFd,
    lines: &LegacyLines,
) -> Result<Arc<Mutex<crate::devices::legacy::i8042::I8042>>, DeviceError> {
    use crate::devices::legacy::i8042::{I8042, I8042_PORT_BASE, I8042_PORT_LEN};
    let reset = lines
        .reset
        .try_clone()
        .map_err(io_err("i8042 reset line"))?;
    let irq = irq_line(vm, arch::current::layout::I8042_IRQ, "keyboard interrupt")?;
    let i8042 = Arc::new(Mutex::new(I8042::new(EventFdTrigger(reset), irq)));
    let on_bus: Arc<Mutex<dyn BusDevice>> = i8042.clone();
    p.pio.insert(on_bus, I8042_PORT_BASE, I8042_PORT_LEN)?;
    Ok(i8042)
}

/// The CMOS real-time clock at 0x70 (`devices/legacy/cmos.rs` says why).
#[cfg(target_arch = "x86_64")]
fn place_cmos(
    p: &mut Placing,
) -> Result<Arc<Mutex<crate::devices::legacy::cmos::Cmos>>, DeviceError> {
    use crate::devices::legacy::cmos::{Cmos, CMOS_PORT_BASE, CMOS_PORT_LEN};
    let cmos = Arc::new(Mutex::new(Cmos::new()));
    let on_bus: Arc<Mutex<dyn BusDevice>> = cmos.clone();
    p.pio.insert(on_bus, CMOS_PORT_BASE, CMOS_PORT_LEN)?;
    Ok(cmos)
}

/// An interrupt line a legacy device raises through an irqfd on `gsi`.
#[cfg(target_arch = "x86_64")]
fn irq_line(vm: &VmFd, gsi: u32, what: &'static str) -> Result<EventFdTrigger, DeviceError> {
    let fd = EventFd::new(EFD_NONBLOCK).map_err(io_err(what))?;
    vm.register_irqfd(&fd, gsi)
        .map_err(kvm_err("wire a device interrupt"))?;
    Ok(EventFdTrigger(fd))
}

/// A virtio-blk transport on `disk`, in the next MMIO slot.
fn place_disk(
    p: &mut Placing,
    vm: &VmFd,
    memory: &GuestRam,
    disk: &OpenDisk,
) -> Result<(), DeviceError> {
    let block = Block::new(disk.backend.clone(), disk.readonly, &disk.id);
    place_virtio(
        p,
        vm,
        memory,
        Box::new(block),
        (VirtioKind::Block, disk.id.clone()),
    )
}

/// A virtio-net transport on `port` (the `n`-th NIC), in the next MMIO slot.
fn place_net(
    p: &mut Placing,
    vm: &VmFd,
    memory: &GuestRam,
    port: &NetPort,
    n: usize,
) -> Result<(), DeviceError> {
    let id = port.id.clone().unwrap_or_else(|| format!("net{n}"));
    place_virtio(
        p,
        vm,
        memory,
        Box::new(port.device()),
        (VirtioKind::Net, id),
    )
}

/// Puts `device` behind a virtio-mmio transport in the next MMIO slot,
/// wired to its own GSI, its queue notifications turned into KVM
/// ioeventfds.
fn place_virtio(
    p: &mut Placing,
    vm: &VmFd,
    memory: &GuestRam,
    device: Box<dyn VirtioDevice>,
    (kind, id): (VirtioKind, String),
) -> Result<(), DeviceError> {
    let slot = p.virtio.len() as u32;
    let (addr, len, irq) =
        arch::current::virtio_mmio_slot(slot).ok_or(DeviceError::TooManyDevices(slot))?;
    let irqfd = EventFd::new(EFD_NONBLOCK).map_err(io_err("virtio interrupt"))?;
    vm.register_irqfd(&irqfd, arch::current::virtio_gsi(irq))
        .map_err(kvm_err("wire a virtio interrupt"))?;
    let transport = MmioTransport::new(device, memory.clone(), irqfd)
        .map_err(io_err("virtio-mmio transport"))?;
    // QueueNotify then wakes the worker from KVM itself; a write KVM does not
    // match (another queue index) still reaches the transport on the bus.
    let notify = kvm_ioctls::IoEventAddress::Mmio(addr.0 + QUEUE_NOTIFY_OFFSET);
    for (index, fd) in transport.notify_eventfds().iter().enumerate() {
        vm.register_ioevent(fd, &notify, index as u32)
            .map_err(kvm_err("register a virtio notification"))?;
    }
    let transport = Arc::new(Mutex::new(transport));
    let on_bus: Arc<Mutex<dyn BusDevice>> = transport.clone();
    p.mmio.insert(on_bus, addr.0, len)?;
    p.announced.push(MmioDeviceInfo {
        kind: MmioDeviceKind::VirtioMmio,
        addr,
        len,
        irq,
    });
    p.virtio.push(VirtioSlot {
        kind,
        id,
        transport,
    });
    Ok(())
}
