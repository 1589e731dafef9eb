//! One VM: the boot flow from configuration to runnable vCPUs, and the
//! VM-wide actions (start, pause, resume, stop).
//!
//! Boot flow, in order (each step is one call below, see `Vm::create`):
//! open kernel/initrd → open /dev/kvm → create the VM → map and register
//! guest RAM → interrupt controllers → vCPUs → post-vCPU interrupt
//! controllers (aarch64 GIC) → devices (the device manager) → load the
//! guest and write its boot tables → per-vCPU registers. `start` then
//! spawns one thread per vCPU. A restored or incoming VM takes the same
//! steps up to the devices (`Vm::build`), then loads saved state instead
//! of a kernel (`snapshot/`).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vmm_sys_util::eventfd::EventFd;

use crate::arch::{self, BootEntry, BootSources};
use crate::backends::Backends;
use crate::config::VmConfig;
use crate::device_manager::{DeviceError, DeviceManager, LegacyLines};
use crate::devices::legacy::i8042::KeyboardError;
use crate::devices::legacy::serial::ConsoleOutput;
use crate::memory::GuestRam;
use crate::memory::{self, MemoryError};
use crate::seccomp::seat::Seat;
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
    #[error(transparent)]
    Devices(#[from] DeviceError),
    #[error("cannot set up the {what}: {source}")]
    Setup {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot start the vCPU threads: {0}")]
    Threads(std::io::Error),
}

fn kvm_call(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::KvmCall { what, source }
}

fn open_regular(what: &'static str, path: &Path) -> Result<File, VmError> {
    let shown = path.display().to_string();
    let open_err = |source| VmError::OpenFile {
        what,
        path: shown.clone(),
        source,
    };
    let file = File::open(path).map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if !meta.is_file() {
        return Err(VmError::NotAFile { what, path: shown });
    }
    Ok(file)
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

/// Event fds the VMM keeps across reboots and hands to each VM it builds.
pub struct VmEvents {
    /// A vCPU stopped the VM (see `VcpuControl::stop_reason`).
    pub stop: EventFd,
    /// The guest asked for a reset through the i8042.
    pub reset: EventFd,
}

pub struct Vm {
    // Field order is drop order: vCPU threads and fds, devices and memory
    // before the VM fd.
    threads: Option<VcpuThreads>,
    vcpus: Vec<Vcpu>,
    control: Arc<VcpuControl>,
    pub devices: DeviceManager,
    memory: GuestRam,
    pub arch_vm: arch::current::ArchVm,
    vm_fd: Arc<VmFd>,
    kvm: Kvm,
    /// How the guest was entered (None for a restored VM).
    pub entry: Option<BootEntry>,
    /// The CPUID each vCPU was given (a snapshot carries it on).
    #[cfg(target_arch = "x86_64")]
    pub cpuid: std::sync::Mutex<Vec<Vec<kvm_bindings::kvm_cpuid_entry2>>>,
}

impl Vm {
    /// Builds the VM described by `config` on the device `backends` and
    /// loads its kernel, ready to `start`.
    pub fn create(
        config: &VmConfig,
        backends: &Backends,
        events: &VmEvents,
    ) -> Result<Self, VmError> {
        let sources = open_boot_files(config)?;
        let mut vm = Self::build(config, backends, events)?;
        let vcpu_count = usize::from(config.vcpus);
        let entry =
            arch::current::load_guest(&vm.memory, &sources, &vm.devices.announced, vcpu_count)?;
        vm.configure_vcpus(&entry)?;
        vm.entry = Some(entry);
        Ok(vm)
    }

    /// Everything but the guest's contents: KVM, RAM, interrupt
    /// controllers, vCPUs and devices, all at their reset state.
    pub fn build(
        config: &VmConfig,
        backends: &Backends,
        events: &VmEvents,
    ) -> Result<Self, VmError> {
        Self::build_on(config, backends, events, Self::new_memory(config)?)
    }

    /// Guest RAM for `config`, laid out as this architecture wants it.
    pub fn new_memory(config: &VmConfig) -> Result<GuestRam, VmError> {
        let size = config.memory.0;
        Ok(memory::create(size, &arch::current::memory_regions(size)?)?)
    }

    /// `build` around RAM that already holds the guest (an incoming
    /// migration fills it before the VM exists).
    pub fn build_on(
        config: &VmConfig,
        backends: &Backends,
        events: &VmEvents,
        memory: GuestRam,
    ) -> Result<Self, VmError> {
        VmCore::build(config, memory)?.attach(backends, events)
    }

    /// Routes the console to `output` (done after creation so nothing is
    /// created on disk for a VM that fails to build).
    pub fn set_console_output(&self, output: ConsoleOutput) {
        self.devices.set_console_output(output);
    }

    /// The legacy devices' registers, read without side effects.
    pub fn device_registers(&self) -> crate::api::DeviceRegisters {
        self.devices.registers()
    }

    /// Types Ctrl-Alt-Del on the guest's keyboard.
    pub fn ctrl_alt_del(&self) -> Result<(), KeyboardError> {
        self.devices.ctrl_alt_del()
    }

    pub fn memory(&self) -> &GuestRam {
        &self.memory
    }

    pub fn vm_fd(&self) -> &Arc<VmFd> {
        &self.vm_fd
    }

    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    /// The vCPUs before `start` (a restore sets their state here).
    pub fn unstarted_vcpus(&self) -> &[Vcpu] {
        &self.vcpus
    }

    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len() + self.threads.as_ref().map_or(0, VcpuThreads::count)
    }

    /// Spawns the vCPU threads; `seats`: threads started ahead for them
    /// (an incoming migration's).
    pub fn start(&mut self, seats: Vec<Seat>) -> Result<(), VmError> {
        let vcpus = std::mem::take(&mut self.vcpus);
        let threads =
            VcpuThreads::start(seats, vcpus, self.control.clone()).map_err(VmError::Threads)?;
        self.threads = Some(threads);
        Ok(())
    }

    /// Spawns the vCPU threads parked: the VM is paused until `resume`.
    /// `seats`: threads started ahead for them (an incoming migration's).
    pub fn start_paused(&mut self, seats: Vec<Seat>) -> Result<(), VmError> {
        let vcpus = std::mem::take(&mut self.vcpus);
        let threads = VcpuThreads::start_paused(seats, vcpus, self.control.clone())
            .map_err(VmError::Threads)?;
        self.threads = Some(threads);
        Ok(())
    }

    /// The running vCPU threads, if started.
    pub fn threads(&self) -> Option<&VcpuThreads> {
        self.threads.as_ref()
    }

    /// Stops the vCPUs, then parks the device workers: nothing touches
    /// guest memory or a disk until `resume`.
    pub fn pause(&self) {
        if let Some(t) = &self.threads {
            t.pause();
        }
        self.devices.pause();
    }

    /// `pause`, with `work` run by each vCPU thread as it parks
    /// (`VcpuThreads::pause_with`); the device workers park after it,
    /// whatever its outcome.
    pub fn pause_with<T: Send + 'static>(
        &self,
        work: impl Fn(&crate::vcpu::Vcpu) -> T + Send + Sync + 'static,
    ) -> Result<Vec<T>, String> {
        let results = match &self.threads {
            Some(t) => t.pause_with(work),
            None => Err("the VM has not started".into()),
        };
        self.devices.pause();
        results
    }

    /// Device workers first, so the vCPUs find their devices serving.
    pub fn resume(&self) -> Result<(), VmError> {
        self.resume_devices()?;
        self.release_vcpus();
        Ok(())
    }

    /// `resume`'s first half, the one that can fail (a worker's thread).
    pub fn resume_devices(&self) -> Result<(), VmError> {
        self.devices.resume().map_err(VmError::Threads)
    }

    /// `resume`'s second half: the vCPUs run the guest again.
    pub fn release_vcpus(&self) {
        if let Some(t) = &self.threads {
            t.resume();
        }
    }

    /// Why a vCPU stopped the VM, if one did.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.control.stop_reason()
    }

    /// Stops and joins the vCPU threads and the device workers; the VM can
    /// then be dropped.
    pub fn stop(&mut self) {
        if let Some(t) = self.threads.take() {
            t.stop();
        }
        self.devices.stop();
    }

    #[cfg(target_arch = "x86_64")]
    fn configure_vcpus(&self, entry: &BootEntry) -> Result<(), VmError> {
        let supported = arch::current::supported_cpuid(&self.kvm)?;
        let count = self.vcpus.len() as u8;
        let mut given = Vec::with_capacity(self.vcpus.len());
        for (i, vcpu) in self.vcpus.iter().enumerate() {
            let cpuid = arch::current::configure_vcpu(
                &supported,
                &vcpu.fd,
                i as u8,
                count,
                entry,
                &self.memory,
            )?;
            given.push(cpuid.as_slice().to_vec());
        }
        *crate::devices::bus::lock(&self.cpuid) = given;
        Ok(())
    }

    #[cfg(target_arch = "aarch64")]
    fn configure_vcpus(&self, entry: &BootEntry) -> Result<(), VmError> {
        let count = self.vcpus.len();
        for (i, vcpu) in self.vcpus.iter().enumerate() {
            arch::current::configure_vcpu(&self.vm_fd, &vcpu.fd, i, count, entry, &self.memory)?;
        }
        Ok(())
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A VM without its devices: KVM, RAM registered as memory slots, the
/// interrupt controllers and the vCPUs. An incoming migration builds this
/// while memory streams in, so the switch-over only adds the devices (whose
/// images the source may still hold) and the saved state.
pub struct VmCore {
    kvm: Kvm,
    vm_fd: VmFd,
    memory: GuestRam,
    fds: Vec<VcpuFd>,
    arch_vm: arch::current::ArchVm,
    /// The CPUID set ahead on each vCPU (`preset_cpuid`).
    #[cfg(target_arch = "x86_64")]
    cpuid: Vec<Vec<kvm_bindings::kvm_cpuid_entry2>>,
}

impl VmCore {
    pub fn build(config: &VmConfig, memory: GuestRam) -> Result<Self, VmError> {
        // The GICv3 layout's vCPU limit, before KVM creates any of them.
        #[cfg(target_arch = "aarch64")]
        arch::current::layout::GicLayout::for_vcpus(usize::from(config.vcpus))?;
        let kvm = Kvm::new().map_err(VmError::Kvm)?;
        // Asked now, while nothing waits (cached: arch/x86_64/mod.rs).
        #[cfg(target_arch = "x86_64")]
        arch::current::supported_cpuid(&kvm)?;
        let vm_fd = kvm.create_vm().map_err(kvm_call("create a VM"))?;
        memory::register(&vm_fd, &memory, false)?;
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
        Ok(Self {
            kvm,
            vm_fd,
            memory,
            fds,
            arch_vm,
            #[cfg(target_arch = "x86_64")]
            cpuid: Vec::new(),
        })
    }

    /// Gives each vCPU the CPUID this host would give it at boot, ahead of
    /// an incoming migration's state: when the saved CPUID is the same (the
    /// same kind of host), restoring it skips KVM_SET_CPUID2, 40 µs per
    /// vCPU of the switch-over on this host.
    #[cfg(target_arch = "x86_64")]
    pub fn preset_cpuid(&mut self) -> Result<(), VmError> {
        let supported = arch::current::supported_cpuid(&self.kvm)?;
        let count = self.fds.len() as u8;
        self.cpuid = arch::current::preset_cpuid(&supported, &self.fds, count)?;
        Ok(())
    }

    /// (Only x86_64 has CPUID.)
    #[cfg(not(target_arch = "x86_64"))]
    pub fn preset_cpuid(&mut self) -> Result<(), VmError> {
        Ok(())
    }

    /// The guest's RAM (already a KVM memory slot).
    pub fn memory(&self) -> &GuestRam {
        &self.memory
    }

    /// The devices on `backends`, and the vCPUs wired to their buses.
    pub fn attach(self, backends: &Backends, events: &VmEvents) -> Result<Vm, VmError> {
        let lines = LegacyLines {
            reset: clone_fd(&events.reset, "i8042 reset line")?,
        };
        let devices = DeviceManager::create(&self.vm_fd, &lines, &self.memory, backends)?;
        let control = VcpuControl::new(clone_fd(&events.stop, "stop event")?);
        let vcpus = self
            .fds
            .into_iter()
            .enumerate()
            .map(|(index, fd)| Vcpu {
                fd,
                index: index as u8,
                pio: devices.pio.clone(),
                mmio: devices.mmio.clone(),
                control: control.clone(),
            })
            .collect();
        Ok(Vm {
            threads: None,
            vcpus,
            control,
            devices,
            memory: self.memory,
            arch_vm: self.arch_vm,
            vm_fd: Arc::new(self.vm_fd),
            kvm: self.kvm,
            entry: None,
            #[cfg(target_arch = "x86_64")]
            cpuid: std::sync::Mutex::new(self.cpuid),
        })
    }
}

fn clone_fd(fd: &EventFd, what: &'static str) -> Result<EventFd, VmError> {
    fd.try_clone()
        .map_err(|source| VmError::Setup { what, source })
}
