//! One VM: the boot flow from configuration to runnable vCPUs, and the
//! VM-wide actions (start, pause, resume, stop).
//!
//! Boot flow, in order (each step is one call below, see `Vm::create`):
//! open kernel/initrd → open /dev/kvm → create the VM → map and register
//! guest RAM → interrupt controllers → legacy devices on their buses →
//! vCPUs → post-vCPU interrupt controllers (aarch64 GIC) → load the guest
//! and write its boot tables → per-vCPU registers. `start` then spawns one
//! thread per vCPU.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::arch::{self, BootEntry, BootSources, MmioDeviceInfo};
use crate::backends::{Backends, OpenDisk};
use crate::config::VmConfig;
use crate::devices::bus::{lock, Bus};
use crate::devices::legacy::i8042::{KeyboardError, I8042};
use crate::devices::legacy::serial::{ConsoleOutput, SerialConsole};
use crate::devices::legacy::EventFdTrigger;
use crate::devices::virtio::net::NetPort;
use crate::devices::virtio::VirtioDevice;
use crate::memory::{self, MemoryError};
use crate::vcpu::{StopReason, Vcpu, VcpuControl, VcpuThreads};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot open the {what} '{path}': {source}")]
    OpenFile {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("the {what} '{path}' is not a regular file")]
    NotAFile { what: &'static str, path: String },
    #[error(
        "cannot use /dev/kvm: {0} (is KVM enabled on this host, and may this user open /dev/kvm?)"
    )]
    Kvm(kvm_ioctls::Error),
    #[error("KVM refused to {what}: {source}")]
    KvmCall {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Arch(#[from] arch::current::Error),
    #[error("cannot set up the {what}: {source}")]
    Device {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot start the vCPU threads: {0}")]
    Threads(std::io::Error),
    #[error("too many disks and networks: this architecture has room for {0} virtio devices")]
    TooManyDevices(u32),
}

fn kvm_call(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::KvmCall { what, source }
}

fn open_regular(what: &'static str, path: &Path) -> Result<File, VmError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| VmError::OpenFile {
        what,
        path: shown.clone(),
        source,
    })?;
    let meta = file.metadata().map_err(|source| VmError::OpenFile {
        what,
        path: shown.clone(),
        source,
    })?;
    if !meta.is_file() {
        return Err(VmError::NotAFile { what, path: shown });
    }
    Ok(file)
}

/// Event fds the VMM keeps across reboots and hands to each VM it builds.
pub struct VmEvents {
    /// A vCPU stopped the VM (see `VcpuControl::stop_reason`).
    pub stop: EventFd,
    /// The guest asked for a reset through the i8042.
    pub reset: EventFd,
}

pub struct Vm {
    // Field order is drop order: vCPU fds and memory before the VM fd.
    threads: Option<VcpuThreads>,
    vcpus: Vec<Vcpu>,
    control: Arc<VcpuControl>,
    serial: Arc<Mutex<SerialConsole>>,
    /// The keyboard controller, for the keys the VMM types (x86_64 only).
    i8042: Option<Arc<Mutex<I8042>>>,
    memory: GuestMemoryMmap,
    _arch_vm: arch::current::ArchVm,
    _vm_fd: VmFd,
    _kvm: Kvm,
    pub entry: BootEntry,
}

/// The guest-visible devices built for one VM.
struct Devices {
    pio: Bus,
    mmio: Bus,
    serial: Arc<Mutex<SerialConsole>>,
    i8042: Option<Arc<Mutex<I8042>>>,
    /// Memory-mapped devices firmware tables must announce.
    announced: Vec<MmioDeviceInfo>,
}

fn device_err(what: &'static str) -> impl FnOnce(std::io::Error) -> VmError {
    move |source| VmError::Device { what, source }
}

fn create_devices(
    vm: &VmFd,
    events: &VmEvents,
    memory: &GuestMemoryMmap,
    backends: &Backends,
) -> Result<Devices, VmError> {
    let serial_irq = EventFd::new(EFD_NONBLOCK).map_err(device_err("serial interrupt"))?;
    vm.register_irqfd(&serial_irq, arch::current::SERIAL_GSI)
        .map_err(kvm_call("wire the serial interrupt"))?;
    let serial = Arc::new(Mutex::new(SerialConsole::new(
        EventFdTrigger(serial_irq),
        ConsoleOutput::discard(),
    )));
    let mut devices = Devices {
        pio: Bus::default(),
        mmio: Bus::default(),
        serial: serial.clone(),
        i8042: None,
        announced: Vec::new(),
    };
    place_legacy_devices(&mut devices, vm, serial, events)?;
    let first_net = backends.disks.len();
    for (slot, disk) in backends.disks.iter().enumerate() {
        place_disk(&mut devices, vm, memory, slot as u32, disk)?;
    }
    for (n, port) in backends.nets.iter().enumerate() {
        place_net(&mut devices, vm, memory, (first_net + n) as u32, port)?;
    }
    Ok(devices)
}

/// Puts a virtio-blk transport in MMIO slot `slot`, wired to its own GSI.
fn place_disk(
    devices: &mut Devices,
    vm: &VmFd,
    memory: &GuestMemoryMmap,
    slot: u32,
    disk: &OpenDisk,
) -> Result<(), VmError> {
    use crate::devices::virtio::block::Block;
    let block = Block::new(disk.backend.clone(), disk.readonly, &disk.id);
    place_virtio(devices, vm, memory, slot, Box::new(block))
}

/// Puts a virtio-net transport on `port` in MMIO slot `slot`.
fn place_net(
    devices: &mut Devices,
    vm: &VmFd,
    memory: &GuestMemoryMmap,
    slot: u32,
    port: &NetPort,
) -> Result<(), VmError> {
    place_virtio(devices, vm, memory, slot, Box::new(port.device()))
}

/// Puts `device` behind a virtio-mmio transport in MMIO slot `slot`, wired to its own GSI.
fn place_virtio(
    devices: &mut Devices,
    vm: &VmFd,
    memory: &GuestMemoryMmap,
    slot: u32,
    device: Box<dyn VirtioDevice>,
) -> Result<(), VmError> {
    use crate::arch::MmioDeviceKind;
    use crate::devices::virtio::mmio::{MmioTransport, QUEUE_NOTIFY_OFFSET};
    let (addr, len, irq) =
        arch::current::virtio_mmio_slot(slot).ok_or(VmError::TooManyDevices(slot))?;
    let irqfd = EventFd::new(EFD_NONBLOCK).map_err(device_err("virtio interrupt"))?;
    vm.register_irqfd(&irqfd, arch::current::virtio_gsi(irq))
        .map_err(kvm_call("wire a virtio interrupt"))?;
    let transport = MmioTransport::new(device, memory.clone(), irqfd)
        .map_err(device_err("virtio-mmio transport"))?;
    // QueueNotify then wakes the worker from KVM itself; a write KVM does not
    // match (another queue index) still reaches the transport on the bus.
    let notify = kvm_ioctls::IoEventAddress::Mmio(addr.0 + QUEUE_NOTIFY_OFFSET);
    for (index, fd) in transport.notify_eventfds().iter().enumerate() {
        vm.register_ioevent(fd, &notify, index as u32)
            .map_err(kvm_call("register a virtio notification"))?;
    }
    devices
        .mmio
        .insert(Arc::new(Mutex::new(transport)), addr.0, len)
        .map_err(|e| VmError::Device {
            what: "MMIO bus",
            source: std::io::Error::other(e),
        })?;
    devices.announced.push(MmioDeviceInfo {
        kind: MmioDeviceKind::VirtioMmio,
        addr,
        len,
        irq,
    });
    Ok(())
}

#[cfg(target_arch = "x86_64")]
fn place_legacy_devices(
    devices: &mut Devices,
    vm: &VmFd,
    serial: Arc<Mutex<SerialConsole>>,
    events: &VmEvents,
) -> Result<(), VmError> {
    use crate::devices::legacy::i8042::{I8042_PORT_BASE, I8042_PORT_LEN};
    use crate::devices::legacy::serial::{COM1_PORT_BASE, COM1_PORT_LEN};
    let bus_err = |e: crate::devices::bus::BusError| VmError::Device {
        what: "port I/O bus",
        source: std::io::Error::other(e),
    };
    devices
        .pio
        .insert(serial, COM1_PORT_BASE, COM1_PORT_LEN)
        .map_err(bus_err)?;
    let reset = events
        .reset
        .try_clone()
        .map_err(device_err("i8042 reset line"))?;
    let irq = irq_line(vm, arch::current::layout::I8042_IRQ, "keyboard interrupt")?;
    let i8042 = Arc::new(Mutex::new(I8042::new(EventFdTrigger(reset), irq)));
    devices.i8042 = Some(i8042.clone());
    devices
        .pio
        .insert(i8042, I8042_PORT_BASE, I8042_PORT_LEN)
        .map_err(bus_err)?;
    place_cmos(devices).map_err(bus_err)
}

/// The CMOS real-time clock at 0x70 (`devices/legacy/cmos.rs` says why).
#[cfg(target_arch = "x86_64")]
fn place_cmos(devices: &mut Devices) -> Result<(), crate::devices::bus::BusError> {
    use crate::devices::legacy::cmos::{Cmos, CMOS_PORT_BASE, CMOS_PORT_LEN};
    let cmos = Arc::new(Mutex::new(Cmos::new()));
    devices.pio.insert(cmos, CMOS_PORT_BASE, CMOS_PORT_LEN)
}

/// An interrupt line the device raises through an irqfd on `gsi`.
#[cfg(target_arch = "x86_64")]
fn irq_line(vm: &VmFd, gsi: u32, what: &'static str) -> Result<EventFdTrigger, VmError> {
    let fd = EventFd::new(EFD_NONBLOCK).map_err(device_err(what))?;
    vm.register_irqfd(&fd, gsi)
        .map_err(kvm_call("wire a device interrupt"))?;
    Ok(EventFdTrigger(fd))
}

#[cfg(target_arch = "aarch64")]
fn place_legacy_devices(
    devices: &mut Devices,
    _vm: &VmFd,
    serial: Arc<Mutex<SerialConsole>>,
    _events: &VmEvents,
) -> Result<(), VmError> {
    use crate::arch::aarch64::layout::{SERIAL_IRQ, SERIAL_MMIO_ADDR, SERIAL_MMIO_LEN};
    use crate::arch::MmioDeviceKind;
    devices
        .mmio
        .insert(serial, SERIAL_MMIO_ADDR, SERIAL_MMIO_LEN)
        .map_err(|e| VmError::Device {
            what: "MMIO bus",
            source: std::io::Error::other(e),
        })?;
    devices.announced.push(MmioDeviceInfo {
        kind: MmioDeviceKind::Serial,
        addr: vm_memory::GuestAddress(SERIAL_MMIO_ADDR),
        len: SERIAL_MMIO_LEN,
        irq: SERIAL_IRQ,
    });
    Ok(())
}

/// Opens (and so checks) the kernel and initrd before anything is created.
fn open_boot_files(config: &VmConfig) -> Result<BootSources, VmError> {
    Ok(BootSources {
        kernel: open_regular("kernel", &config.kernel)?,
        initrd: config
            .initrd
            .as_deref()
            .map(|p| open_regular("initrd", p))
            .transpose()?,
        cmdline: config.cmdline.clone(),
    })
}

impl Vm {
    /// Builds the VM described by `config` on the device `backends`, ready
    /// to `start`.
    pub fn create(
        config: &VmConfig,
        backends: &Backends,
        events: &VmEvents,
    ) -> Result<Self, VmError> {
        let sources = open_boot_files(config)?;
        let kvm = Kvm::new().map_err(VmError::Kvm)?;
        let vm_fd = kvm.create_vm().map_err(kvm_call("create a VM"))?;
        let size = config.memory.0;
        let memory = memory::create(size, &arch::current::memory_regions(size)?)?;
        memory::register(&vm_fd, &memory)?;
        arch::current::setup_vm_pre_vcpus(&vm_fd)?;
        let fds = (0..config.vcpus)
            .map(|i| {
                vm_fd
                    .create_vcpu(u64::from(i))
                    .map_err(kvm_call("create a vCPU"))
            })
            .collect::<Result<Vec<VcpuFd>, _>>()?;
        // aarch64 needs its GIC (created here) before irqfds can be wired.
        let arch_vm = arch::current::setup_vm_post_vcpus(&vm_fd, &fds)?;
        let devices = create_devices(&vm_fd, events, &memory, backends)?;
        let vcpu_count = usize::from(config.vcpus);
        let entry = arch::current::load_guest(&memory, &sources, &devices.announced, vcpu_count)?;
        configure_vcpus(&kvm, &vm_fd, &fds, &entry, &memory)?;

        let control = VcpuControl::new(events.stop.try_clone().map_err(device_err("stop event"))?);
        let (pio, mmio) = (Arc::new(devices.pio), Arc::new(devices.mmio));
        let vcpus = fds
            .into_iter()
            .enumerate()
            .map(|(index, fd)| Vcpu {
                fd,
                index: index as u8,
                pio: pio.clone(),
                mmio: mmio.clone(),
                control: control.clone(),
            })
            .collect();
        Ok(Self {
            threads: None,
            vcpus,
            control,
            serial: devices.serial,
            i8042: devices.i8042,
            memory,
            _arch_vm: arch_vm,
            _vm_fd: vm_fd,
            _kvm: kvm,
            entry,
        })
    }

    /// Routes the console to `output` (done after creation so nothing is
    /// created on disk for a VM that fails to build).
    pub fn set_console_output(&self, output: ConsoleOutput) {
        lock(&self.serial).set_output(output);
    }

    pub fn serial(&self) -> Arc<Mutex<SerialConsole>> {
        self.serial.clone()
    }

    /// The legacy devices' registers, read without side effects.
    pub fn device_registers(&self) -> crate::api::DeviceRegisters {
        crate::api::DeviceRegisters {
            serial: lock(&self.serial).registers(),
            i8042: self.i8042.as_ref().map(|d| lock(d).registers()),
        }
    }

    /// Types Ctrl-Alt-Del on the guest's keyboard.
    pub fn ctrl_alt_del(&self) -> Result<(), KeyboardError> {
        let i8042 = self.i8042.as_ref().ok_or(KeyboardError::Absent)?;
        lock(i8042).ctrl_alt_del()
    }

    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// Spawns the vCPU threads.
    pub fn start(&mut self) -> Result<(), VmError> {
        let vcpus = std::mem::take(&mut self.vcpus);
        let threads = VcpuThreads::start(vcpus, self.control.clone()).map_err(VmError::Threads)?;
        self.threads = Some(threads);
        Ok(())
    }

    pub fn pause(&self) {
        if let Some(t) = &self.threads {
            t.pause();
        }
    }

    pub fn resume(&self) {
        if let Some(t) = &self.threads {
            t.resume();
        }
    }

    /// Why a vCPU stopped the VM, if one did.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.control.stop_reason()
    }

    /// Stops and joins the vCPU threads; the VM can then be dropped.
    pub fn stop(&mut self) {
        if let Some(t) = self.threads.take() {
            t.stop();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(target_arch = "x86_64")]
fn configure_vcpus(
    kvm: &Kvm,
    _vm: &VmFd,
    fds: &[VcpuFd],
    entry: &BootEntry,
    memory: &GuestMemoryMmap,
) -> Result<(), VmError> {
    let supported = arch::current::supported_cpuid(kvm)?;
    let count = fds.len() as u8;
    for (i, fd) in fds.iter().enumerate() {
        arch::current::configure_vcpu(&supported, fd, i as u8, count, entry, memory)?;
    }
    Ok(())
}

#[cfg(target_arch = "aarch64")]
fn configure_vcpus(
    _kvm: &Kvm,
    vm: &VmFd,
    fds: &[VcpuFd],
    entry: &BootEntry,
    memory: &GuestMemoryMmap,
) -> Result<(), VmError> {
    for (i, fd) in fds.iter().enumerate() {
        arch::current::configure_vcpu(vm, fd, i, fds.len(), entry, memory)?;
    }
    Ok(())
}
