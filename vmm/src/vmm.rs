//! The VMM's main thread: builds the VM (boot, restore or incoming, see
//! `builder.rs`), then runs the event loop that serves the console, the
//! control API and the vCPUs' stop requests.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::api::server::{self, ApiServerHandle};
use crate::api::{
    ApiReceiver, ApiRequest, ApiResponse, ApiSender, SnapshotRequest, VmInfo, VmState,
};
use crate::backends::Backends;
use crate::builder::{self, BuildError, Built, Launch};
use crate::config::VmConfig;
use crate::console::{Console, ConsoleError, ConsoleInput};
use crate::devices::bus::lock;
use crate::disk_layers::{DiskLayers, LayerError};
use crate::migration::context::MigrationStatus;
use crate::migration::outgoing::{self, Next, Outgoing};
use crate::migration::receive::{self, Incoming, Seats};
use crate::migration::send::Captured;
use crate::migration::transport::{Channel, TlsFiles};
use crate::migration::MigrateRequest;
use crate::seccomp::seat::Seat;
use crate::signals;
use crate::snapshot;
use crate::vcpu::{self, StopReason};
use crate::vm::{Vm, VmError, VmEvents};

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error("cannot start the API server: {0}")]
    Api(String),
    #[error("event loop failure: {0}")]
    EventLoop(String),
    #[error("cannot set up the VMM: {0}")]
    Setup(std::io::Error),
    #[error("{0}")]
    Flush(String),
}

/// How a VM run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest reset the machine. Like Firecracker, a guest-initiated reboot
    /// ends the VMM process; its supervisor decides whether to start it again.
    GuestReset,
    GuestPowerOff,
    /// `PUT /vm/shutdown`.
    ApiShutdown,
    /// SIGTERM or SIGINT.
    Signalled,
    /// The VM now runs on a migration's destination.
    MigratedAway,
    /// The VM could not go on (KVM error, failed reboot).
    Failed(String),
}

impl Outcome {
    /// 0: the guest or the API ended the VM; 2: it failed while running
    /// (1 is for errors before the guest started, see main.rs).
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Failed(_) => 2,
            _ => 0,
        }
    }
}

struct Vmm {
    config: VmConfig,
    events: VmEvents,
    stop_signal: EventFd,
    /// Written by the migration thread when it has news.
    migration_wake: EventFd,
    migration: Option<Outgoing>,
    /// The last migration's progress (GET /vm/migration).
    migration_status: Arc<Mutex<MigrationStatus>>,
    tls: TlsFiles,
    /// None only between tearing one boot down and building the next.
    vm: Option<Vm>,
    backends: Backends,
    /// Disks switched onto overlays (backups).
    layers: DiskLayers,
    console: Console,
    api: Option<ApiReceiver>,
    /// Shutdown requests, answered after teardown.
    shutdown_replies: Vec<mpsc::Sender<ApiResponse>>,
    state: VmState,
    outcome: Option<Outcome>,
}

impl Vmm {
    fn handle_api(&mut self) {
        let Some(api) = &self.api else { return };
        // Reading resets the counter; every queued request is drained below.
        let _ = api.wake.read();
        let pending: Vec<_> = api.requests.try_iter().collect();
        for (request, reply) in pending {
            if request == ApiRequest::Shutdown && self.state != VmState::ShuttingDown {
                // Answered once the VM is down and its disks are flushed.
                self.shutdown_replies.push(reply);
                self.finish(Outcome::ApiShutdown);
                continue;
            }
            let response = self.answer(request);
            // The client may have gone away; nothing to do about it.
            let _ = reply.send(response);
        }
    }

    fn answer(&mut self, request: ApiRequest) -> ApiResponse {
        if request == ApiRequest::GetVmInfo {
            return ApiResponse::VmInfo(Box::new(self.info()));
        }
        if self.state == VmState::ShuttingDown {
            return ApiResponse::Conflict("the VM is shutting down".into());
        }
        if self.state == VmState::Migrated && request != ApiRequest::GetMigration {
            return ApiResponse::Conflict(
                "the VM has migrated away; only PUT /vm/shutdown is left".into(),
            );
        }
        match request {
            ApiRequest::Pause => self.pause(),
            ApiRequest::Resume => self.resume(),
            ApiRequest::CtrlAltDel => self.ctrl_alt_del(),
            ApiRequest::Reboot => match self.reboot() {
                Ok(()) => ApiResponse::Done,
                Err(e) => {
                    let message = format!("reboot failed: {e}");
                    self.finish(Outcome::Failed(message.clone()));
                    ApiResponse::Failed(message)
                }
            },
            ApiRequest::Snapshot(req) => self.snapshot(&req),
            ApiRequest::Migrate(req) => self.migrate(req),
            ApiRequest::GetMigration => {
                let status = lock(&self.migration_status).clone();
                ApiResponse::Json(serde_json::to_value(status).unwrap_or_default())
            }
            ApiRequest::CancelMigration => match &self.migration {
                Some(m) if !m.finished() => {
                    m.cancel();
                    ApiResponse::Accepted
                }
                _ => ApiResponse::Conflict("no migration is running".into()),
            },
            ApiRequest::DiskOverlay(id, req) => {
                let done = self
                    .layers
                    .add_overlay(&self.backends, &self.config, &id, &req.path);
                layer_answer(done.map(|()| ApiResponse::Done))
            }
            ApiRequest::DiskCommit(id) => {
                let started = self.layers.start_commit(&self.backends, &id);
                layer_answer(started.map(|()| ApiResponse::Accepted))
            }
            ApiRequest::GetDiskCommit(id) => layer_answer(
                self.layers
                    .status(&id)
                    .map(|s| ApiResponse::Json(serde_json::to_value(s).unwrap_or_default())),
            ),
            ApiRequest::GetVmInfo | ApiRequest::Shutdown => ApiResponse::Done,
        }
    }

    /// Why the VM's images alone do not describe it now, if they do not.
    fn layered(&self) -> Option<ApiResponse> {
        self.layers.busy().then(|| {
            ApiResponse::Conflict(
                "a disk is on a backup overlay: commit it first (PUT /vm/disks/{id}/commit)".into(),
            )
        })
    }

    fn info(&self) -> VmInfo {
        VmInfo {
            config: self.config.clone(),
            state: self.state,
            vcpus: self.config.vcpus,
            memory_bytes: self.config.memory.0,
            console: self.console.stats(),
            devices: self.vm.as_ref().map(Vm::device_registers),
        }
    }

    fn pause(&mut self) -> ApiResponse {
        if self.state == VmState::Paused {
            return ApiResponse::Conflict("the VM is already paused".into());
        }
        self.with_vm(Vm::pause);
        self.state = VmState::Paused;
        ApiResponse::Done
    }

    fn resume(&mut self) -> ApiResponse {
        if self.state == VmState::Running {
            return ApiResponse::Conflict("the VM is not paused".into());
        }
        match self.vm.as_ref().map(Vm::resume) {
            Some(Err(e)) => ApiResponse::Failed(format!("resume failed: {e}")),
            _ => {
                self.state = VmState::Running;
                ApiResponse::Done
            }
        }
    }

    /// Saves the paused VM into `req.dir`, its disks flushed first so the
    /// images hold what the snapshot's guest wrote.
    fn snapshot(&mut self, req: &SnapshotRequest) -> ApiResponse {
        if self.state != VmState::Paused {
            return ApiResponse::Conflict("pause the VM first (PUT /vm/pause)".into());
        }
        if let Some(refused) = self.layered() {
            return refused;
        }
        let Some(vm) = &self.vm else {
            return ApiResponse::Conflict("the VM is being rebuilt".into());
        };
        if let Err(e) = self.backends.flush_disks() {
            return ApiResponse::Failed(e);
        }
        let macs: Vec<[u8; 6]> = self.backends.nets.iter().map(|n| n.mac).collect();
        let written = snapshot::capture(vm, &self.config, &macs)
            .and_then(|snap| snapshot::write(&req.dir, &snap, vm));
        match written {
            Ok(_) => ApiResponse::Done,
            Err(e @ snapshot::SnapshotError::NotEmpty(_)) => ApiResponse::BadRequest(e.to_string()),
            Err(e) => ApiResponse::Failed(format!("snapshot failed: {e}")),
        }
    }

    /// Starts a migration thread; answered at once (202), progress on
    /// GET /vm/migration.
    fn migrate(&mut self, req: MigrateRequest) -> ApiResponse {
        if self.migration.as_ref().is_some_and(|m| !m.finished()) {
            return ApiResponse::Conflict("a migration is already running".into());
        }
        if self.state != VmState::Running {
            return ApiResponse::Conflict("only a running VM migrates; resume it first".into());
        }
        if let Some(refused) = self.layered() {
            return refused;
        }
        if let Err(e) = req.url.parse::<crate::migration::transport::Endpoint>() {
            return ApiResponse::BadRequest(e);
        }
        let Some(vm) = &self.vm else {
            return ApiResponse::Conflict("the VM is being rebuilt".into());
        };
        let parts = (vm, &self.config, &self.backends);
        match Outgoing::start(
            req,
            self.tls.clone(),
            parts,
            self.migration_status.clone(),
            &self.migration_wake,
        ) {
            Ok(m) => {
                self.migration = Some(m);
                ApiResponse::Accepted
            }
            Err(e) => ApiResponse::Failed(format!("cannot start the migration: {e}")),
        }
    }

    /// The migration thread has news.
    fn on_migration(&mut self) {
        let _ = self.migration_wake.read();
        while let Some(next) = self.migration.as_mut().map(Outgoing::next_step) {
            match next {
                Next::Wait => return,
                Next::Switchover(reply) => {
                    let _ = reply.send(self.pause_for_switchover());
                }
                Next::Resume => self.resume_after_migration(),
                Next::Leave => self.leave(),
                Next::Exit => self.finish(Outcome::MigratedAway),
                Next::StayPaused => {
                    eprintln!(
                        "vireo-vmm: the migration's destination did not confirm; the VM stays paused here"
                    );
                    self.state = VmState::Paused;
                }
            }
        }
    }

    /// The destination runs the VM: this side lets go of it.
    fn leave(&mut self) {
        // The destination owns the disks now: never touch them.
        self.backends.detach_disks();
        if self.migration.as_ref().is_none_or(|m| m.exit_when_done) {
            self.finish(Outcome::MigratedAway);
            return;
        }
        if let Some(mut vm) = self.vm.take() {
            vm.stop();
        }
        self.state = VmState::Migrated;
    }

    /// Pauses the VM (if the API has not already) and captures it; its
    /// disks are flushed for a destination that reopens them.
    fn pause_for_switchover(&mut self) -> Result<Captured, String> {
        let vm = self.vm.as_ref().ok_or("the VM is being rebuilt")?;
        let macs: Vec<[u8; 6]> = self.backends.nets.iter().map(|n| n.mac).collect();
        let snap = if self.state == VmState::Running {
            self.state = VmState::Paused;
            if let Some(m) = &mut self.migration {
                m.paused_here = true;
            }
            snapshot::pause_and_capture(vm, &self.config, &macs)
        } else {
            let stopped = std::time::Instant::now();
            snapshot::capture(vm, &self.config, &macs).map(|snap| (snap, stopped))
        };
        let (snap, stopped) = snap.map_err(|e| e.to_string())?;
        self.backends.flush_disks()?;
        Ok(Captured {
            snap: Box::new(snap),
            stopped,
        })
    }

    fn resume_after_migration(&mut self) {
        let paused_here = self.migration.as_ref().is_some_and(|m| m.paused_here);
        if paused_here && self.state == VmState::Paused {
            if let Some(Err(e)) = self.vm.as_ref().map(Vm::resume) {
                self.finish(Outcome::Failed(format!(
                    "resume after a failed migration: {e}"
                )));
                return;
            }
            self.state = VmState::Running;
        }
    }

    /// Types Ctrl-Alt-Del for the guest; 409 when it cannot see the keys.
    fn ctrl_alt_del(&self) -> ApiResponse {
        if self.state == VmState::Paused {
            return ApiResponse::Conflict("the VM is paused: resume it first".into());
        }
        match self.vm.as_ref().map(Vm::ctrl_alt_del) {
            Some(Ok(())) => ApiResponse::Done,
            Some(Err(e)) => ApiResponse::Conflict(e.to_string()),
            None => ApiResponse::Conflict("the VM is between boots".into()),
        }
    }

    fn with_vm(&self, action: impl FnOnce(&Vm)) {
        if let Some(vm) = &self.vm {
            action(vm);
        }
    }

    /// Tears the VM down (vCPUs and device workers stopped, guest memory
    /// freed) and makes what the guest wrote durable.
    fn teardown(&mut self) -> Result<(), String> {
        // The migration thread holds handles on the VM: it goes first.
        if let Some(m) = self.migration.take() {
            m.abandon();
        }
        if let Some(mut vm) = self.vm.take() {
            vm.stop();
        }
        self.backends.flush_disks()
    }

    /// Rebuilds the VM from its configuration, as a cold reset would. The
    /// old one is gone, its disks flushed, before the new one is built.
    fn reboot(&mut self) -> Result<(), VmmError> {
        self.teardown().map_err(VmmError::Flush)?;
        let vm = Vm::create(&self.config, &self.backends, &self.events)?;
        vm.set_console_output(self.console.output());
        let vm = self.vm.insert(vm);
        vm.start(Vec::new())?;
        self.state = VmState::Running;
        Ok(())
    }

    fn finish(&mut self, outcome: Outcome) {
        self.state = VmState::ShuttingDown;
        self.outcome.get_or_insert(outcome);
    }

    fn on_vcpu_stop(&mut self) {
        let _ = self.events.stop.read();
        let outcome = match self.vm.as_ref().and_then(Vm::stop_reason) {
            Some(StopReason::GuestReset) => Outcome::GuestReset,
            Some(StopReason::GuestPowerOff) => Outcome::GuestPowerOff,
            Some(StopReason::Error(e)) => Outcome::Failed(e),
            None => return,
        };
        self.finish(outcome);
    }

    fn on_console_input(&mut self, fd: i32, ops: &mut EventOps) {
        match self.console.read_input(fd) {
            ConsoleInput::Bytes(bytes) => {
                self.with_vm(|vm| {
                    lock(&vm.devices.serial).enqueue_input(&bytes);
                });
            }
            ConsoleInput::Nothing => {}
            // End of input (or a broken client): stop watching it, and
            // only then close it (see `Console::watched`).
            ConsoleInput::Ended => {
                let _ = ops.remove(Events::empty_raw(fd));
                self.console.unwatch(fd);
            }
        }
    }

    fn on_console_client(&mut self, ops: &mut EventOps) {
        let Some(accepted) = self.console.accept() else {
            return;
        };
        if let Some(old) = accepted.replaced {
            let _ = ops.remove(Events::empty_raw(old.as_raw_fd()));
        }
        let _ = ops.add(Events::new_raw(accepted.fd, EventSet::IN));
    }
}

impl MutEventSubscriber for Vmm {
    fn init(&mut self, ops: &mut EventOps) {
        let mut fds = vec![
            self.events.stop.as_raw_fd(),
            self.events.reset.as_raw_fd(),
            self.stop_signal.as_raw_fd(),
            self.migration_wake.as_raw_fd(),
        ];
        fds.extend(self.api.as_ref().map(|a| a.wake.as_raw_fd()));
        fds.extend(self.console.watched_fds());
        for fd in fds {
            // stdin that is a regular file cannot be polled: then there is simply no input.
            let _ = ops.add(Events::new_raw(fd, EventSet::IN));
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.events.stop.as_raw_fd() {
            self.on_vcpu_stop();
        } else if fd == self.events.reset.as_raw_fd() {
            let _ = self.events.reset.read();
            self.finish(Outcome::GuestReset);
        } else if fd == self.stop_signal.as_raw_fd() {
            let _ = self.stop_signal.read();
            self.finish(Outcome::Signalled);
        } else if fd == self.migration_wake.as_raw_fd() {
            self.on_migration();
        } else if self.api.as_ref().is_some_and(|a| a.wake.as_raw_fd() == fd) {
            self.handle_api();
        } else if self.console.is_listener(fd) {
            self.on_console_client(ops);
        } else {
            self.on_console_input(fd, ops);
        }
    }
}

fn layer_answer(result: Result<ApiResponse, LayerError>) -> ApiResponse {
    match result {
        Ok(r) => r,
        Err(LayerError::Bad(m)) => ApiResponse::BadRequest(m),
        Err(LayerError::Conflict(m)) => ApiResponse::Conflict(m),
        Err(LayerError::Failed(m)) => ApiResponse::Failed(m),
    }
}

/// The API server, on `seat` when one was started ahead.
fn start_api(
    config: &VmConfig,
    seat: Option<Seat>,
) -> Result<(Option<ApiReceiver>, Option<ApiServerHandle>), VmmError> {
    let Some(path) = &config.api_socket else {
        return Ok((None, None));
    };
    let (tx, rx) = mpsc::channel();
    let wake = EventFd::new(EFD_NONBLOCK).map_err(VmmError::Setup)?;
    let sender = ApiSender {
        requests: tx,
        wake: wake.try_clone().map_err(VmmError::Setup)?,
    };
    let handle = server::ApiServer::new(path, sender)
        .start_on(seat)
        .map_err(|e| VmmError::Api(e.to_string()))?;
    Ok((Some(ApiReceiver { requests: rx, wake }), Some(handle)))
}

fn confine_main() {
    crate::seccomp::install(crate::seccomp::ThreadKind::Main);
}

/// An incoming VM, built, its state applied and Ready said: it runs here
/// once the source commits.
struct Landing {
    ch: Box<dyn Channel>,
    times: receive::SwitchTimes,
    vcpu_seats: Vec<Seat>,
    api_seat: Option<Seat>,
    paused: bool,
}

impl Landing {
    /// Waits for Commit, then runs the VM here. Its vCPU and API threads
    /// were started ahead (seats) and are handed their jobs only once
    /// Running is said: a thread woken on this core preempts this one, and
    /// between Ready and Commit that kept Commit unread, and the source
    /// paused, for 0.1-0.2 ms more. The main thread's filter (the largest)
    /// goes in last, for the same reason.
    fn take_over(
        self,
        vm: &mut Vm,
        config: &VmConfig,
        backends: &Backends,
    ) -> Result<(Option<ApiReceiver>, Option<ApiServerHandle>), VmmError> {
        let Landing {
            mut ch,
            times,
            vcpu_seats,
            api_seat,
            paused,
        } = self;
        receive::await_commit(&mut *ch)?;
        if !paused {
            vm.resume_devices()?;
        }
        let resumed = (!paused).then(std::time::SystemTime::now);
        receive::say_running(&mut *ch, resumed);
        // Committed: the VM is this side's, whatever fails from here.
        if paused {
            vm.start_paused(vcpu_seats)?;
        } else {
            vm.start(vcpu_seats)?;
        }
        let api = start_api(config, api_seat).unwrap_or_else(|e| {
            eprintln!("vireo-vmm: the VM runs here, without its API socket: {e}");
            (None, None)
        });
        receive::take_over(ch, backends, &times);
        confine_main();
        Ok(api)
    }
}

/// Builds the VM `launch` asks for and runs it until it ends; returns how
/// it ended. `tls` is for migration channels either way.
pub fn run(launch: Launch, tls: TlsFiles) -> Result<Outcome, VmmError> {
    run_with(launch, tls, false)
}

/// `run`, with the vCPUs left parked after a fresh boot too when
/// `start_paused` (`--paused --kernel`): a supervisor can then attach to the
/// console socket before the guest prints its first byte, and start it with
/// `PUT /vm/resume`.
pub fn run_with(launch: Launch, tls: TlsFiles, start_paused: bool) -> Result<Outcome, VmmError> {
    run_handed(launch, tls, start_paused, Handoff::default())
}

/// What a supervisor hands the VMM at spawn so that it need not wait for
/// the API socket, nor start the VM paused to attach to the console.
#[derive(Default)]
pub struct Handoff {
    /// `--serial-client-fd`: the socket console's first client, connected
    /// before the VMM ran (no byte of the guest's is lost).
    pub serial_client: Option<UnixStream>,
    /// `--ready-fd`: gets one line once the VM runs (or is parked, when
    /// paused) and the API answers; closed unwritten if the VMM fails first.
    pub ready: Option<File>,
}

/// `run_with`, with what the supervisor handed over.
pub fn run_handed(
    launch: Launch,
    tls: TlsFiles,
    start_paused: bool,
    handoff: Handoff,
) -> Result<Outcome, VmmError> {
    vcpu::install_kick_handler().map_err(|e| VmmError::Setup(e.into()))?;
    // Before the main thread confines itself: see seccomp/spawner.rs.
    crate::seccomp::spawner::start().map_err(VmmError::Setup)?;
    let stop_signal = signals::install_stop_handlers().map_err(VmmError::Setup)?;
    let events = VmEvents {
        stop: EventFd::new(EFD_NONBLOCK).map_err(VmmError::Setup)?,
        reset: EventFd::new(EFD_NONBLOCK).map_err(VmmError::Setup)?,
    };
    let paused = start_paused || launch.paused();
    // The VM is built first: a bad kernel or config then leaves nothing behind.
    let (built, mut confirm, seats, console) = match launch {
        Launch::Incoming { url, resume } => {
            let incoming = Incoming {
                url,
                overrides: resume.overrides,
                tls: tls.clone(),
                serial_client: handoff.serial_client,
            };
            let received = receive::receive(incoming, &events, &stop_signal)?;
            let confirm = Some((received.ch, received.times));
            (received.built, confirm, received.seats, received.console)
        }
        other => {
            let built = builder::build(other, &events)?;
            let console = Console::open_with_client(&built.config.serial, handoff.serial_client)?;
            (built, None, Seats::default(), console)
        }
    };
    let Seats {
        vcpus: vcpu_seats,
        api: api_seat,
    } = seats;
    let Built {
        config,
        backends,
        mut vm,
    } = built;
    vm.set_console_output(console.output());
    // An incoming VM's state is applied: Ready goes now; the source waits
    // paused (its downtime) for it and sends Commit (`Landing`).
    if let Some((ch, times)) = &mut confirm {
        receive::ready(&mut **ch, times)?;
    }
    // Everything that reads files the guest never sees (images, snapshot,
    // migration stream) is done: this thread is confined before the event
    // loop, the first thing it does for the guest. vCPU threads spawned
    // after that inherit its filter, which therefore allows theirs too
    // (seccomp/rules.rs); each thread also installs its own as it starts.
    let (api, api_server) = match confirm {
        Some((ch, times)) => {
            let landing = Landing {
                ch,
                times,
                vcpu_seats,
                api_seat,
                paused,
            };
            landing.take_over(&mut vm, &config, &backends)?
        }
        None => {
            let api = start_api(&config, api_seat)?;
            confine_main();
            if paused {
                vm.start_paused(Vec::new())?;
            } else {
                vm.start(Vec::new())?;
                // A restored VM's device workers wait parked for this.
                vm.resume()?;
            }
            api
        }
    };

    let vmm = Arc::new(Mutex::new(Vmm {
        config,
        events,
        stop_signal,
        migration_wake: EventFd::new(EFD_NONBLOCK).map_err(VmmError::Setup)?,
        migration: None,
        migration_status: Arc::new(Mutex::new(outgoing::idle_status())),
        tls,
        vm: Some(vm),
        backends,
        layers: DiskLayers::default(),
        console,
        api,
        shutdown_replies: Vec::new(),
        state: if paused {
            VmState::Paused
        } else {
            VmState::Running
        },
        outcome: None,
    }));
    if let Some(mut ready) = handoff.ready {
        // A supervisor that has gone away is no reason to stop the VM.
        let _ = ready.write_all(b"ready\n");
    }
    let outcome = run_event_loop(&vmm)?;
    // Stopped and flushed before the API answers a shutdown request, so a
    // client that sees the answer may open the images at once.
    let flushed = {
        let mut vmm = lock(&vmm);
        // KVM destroys the VM after this process has exited (reaper.rs).
        if let Some(vm) = &vmm.vm {
            crate::reaper::hand_over(vm.vm_fd().as_raw_fd());
        }
        let flushed = vmm.teardown();
        let response = match &flushed {
            Ok(()) => ApiResponse::Done,
            Err(e) => ApiResponse::Failed(e.clone()),
        };
        for reply in vmm.shutdown_replies.drain(..) {
            let _ = reply.send(response.clone());
        }
        flushed
    };
    drop(api_server);
    Ok(match flushed {
        Ok(()) => outcome,
        Err(e) => Outcome::Failed(format!("the VM stopped ({outcome:?}) but {e}")),
    })
}

fn run_event_loop(vmm: &Arc<Mutex<Vmm>>) -> Result<Outcome, VmmError> {
    let mut manager = EventManager::<Arc<Mutex<Vmm>>>::new()
        .map_err(|e| VmmError::EventLoop(format!("{e:?}")))?;
    manager.add_subscriber(vmm.clone());
    loop {
        manager
            .run()
            .map_err(|e| VmmError::EventLoop(format!("{e:?}")))?;
        if let Some(outcome) = lock(vmm).outcome.clone() {
            return Ok(outcome);
        }
    }
}
