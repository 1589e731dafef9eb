//! The event loop's side of an outgoing migration: starting the
//! `vireo-migrate` thread with handles on the VM, answering its
//! switch-over request, and what the VM becomes after it ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::EventFd;

use super::context::{MigrationStatus, Phase};
use super::copy::SourceDisk;
use super::forward::SourceNic;
use super::send::{Source, ToMain};
use super::transport::TlsFiles;
use super::MigrateRequest;
use crate::backends::Backends;
use crate::config::VmConfig;
use crate::vm::Vm;

/// A migration in flight, held by the event loop.
pub struct Outgoing {
    thread: Option<JoinHandle<()>>,
    from_thread: Receiver<ToMain>,
    cancel: Arc<AtomicBool>,
    /// The VM was paused here for the switch-over (resume it on failure).
    pub paused_here: bool,
    /// Exit once the destination runs the VM (else stay, VM-less).
    pub exit_when_done: bool,
    /// After Completed the thread goes on to time the VM-less stay
    /// (`linger_ms`): it is joined on LingerOver or at teardown.
    lingers: bool,
}

/// What the event loop must do after a message from the thread.
pub enum Next {
    /// Nothing (yet).
    Wait,
    /// Pause, flush and capture; answer on the sender.
    Switchover(mpsc::Sender<Result<super::send::Captured, String>>),
    /// Resume the VM if it was paused for this migration.
    Resume,
    /// The VM runs at the destination: leave.
    Leave,
    /// Handed over, unconfirmed: stay paused.
    StayPaused,
    /// VM-less for `linger_ms` with nobody stopping this VMM: exit.
    Exit,
}

impl Outgoing {
    /// Starts the migration thread on `vm`; `wake` is the event loop's
    /// eventfd for this thread's messages.
    pub fn start(
        req: MigrateRequest,
        tls: TlsFiles,
        (vm, config, backends): (&Vm, &VmConfig, &Backends),
        status: Arc<Mutex<MigrationStatus>>,
        wake: &EventFd,
    ) -> Result<Self, String> {
        let threads = vm.threads().ok_or("the VM has not started")?;
        let mut config = config.clone();
        for (net, port) in config.nets.iter_mut().zip(&backends.nets) {
            net.mac = Some(crate::config::net::MacAddr(port.mac));
        }
        let (to_main, from_thread) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let exit_when_done = req.exit_when_done;
        let lingers = req.lingers();
        let source = Source {
            req,
            tls,
            config,
            ram: vm.memory().clone(),
            vm_fd: vm.vm_fd().clone(),
            disks: backends.disks.iter().map(SourceDisk::of).collect(),
            throttle: threads.throttle(),
            status,
            cancel: cancel.clone(),
            to_main,
            wake: wake.try_clone().map_err(|e| e.to_string())?,
            leftover: Vec::new(),
            nics: backends
                .nets
                .iter()
                .map(|port| SourceNic {
                    tap: port.tap.clone(),
                    mac: port.mac,
                })
                .collect(),
        };
        let thread = std::thread::Builder::new()
            .name("vireo-migrate".into())
            .spawn(move || {
                crate::seccomp::install(crate::seccomp::ThreadKind::Migrate);
                source.run()
            })
            .map_err(|e| e.to_string())?;
        Ok(Self {
            thread: Some(thread),
            from_thread,
            cancel,
            paused_here: false,
            exit_when_done,
            lingers,
        })
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// The thread's next message, turned into what the event loop does.
    pub fn next_step(&mut self) -> Next {
        match self.from_thread.try_recv() {
            Ok(ToMain::Switchover(reply)) => Next::Switchover(reply),
            Ok(ToMain::Aborted) => {
                self.join();
                Next::Resume
            }
            Ok(ToMain::Completed) => {
                if !self.lingers {
                    self.join();
                }
                Next::Leave
            }
            Ok(ToMain::LingerOver) => {
                self.join();
                Next::Exit
            }
            Ok(ToMain::Unknown) => {
                self.join();
                Next::StayPaused
            }
            Err(_) => Next::Wait,
        }
    }

    pub fn finished(&self) -> bool {
        self.thread.is_none()
    }

    /// Stops the migration and waits for its thread (the VMM is going
    /// away): a switch-over request goes unanswered, which fails it.
    pub fn abandon(mut self) {
        self.cancel();
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            // Dropping a Switchover sender unblocks the thread.
            drop(self.from_thread.try_recv());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.join();
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The status shown when no migration has run.
pub fn idle_status() -> MigrationStatus {
    MigrationStatus {
        phase: Phase::None,
        ..Default::default()
    }
}
