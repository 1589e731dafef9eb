//! The VMM's main thread: builds the VM, then runs the event loop that
//! serves the console, the control API and the vCPUs' stop requests.

use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::api::server::{self, ApiServerHandle};
use crate::api::{ApiReceiver, ApiRequest, ApiResponse, ApiSender, VmInfo, VmState};
use crate::backends::{BackendError, Backends};
use crate::config::VmConfig;
use crate::console::{Console, ConsoleError};
use crate::devices::bus::lock;
use crate::signals;
use crate::vcpu::{self, StopReason};
use crate::vm::{Vm, VmError, VmEvents};

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Backend(#[from] BackendError),
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
    /// None only between tearing one boot down and building the next.
    vm: Option<Vm>,
    backends: Backends,
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
        match (request, self.state) {
            (ApiRequest::GetVmInfo, state) => ApiResponse::VmInfo(Box::new(VmInfo {
                config: self.config.clone(),
                state,
                vcpus: self.config.vcpus,
                memory_bytes: self.config.memory.0,
                console: self.console.stats(),
                devices: self.vm.as_ref().map(Vm::device_registers),
            })),
            (_, VmState::ShuttingDown) => ApiResponse::Conflict("the VM is shutting down".into()),
            (ApiRequest::Pause, VmState::Paused) => {
                ApiResponse::Conflict("the VM is already paused".into())
            }
            (ApiRequest::Pause, _) => {
                self.with_vm(Vm::pause);
                self.state = VmState::Paused;
                ApiResponse::Done
            }
            (ApiRequest::Resume, VmState::Running) => {
                ApiResponse::Conflict("the VM is not paused".into())
            }
            (ApiRequest::Resume, _) => {
                self.with_vm(Vm::resume);
                self.state = VmState::Running;
                ApiResponse::Done
            }
            (ApiRequest::Shutdown, _) => {
                self.finish(Outcome::ApiShutdown);
                ApiResponse::Done
            }
            (ApiRequest::CtrlAltDel, state) => self.ctrl_alt_del(state),
            (ApiRequest::Reboot, _) => match self.reboot() {
                Ok(()) => ApiResponse::Done,
                Err(e) => {
                    let message = format!("reboot failed: {e}");
                    self.finish(Outcome::Failed(message.clone()));
                    ApiResponse::Failed(message)
                }
            },
        }
    }

    /// Types Ctrl-Alt-Del for the guest; 409 when it cannot see the keys.
    fn ctrl_alt_del(&self, state: VmState) -> ApiResponse {
        if state == VmState::Paused {
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
        vm.start()?;
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
            Ok(bytes) if !bytes.is_empty() => {
                self.with_vm(|vm| {
                    lock(&vm.serial()).enqueue_input(&bytes);
                });
            }
            // End of input (or a broken client): stop watching it.
            _ => {
                let _ = ops.remove(Events::empty_raw(fd));
            }
        }
    }
}

impl MutEventSubscriber for Vmm {
    fn init(&mut self, ops: &mut EventOps) {
        let mut fds = vec![
            self.events.stop.as_raw_fd(),
            self.events.reset.as_raw_fd(),
            self.stop_signal.as_raw_fd(),
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
        } else if self.api.as_ref().is_some_and(|a| a.wake.as_raw_fd() == fd) {
            self.handle_api();
        } else if self.console.is_listener(fd) {
            if let Some(client) = self.console.accept() {
                let _ = ops.add(Events::new_raw(client, EventSet::IN));
            }
        } else {
            self.on_console_input(fd, ops);
        }
    }
}

fn start_api(
    config: &VmConfig,
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
    let handle = server::start(path, sender).map_err(|e| VmmError::Api(e.to_string()))?;
    Ok((Some(ApiReceiver { requests: rx, wake }), Some(handle)))
}

/// Builds and runs the VM until it ends; returns how it ended.
pub fn run(config: VmConfig) -> Result<Outcome, VmmError> {
    vcpu::install_kick_handler().map_err(|e| VmmError::Setup(e.into()))?;
    let stop_signal = signals::install_stop_handlers().map_err(VmmError::Setup)?;
    let events = VmEvents {
        stop: EventFd::new(EFD_NONBLOCK).map_err(VmmError::Setup)?,
        reset: EventFd::new(EFD_NONBLOCK).map_err(VmmError::Setup)?,
    };
    // The VM is built first: a bad kernel or config then leaves nothing behind.
    let backends = Backends::open(&config)?;
    let mut vm = Vm::create(&config, &backends, &events)?;
    let console = Console::open(&config.serial)?;
    let (api, api_server) = start_api(&config)?;
    vm.set_console_output(console.output());
    vm.start()?;

    let vmm = Arc::new(Mutex::new(Vmm {
        config,
        events,
        stop_signal,
        vm: Some(vm),
        backends,
        console,
        api,
        shutdown_replies: Vec::new(),
        state: VmState::Running,
        outcome: None,
    }));
    let mut manager = EventManager::<Arc<Mutex<Vmm>>>::new()
        .map_err(|e| VmmError::EventLoop(format!("{e:?}")))?;
    manager.add_subscriber(vmm.clone());
    let outcome = loop {
        manager
            .run()
            .map_err(|e| VmmError::EventLoop(format!("{e:?}")))?;
        if let Some(outcome) = lock(&vmm).outcome.clone() {
            break outcome;
        }
    };
    // Stopped and flushed before the API answers a shutdown request, so a
    // client that sees the answer may open the images at once.
    let flushed = {
        let mut vmm = lock(&vmm);
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
