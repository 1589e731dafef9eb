//! One shape for every virtio device's I/O thread.
//!
//! A device starts its worker when the driver sets DRIVER_OK. While the VM
//! is paused (for an API pause, a snapshot or a migration's switch-over)
//! the worker is *parked*: its thread is asked to stop between requests and
//! joined, so it touches neither guest memory nor the backend any more, and
//! its state — the live queues, and anything held between requests (a frame
//! read from the tap) — comes back to the device, where it can be saved.
//! Resuming starts a new thread on that same state. A reset drops it.

use std::io;
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::EventFd;

use crate::seccomp::{spawner, ThreadKind};

/// What a device's worker thread runs.
pub trait QueueWorker: Send + 'static {
    /// The seccomp filter its thread confines itself to.
    const SECCOMP: ThreadKind;

    /// Serves the device's queues until `stop` is readable, then returns,
    /// leaving every request it took either completed or untouched.
    fn run(&mut self, stop: &EventFd);
}

/// Where a device's worker is.
pub enum WorkerSlot<W> {
    /// Not activated (or reset).
    Idle,
    Running {
        thread: JoinHandle<W>,
        stop: EventFd,
    },
    /// Stopped between requests while the VM is paused; its state is here.
    Parked(W),
}

impl<W: QueueWorker> WorkerSlot<W> {
    /// Runs `worker` on a thread named `name`, replacing any worker before it.
    pub fn start(&mut self, name: &str, worker: W) -> io::Result<()> {
        self.stop();
        *self = Self::spawn(name, worker)?;
        Ok(())
    }

    /// Holds `worker` parked: it runs on the next `resume`.
    pub fn start_parked(&mut self, worker: W) {
        self.stop();
        *self = WorkerSlot::Parked(worker);
    }

    fn spawn(name: &str, mut worker: W) -> io::Result<Self> {
        let stop = EventFd::new(0)?;
        let seen = stop.try_clone()?;
        // Through the spawner: a vCPU's filter must not have to allow what
        // a worker does (seccomp/spawner.rs).
        let builder = std::thread::Builder::new().name(name.to_string());
        let thread = spawner::spawn(builder, move || {
            crate::seccomp::install(W::SECCOMP);
            worker.run(&seen);
            worker
        })?;
        Ok(WorkerSlot::Running { thread, stop })
    }

    /// Stops a running worker between requests and keeps its state.
    pub fn park(&mut self) {
        if let WorkerSlot::Running { .. } = self {
            *self = match std::mem::replace(self, WorkerSlot::Idle) {
                WorkerSlot::Running { thread, stop } => join(thread, &stop)
                    .map(WorkerSlot::Parked)
                    .unwrap_or(WorkerSlot::Idle),
                other => other,
            };
        }
    }

    /// Runs a parked worker again on a new thread.
    pub fn resume(&mut self, name: &str) -> io::Result<()> {
        if let WorkerSlot::Parked(_) = self {
            if let WorkerSlot::Parked(worker) = std::mem::replace(self, WorkerSlot::Idle) {
                *self = Self::spawn(name, worker)?;
            }
        }
        Ok(())
    }

    /// Stops the worker for good (device reset or teardown); returns its state.
    pub fn stop(&mut self) -> Option<W> {
        match std::mem::replace(self, WorkerSlot::Idle) {
            WorkerSlot::Idle => None,
            WorkerSlot::Parked(worker) => Some(worker),
            WorkerSlot::Running { thread, stop } => join(thread, &stop),
        }
    }

    /// The parked worker, to save its state.
    pub fn parked(&self) -> Option<&W> {
        match self {
            WorkerSlot::Parked(worker) => Some(worker),
            _ => None,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self, WorkerSlot::Running { .. })
    }
}

/// Signals the thread and waits for it. A worker that panicked has lost
/// its state: the device is left idle, and the driver's next reset
/// starts it afresh.
fn join<W>(thread: JoinHandle<W>, stop: &EventFd) -> Option<W> {
    // A full counter still reads as "stop".
    let _ = stop.write(1);
    match thread.join() {
        Ok(worker) => Some(worker),
        Err(_) => {
            eprintln!("vireo-vmm: a virtio device worker panicked; the device stays idle");
            None
        }
    }
}

/// Waits until one of `fds` is readable; returns their readiness in order.
/// EINTR (the vCPU kick signal reaches every thread) just polls again.
pub fn wait_readable<const N: usize>(fds: [i32; N]) -> io::Result<[bool; N]> {
    let mut polled = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    loop {
        // SAFETY: `polled` is a live array of pollfd of the length given.
        let n = unsafe { libc::poll(polled.as_mut_ptr(), N as libc::nfds_t, -1) };
        if n >= 0 {
            return Ok(polled.map(|p| p.revents != 0));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// Counts the notifications it served; stops on `stop`.
    struct Counter {
        notify: EventFd,
        served: u32,
        runs: Arc<AtomicU32>,
    }

    impl QueueWorker for Counter {
        const SECCOMP: ThreadKind = ThreadKind::Block;
        fn run(&mut self, stop: &EventFd) {
            self.runs.fetch_add(1, Ordering::SeqCst);
            loop {
                let [stopped, notified] =
                    wait_readable([stop.as_raw_fd(), self.notify.as_raw_fd()]).unwrap();
                if stopped {
                    return;
                }
                if notified {
                    let _ = self.notify.read();
                    self.served += 1;
                }
            }
        }
    }

    #[test]
    fn park_keeps_the_state_and_resume_goes_on_from_it() {
        let notify = EventFd::new(0).unwrap();
        let runs = Arc::new(AtomicU32::new(0));
        let mut slot = WorkerSlot::Idle;
        let worker = Counter {
            notify: notify.try_clone().unwrap(),
            served: 0,
            runs: runs.clone(),
        };
        slot.start("test-worker", worker).unwrap();
        notify.write(1).unwrap();
        while slot.is_running() && runs.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // Let the first notification be served, then park.
        std::thread::sleep(std::time::Duration::from_millis(50));
        slot.park();
        assert_eq!(slot.parked().map(|w| w.served), Some(1));
        // Parked: a notification waits for the next run.
        notify.write(1).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(slot.parked().map(|w| w.served), Some(1));
        slot.resume("test-worker").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let worker = slot.stop().unwrap();
        assert_eq!((worker.served, runs.load(Ordering::SeqCst)), (2, 2));
        assert!(matches!(slot, WorkerSlot::Idle));
    }
}
