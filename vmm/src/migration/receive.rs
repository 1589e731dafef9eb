//! The destination of a migration (`vireo-vmm --incoming URL`): takes one
//! source, checks it can run the VM, fills guest RAM (and, with copied
//! disks, the images) pass after pass, builds the VM from the state, says
//! Ready, and waits for Commit. Anything short of Commit ends this process
//! with nothing run: the source still has the VM.

#[cfg(feature = "fuzz")]
pub mod fuzz_harness;

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::EventFd;

use super::protocol::{self, for_each_block, for_each_page, Hello, Kind, PageData};
use super::transport::{Channel, Endpoint, Listener, TlsFiles};
use super::DiskMode;
use crate::backends::{self, Backends};
use crate::builder::{apply_overrides, BuildError, Built, Overrides};
use crate::config::VmConfig;
use crate::console::Console;
use crate::devices::virtio::block::disk::DiskBackend;
use crate::devices::virtio::net::NetPort;
use crate::memory::{pages, GuestRam};
use crate::seccomp::seat::Seat;
use crate::snapshot::{self, VmSnapshot};
use crate::vm::{Vm, VmCore, VmEvents};

/// How long the destination waits for the source's next frame.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Incoming {
    pub url: String,
    pub overrides: Overrides,
    pub tls: TlsFiles,
    /// A console client handed over at spawn (`--serial socket`).
    pub serial_client: Option<UnixStream>,
}

fn failed(why: impl std::fmt::Display) -> BuildError {
    BuildError::Mismatch(format!("incoming migration: {why}"))
}

/// A VM received: built with its state applied (not started, not yet
/// Ready), the channel for Ready and Commit, and the threads it will run on.
pub struct Received {
    pub built: Built,
    pub ch: Box<dyn Channel>,
    pub times: SwitchTimes,
    pub seats: Seats,
    /// Opened once the hello was accepted, while memory streamed in.
    pub console: Console,
}

/// The VM's threads here, started while memory streams in (seccomp/seat.rs):
/// one per vCPU, and the API server's when it has a socket. None for a VM
/// built here (`Default`): its threads start when it starts.
#[derive(Default)]
pub struct Seats {
    pub vcpus: Vec<Seat>,
    pub api: Option<Seat>,
}

impl Seats {
    fn start(config: &VmConfig) -> Result<Seats, BuildError> {
        let vcpus = (0..config.vcpus)
            .map(crate::vcpu::seat)
            .collect::<io::Result<Vec<_>>>()
            .map_err(failed)?;
        let api = match config.api_socket {
            Some(_) => Some(crate::api::server::seat().map_err(failed)?),
            None => None,
        };
        Ok(Seats { vcpus, api })
    }
}

/// Waits for a source on `incoming.url` and receives the VM.
pub fn receive(
    incoming: Incoming,
    events: &VmEvents,
    stop: &EventFd,
) -> Result<Received, BuildError> {
    let endpoint: Endpoint = incoming.url.parse().map_err(failed)?;
    let listener = Listener::bind(&endpoint).map_err(failed)?;
    eprintln!("vireo-vmm: waiting for a migration on {}", incoming.url);
    let mut ch = accept(&listener, &incoming.tls, stop)?;
    drop(listener);
    ch.set_timeout(LINK_TIMEOUT).map_err(failed)?;
    let mut times = SwitchTimes::new();
    let early = Early {
        overrides: incoming.overrides,
        serial_client: incoming.serial_client,
    };
    match receive_on(&mut *ch, early, events, &mut times) {
        Ok((built, seats, console)) => Ok(Received {
            built,
            ch,
            times,
            seats,
            console,
        }),
        Err(e) => {
            // The source learns why; it keeps (or resumes) the VM.
            let _ = protocol::write_frame(&mut *ch, Kind::Error, e.to_string().as_bytes());
            Err(e)
        }
    }
}

fn accept(
    listener: &Listener,
    tls: &TlsFiles,
    stop: &EventFd,
) -> Result<Box<dyn Channel>, BuildError> {
    let fds = [listener.fd(), stop.as_raw_fd()];
    let ready = crate::devices::virtio::worker::wait_readable(fds).map_err(failed)?;
    if ready[1] {
        return Err(failed("stopped before a source connected"));
    }
    listener.accept(tls).map_err(failed)
}

/// Where this side's part of the downtime goes, from the State frame on
/// (the source's figures end at Ready and Running; these say what is in
/// between): printed once the VM runs.
pub struct SwitchTimes {
    state_at: Instant,
    /// The state checked and decoded.
    parsed: Duration,
    /// The images opened and the devices built.
    devices: Duration,
    /// The vCPU, VM and device state applied.
    applied: Duration,
    /// Ready said (the console, API socket and parked vCPU threads follow,
    /// while Commit is on its way).
    ready: Duration,
}

impl SwitchTimes {
    fn new() -> Self {
        Self {
            state_at: Instant::now(),
            parsed: Duration::ZERO,
            devices: Duration::ZERO,
            applied: Duration::ZERO,
            ready: Duration::ZERO,
        }
    }

    fn report(&self) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let running = self.state_at.elapsed();
        eprintln!(
            "vireo-vmm: incoming switch-over, ms from the state's arrival: decoded {:.2}, \
             devices built {:.2}, state applied {:.2}, ready {:.2}, running {:.2}",
            ms(self.parsed),
            ms(self.devices),
            ms(self.applied),
            ms(self.ready),
            ms(running)
        );
    }
}

/// The VM without its devices (built while memory streams in), the
/// copied disks, filled before the switch-over, and the NICs' backends.
struct Landing {
    core: VmCore,
    copies: Vec<Box<dyn DiskBackend>>,
    nets: Vec<NetPort>,
}

/// What the destination was given for the VM before it knew it.
struct Early {
    overrides: Overrides,
    serial_client: Option<UnixStream>,
}

fn receive_on(
    ch: &mut dyn Channel,
    early: Early,
    events: &VmEvents,
    times: &mut SwitchTimes,
) -> Result<(Built, Seats, Console), BuildError> {
    let hello: Hello = serde_json::from_slice(&protocol::expect(ch, Kind::Hello).map_err(failed)?)
        .map_err(|e| failed(format!("bad hello: {e}")))?;
    let config = check_hello(&hello, early.overrides)?;
    // The API socket is bound only once the VM runs here; a path another
    // VMM serves (the source's own, on the same host) would fail this side
    // after the hand-over, so it is refused now, while the source can go on.
    if let Some(path) = &config.api_socket {
        crate::api::server::check_free(path).map_err(failed)?;
    }
    // The console too is opened now, not in the switch-over (its writer
    // thread took 0.02-0.07 ms there).
    let console = Console::open_with_client(&config.serial, early.serial_client).map_err(failed)?;
    let mut core = VmCore::build(&config, Vm::new_memory(&config)?)?;
    core.preset_cpuid()?;
    let mut landing = Landing {
        core,
        copies: Vec::new(),
        nets: Backends::open_nets(&config)?,
    };
    if hello.disks == DiskMode::Copy {
        for (disk, &size) in config.disks.iter().zip(&hello.disk_sizes) {
            let target = backends::open_copy_target(disk, size).map_err(failed)?;
            landing.copies.push(target);
        }
    }
    let built = snapshot::layout_of(landing.core.memory());
    if built != hello.memory {
        return Err(failed(format!(
            "memory layout {:?} here, {:?} there",
            built, hello.memory
        )));
    }
    protocol::write_frame(ch, Kind::Ack, &[]).map_err(failed)?;
    let seats = Seats::start(&config)?;
    let snap = receive_passes(ch, landing.core.memory(), &mut landing.copies, times)?;
    times.parsed = times.state_at.elapsed();
    // The copies are complete: durable before this side may take over.
    for copy in &mut landing.copies {
        copy.flush().map_err(failed)?;
    }
    let opened = landing.copies.into_iter().map(Some).collect();
    let backends = Backends::open_with(&config, opened, landing.nets)?;
    let vm = landing.core.attach(&backends, events)?;
    times.devices = times.state_at.elapsed();
    snapshot::apply(&vm, &snap)?;
    times.applied = times.state_at.elapsed();
    let built = Built {
        config,
        backends,
        vm,
    };
    Ok((built, seats, console))
}

/// Says Ready: the VM is built and its state applied; it runs here on
/// Commit (`await_commit`), or never.
pub fn ready(ch: &mut dyn Channel, times: &mut SwitchTimes) -> Result<(), BuildError> {
    times.ready = times.state_at.elapsed();
    protocol::write_frame(ch, Kind::Ready, &[]).map_err(failed)
}

/// Waits for Commit: only then may the VM run here.
pub fn await_commit(ch: &mut dyn Channel) -> Result<(), BuildError> {
    super::transport::wait_awake(ch);
    match protocol::read_frame(ch) {
        Ok((Kind::Commit, _)) => Ok(()),
        Ok((kind, _)) => Err(failed(format!(
            "the source sent {kind:?} instead of Commit"
        ))),
        Err(e) => Err(failed(format!(
            "no Commit from the source ({e}); nothing runs here"
        ))),
    }
}

/// Tells the source the VM is here: running from `resumed` (the vCPUs
/// are handed to their threads right after this frame), or paused.
pub fn say_running(ch: &mut dyn Channel, resumed: Option<std::time::SystemTime>) {
    // Committed: the VM runs here whether or not the source hears it.
    let at = resumed.map(protocol::encode_wall_time);
    let _ = protocol::write_frame(ch, Kind::Running, at.as_ref().map_or(&[], |a| &a[..]));
}

/// After Running: announces the NICs' new port, and takes the frames the
/// source still got for the guest (forward.rs).
pub fn take_over(ch: Box<dyn Channel>, backends: &Backends, times: &SwitchTimes) {
    times.report();
    announce(backends);
    let taps: Vec<_> = backends.nets.iter().map(|n| n.tap.clone()).collect();
    if taps.is_empty() || ch.set_timeout(super::forward::RECEIVE_TIMEOUT).is_err() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("vireo-forwarded".into())
        .spawn(move || {
            crate::seccomp::install(crate::seccomp::ThreadKind::Announce);
            super::forward::receive(ch, taps)
        });
}

/// This side's description of the VM, or why it cannot take it.
fn check_hello(hello: &Hello, overrides: Overrides) -> Result<VmConfig, BuildError> {
    if hello.version != protocol::VERSION {
        return Err(failed(format!(
            "the source speaks migration protocol {}, this vireo-vmm {}",
            hello.version,
            protocol::VERSION
        )));
    }
    if hello.arch != std::env::consts::ARCH {
        return Err(failed(format!(
            "the VM is {}, this host {}",
            hello.arch,
            std::env::consts::ARCH
        )));
    }
    if hello.disk_sizes.len() != hello.config.disks.len() {
        return Err(failed("the hello's disk list is inconsistent"));
    }
    apply_overrides(hello.config.clone(), overrides)
}

/// Pages and blocks until the State frame; returns the state.
/// Lands memory and disk frames until the VM state arrives.
fn receive_passes(
    ch: &mut dyn Channel,
    ram: &GuestRam,
    copies: &mut [Box<dyn DiskBackend>],
    times: &mut SwitchTimes,
) -> Result<VmSnapshot, BuildError> {
    // From Closing on, the switch-over's frames are waited for awake.
    let mut switching = false;
    loop {
        if switching {
            super::transport::wait_awake(ch);
        }
        let (kind, payload) = protocol::read_frame(ch).map_err(failed)?;
        match kind {
            Kind::Closing => {
                protocol::write_frame(ch, Kind::Drained, &[]).map_err(failed)?;
                switching = true;
            }
            Kind::Pages => land_pages(ram, &payload).map_err(failed)?,
            Kind::Disk => land_blocks(copies, &payload).map_err(failed)?,
            Kind::State => {
                times.state_at = Instant::now();
                let source = std::path::Path::new("migration state");
                return Ok(snapshot::binary::decode(source, &payload)?);
            }
            Kind::Cancel => return Err(failed("the source cancelled the migration")),
            other => return Err(failed(format!("unexpected {other:?} frame"))),
        }
    }
}

fn land_pages(ram: &GuestRam, payload: &[u8]) -> io::Result<()> {
    let zero = [0u8; protocol::PAGE];
    for_each_page(payload, |region, page, data| {
        let bytes = match data {
            PageData::Zero => &zero[..],
            PageData::Data(bytes) => bytes,
        };
        pages::write_page(ram, usize::from(region), page, bytes)
    })
}

fn land_blocks(copies: &mut [Box<dyn DiskBackend>], payload: &[u8]) -> io::Result<()> {
    for_each_block(payload, |disk, offset, len, data| {
        let target = copies.get_mut(usize::from(disk)).ok_or_else(|| {
            protocol::bad(format!("a block for disk {disk}, which is not copied"))
        })?;
        if offset
            .checked_add(u64::from(len))
            .is_none_or(|end| end > target.size())
        {
            return Err(protocol::bad(format!("a block beyond disk {disk}'s end")));
        }
        match data {
            PageData::Zero => target.write_zeroes(offset, u64::from(len), false),
            PageData::Data(bytes) => target.write_at(bytes, offset),
        }
    })
}

/// Makes the bridge learn the guest's new port at once: three RARP
/// frames from each NIC's MAC, as QEMU's self-announce sends.
pub fn announce(backends: &Backends) {
    let taps: Vec<(File, [u8; 6])> = backends
        .nets
        .iter()
        .filter_map(|n| Some((n.tap.file().try_clone().ok()?, n.mac)))
        .collect();
    if taps.is_empty() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("vireo-announce".into())
        .spawn(move || {
            crate::seccomp::install(crate::seccomp::ThreadKind::Announce);
            for delay_ms in [0, 50, 150] {
                std::thread::sleep(Duration::from_millis(delay_ms));
                for (tap, mac) in &taps {
                    let _ = io::Write::write_all(&mut &*tap, &rarp_frame(*mac));
                }
            }
        });
}

/// A RARP "reverse request" from `mac` to everyone, behind the 12-byte
/// vnet header the tap expects.
pub fn rarp_frame(mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x80, 0x35]); // EtherType RARP
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 3]); // Ethernet/IPv4, op 3
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0; 4]);
    f.resize(12 + 60, 0); // the Ethernet minimum
    f
}
