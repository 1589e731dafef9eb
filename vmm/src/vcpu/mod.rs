//! vCPU threads: one per vCPU, each looping on KVM_RUN and dispatching
//! port I/O and MMIO exits to the device buses.
//!
//! The VMM steers the threads through [`VcpuControl`]: it sets the wanted
//! state and "kicks" each thread with a signal so that a vCPU blocked in
//! KVM_RUN (a halted guest CPU) returns with EINTR and looks at it. A kick
//! can land just before a thread enters KVM_RUN and be lost, so the VMM
//! repeats it until every thread has acknowledged.
//!
//! A parked vCPU thread also takes work: `VcpuThreads::on_each_parked` hands
//! every thread a closure to run on its own vCPU (saving its state for a
//! snapshot or a migration), and collects the results.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::devices::bus::{lock, Bus};
use crate::seccomp::seat::Seat;

/// Why the VM stopped running, as far as the vCPUs can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The guest reset the machine (triple fault, PSCI reset): it asked to reboot.
    GuestReset,
    /// The guest powered the machine off.
    GuestPowerOff,
    /// KVM could not run the vCPU; the message says why.
    Error(String),
}

/// How long a parked vCPU thread may take to run its work (saving a vCPU's
/// state takes well under a millisecond).
const PARKED_WORK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a pause waits for the vCPU threads before kicking again.
const KICK_AGAIN: Duration = Duration::from_millis(5);

const WANT_RUN: u8 = 0;
const WANT_PAUSE: u8 = 1;
const WANT_STOP: u8 = 2;

/// Work a parked vCPU thread runs on its own vCPU.
type ParkedWork = Box<dyn FnOnce(&Vcpu) + Send>;

/// Shared between the VMM thread and all vCPU threads.
pub struct VcpuControl {
    wanted: AtomicU8,
    /// Number of vCPU threads parked in the paused state.
    paused: Mutex<usize>,
    /// Per vCPU index: work waiting for that parked thread (guarded by, and
    /// signalled with, `paused`'s lock and `changed`).
    work: Mutex<Vec<Option<ParkedWork>>>,
    changed: Condvar,
    /// The first stop reason reported by any vCPU.
    stop_reason: Mutex<Option<StopReason>>,
    /// Written when a vCPU stops the VM, to wake the event loop.
    pub stop_evt: EventFd,
    /// Auto-converge: percent of the time every vCPU sleeps (`throttle.rs`).
    throttle: AtomicU8,
    /// vCPU threads whose loop has ended (counted under `paused`'s lock,
    /// so `VcpuThreads::stop` waits on `changed` instead of polling).
    finished: AtomicUsize,
}

impl VcpuControl {
    /// `stop_evt` is written whenever a vCPU stops the VM.
    pub fn new(stop_evt: EventFd) -> Arc<Self> {
        Arc::new(Self {
            wanted: AtomicU8::new(WANT_RUN),
            paused: Mutex::new(0),
            work: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            stop_reason: Mutex::new(None),
            stop_evt,
            throttle: AtomicU8::new(0),
            finished: AtomicUsize::new(0),
        })
    }

    /// Records why the VM must stop (the first reason wins) and wakes the VMM.
    pub fn report_stop(&self, reason: StopReason) {
        lock(&self.stop_reason).get_or_insert(reason);
        // If the eventfd write fails the counter is saturated: already signalled.
        let _ = self.stop_evt.write(1);
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        lock(&self.stop_reason).clone()
    }

    /// Called by a vCPU thread between exits. Returns false when it must end.
    fn keep_running(&self, vcpu: &Vcpu) -> bool {
        loop {
            match self.wanted.load(Ordering::Acquire) {
                WANT_RUN => return true,
                WANT_STOP => return false,
                _ => self.park(vcpu),
            }
        }
    }

    /// Waits, without polling, until the VMM wants anything but running:
    /// a vCPU that stopped the VM waits here for its stop.
    fn wait_while_running(&self) {
        let mut paused = lock(&self.paused);
        while self.wanted.load(Ordering::Acquire) == WANT_RUN {
            paused = self.changed.wait(paused).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Counts a vCPU thread whose loop has ended and wakes `stop`.
    fn mark_finished(&self) {
        let _guard = lock(&self.paused);
        self.finished.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_all();
    }

    /// Sleeps `d`, or less if the VMM wants the vCPUs paused or stopped
    /// meanwhile (`pause` and `stop` signal `changed`).
    fn sleep_while_running(&self, d: Duration) {
        let deadline = std::time::Instant::now() + d;
        let mut paused = lock(&self.paused);
        while self.wanted.load(Ordering::Acquire) == WANT_RUN {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            (paused, _) = self
                .changed
                .wait_timeout(paused, left)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn park(&self, vcpu: &Vcpu) {
        let mut paused = lock(&self.paused);
        *paused += 1;
        self.changed.notify_all();
        while self.wanted.load(Ordering::Acquire) == WANT_PAUSE {
            let work = lock(&self.work)
                .get_mut(usize::from(vcpu.index))
                .and_then(Option::take);
            match work {
                // Run without the lock: other threads take their work too.
                Some(work) => {
                    drop(paused);
                    work(vcpu);
                    paused = lock(&self.paused);
                }
                None => paused = self.changed.wait(paused).unwrap_or_else(|e| e.into_inner()),
            }
        }
        *paused -= 1;
        self.changed.notify_all();
    }
}

/// The signal used to kick vCPU threads out of KVM_RUN.
fn kick_signal() -> i32 {
    SIGRTMIN()
}

thread_local! {
    /// This vCPU thread's `kvm_run.immediate_exit`, or null on other threads.
    static IMMEDIATE_EXIT: std::cell::Cell<*mut u8> = const { std::cell::Cell::new(std::ptr::null_mut()) };
}

/// Interrupts KVM_RUN, and makes the next one return at once: a kick that
/// lands just before the thread enters KVM_RUN is then not lost (it would
/// otherwise wait for the next kick, a millisecond or a scheduler tick
/// later), as Firecracker does.
extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let flag = IMMEDIATE_EXIT.with(std::cell::Cell::get);
    if !flag.is_null() {
        // SAFETY: set by this thread's `Vcpu::run` to its own kvm_run page,
        // which stays mapped until `run` clears the pointer again.
        unsafe { std::ptr::write_volatile(flag, 1) };
    }
}

/// Installs the kick handler; it interrupts KVM_RUN (see `on_kick`).
pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
    register_signal_handler(kick_signal(), on_kick)
}

/// What a vCPU thread needs: its KVM fd and the buses.
pub struct Vcpu {
    pub fd: VcpuFd,
    pub index: u8,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub control: Arc<VcpuControl>,
}

impl Vcpu {
    /// Runs the vCPU until the VMM stops it or the guest stops the VM.
    fn run(mut self) {
        let flag: *mut u8 = &mut self.fd.get_kvm_run().immediate_exit;
        IMMEDIATE_EXIT.with(|f| f.set(flag));
        self.run_loop();
        IMMEDIATE_EXIT.with(|f| f.set(std::ptr::null_mut()));
        self.control.mark_finished();
    }

    fn run_loop(&mut self) {
        let control = self.control.clone();
        let mut throttle = throttle::ThrottleClock::new();
        while control.keep_running(self) {
            throttle.maybe_sleep(&control);
            if let Some(reason) = self.run_once() {
                control.report_stop(reason);
                // Wait, parked or not, for the VMM to stop every vCPU.
                while control.keep_running(self) {
                    control.wait_while_running();
                }
                return;
            }
        }
    }

    /// One KVM_RUN; `Some` when the VM must stop.
    fn run_once(&mut self) -> Option<StopReason> {
        match self.fd.run() {
            #[cfg(target_arch = "x86_64")]
            Ok(VcpuExit::IoIn(..) | VcpuExit::IoOut(..)) => {
                self.port_io();
                None
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                self.mmio.read(addr, data);
                None
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                self.mmio.write(addr, data);
                None
            }
            Ok(VcpuExit::Shutdown) => {
                self.report_triple_fault();
                Some(StopReason::GuestReset)
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => Some(system_event(kind)),
            Ok(VcpuExit::Hlt) => Some(StopReason::GuestPowerOff),
            Ok(VcpuExit::FailEntry(reason, cpu)) => Some(StopReason::Error(format!(
                "vCPU {} failed to enter the guest (hardware reason {reason:#x}, host CPU {cpu})",
                self.index
            ))),
            Ok(VcpuExit::InternalError) => Some(StopReason::Error(format!(
                "KVM internal error on vCPU {} (often an instruction KVM cannot emulate)",
                self.index
            ))),
            Ok(other) => Some(StopReason::Error(format!(
                "vCPU {} stopped on an unexpected exit: {other:?}",
                self.index
            ))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // Kicked: the next KVM_RUN enters the guest again (unless
                // kicked again before it).
                self.fd.set_kvm_immediate_exit(0);
                None
            }
            Err(e) => Some(StopReason::Error(format!(
                "KVM_RUN failed on vCPU {}: {e}",
                self.index
            ))),
        }
    }
}

impl Vcpu {
    /// Serves a port I/O exit element by element. kvm-ioctls hands the data
    /// of a string instruction (`rep outsb`, `rep insw`) as one flat slice
    /// of count × size bytes; each element is its own access to the port,
    /// so `kvm_run`'s size and count are read here to split it.
    #[cfg(target_arch = "x86_64")]
    fn port_io(&mut self) {
        let run = self.fd.get_kvm_run();
        // SAFETY: the exit reason is KVM_EXIT_IO, so `io` is the union
        // member the kernel filled in.
        let io = unsafe { run.__bindgen_anon_1.io };
        let (size, count) = (usize::from(io.size), io.count as usize);
        if size == 0 {
            return;
        }
        let base = (run as *mut kvm_bindings::kvm_run).cast::<u8>();
        // SAFETY: the kernel puts count × size data bytes at data_offset
        // inside the kvm_run page(s) mapped for this vCPU, which outlive
        // this call; nothing else touches them while the vCPU is out of KVM_RUN.
        let data = unsafe {
            std::slice::from_raw_parts_mut(base.add(io.data_offset as usize), size * count)
        };
        let port = u64::from(io.port);
        for element in data.chunks_mut(size) {
            if u32::from(io.direction) == kvm_bindings::KVM_EXIT_IO_IN {
                self.pio.read(port, element);
            } else {
                self.pio.write(port, element);
            }
        }
    }

    /// A triple fault resets the machine like a reboot does, but guests
    /// reboot through the i8042 or PSCI: one here usually means the guest
    /// crashed, so say where it was.
    fn report_triple_fault(&self) {
        #[cfg(target_arch = "x86_64")]
        if let Ok(regs) = self.fd.get_regs() {
            eprintln!(
                "vireo-vmm: vCPU {} triple-faulted (guest reset) at rip {:#x}",
                self.index, regs.rip
            );
        }
    }
}

fn system_event(kind: u32) -> StopReason {
    match kind {
        kvm_bindings::KVM_SYSTEM_EVENT_RESET => StopReason::GuestReset,
        kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => StopReason::GuestPowerOff,
        other => StopReason::Error(format!("unexpected system event {other} from the guest")),
    }
}

/// The thread of vCPU `index`, started ahead of it (seccomp/seat.rs).
pub fn seat(index: u8) -> std::io::Result<Seat> {
    Seat::start(
        format!("vireo-vcpu-{index}"),
        crate::seccomp::ThreadKind::Vcpu,
    )
}

/// The VMM's handle on the running vCPU threads.
pub struct VcpuThreads {
    threads: Vec<JoinHandle<()>>,
    control: Arc<VcpuControl>,
}

impl VcpuThreads {
    /// `start`, but every thread parks before its first KVM_RUN: the VM
    /// is paused from the start (a restore, a migration's destination).
    /// Returns without waiting for the threads to get there (on a busy
    /// host, each one's first turn on a core can take milliseconds: an
    /// incoming migration's downtime): `all_parked` waits for them.
    /// `seats`: threads started ahead for the first vCPUs (`seat`); the
    /// others are started now.
    pub fn start_paused(
        seats: Vec<Seat>,
        vcpus: Vec<Vcpu>,
        control: Arc<VcpuControl>,
    ) -> std::io::Result<Self> {
        control.wanted.store(WANT_PAUSE, Ordering::Release);
        Self::start(seats, vcpus, control)
    }

    /// Starts one thread per vCPU, named `vireo-vcpu-N` (`seats` as in
    /// `start_paused`).
    pub fn start(
        seats: Vec<Seat>,
        vcpus: Vec<Vcpu>,
        control: Arc<VcpuControl>,
    ) -> std::io::Result<Self> {
        let mut seats = seats.into_iter();
        let mut threads = Vec::with_capacity(vcpus.len());
        for vcpu in vcpus {
            let seat = match seats.next() {
                Some(seat) => seat,
                None => seat(vcpu.index)?,
            };
            threads.push(seat.run(move || vcpu.run())?);
        }
        Ok(Self { threads, control })
    }

    /// A handle that throttles these vCPUs (a migration's auto-converge).
    pub fn throttle(&self) -> throttle::Throttle {
        use std::os::unix::thread::JoinHandleExt;
        // As integers: pthread_t is a pointer on musl, and not Send.
        let threads = self
            .threads
            .iter()
            .map(|t| t.as_pthread_t() as usize)
            .collect();
        throttle::Throttle::new(self.control.clone(), threads)
    }

    /// Whether every vCPU thread is parked (the VM is paused); threads
    /// just started paused are waited for (`PARKED_WORK_TIMEOUT` at most).
    pub fn all_parked(&self) -> bool {
        if self.control.wanted.load(Ordering::Acquire) != WANT_PAUSE {
            return false;
        }
        let deadline = std::time::Instant::now() + PARKED_WORK_TIMEOUT;
        let mut paused = lock(&self.control.paused);
        while *paused < self.threads.len() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || self.threads.iter().any(|t| t.is_finished()) {
                return false;
            }
            (paused, _) = self
                .control
                .changed
                .wait_timeout(paused, left.min(Duration::from_millis(5)))
                .unwrap_or_else(|e| e.into_inner());
        }
        true
    }

    /// How many vCPU threads there are.
    pub fn count(&self) -> usize {
        self.threads.len()
    }

    fn kick_all(&self) {
        for t in &self.threads {
            if !t.is_finished() {
                // A failed kick (thread just exited) is retried by the caller's loop.
                let _ = t.kill(kick_signal());
            }
        }
    }

    /// Parks every vCPU; returns once all of them are out of the guest.
    pub fn pause(&self) {
        self.control.wanted.store(WANT_PAUSE, Ordering::Release);
        let mut paused = lock(&self.control.paused);
        // Wakes throttled threads from their sleep (`sleep_while_running`).
        self.control.changed.notify_all();
        while *paused < self.threads.len() {
            self.kick_all();
            (paused, _) = self
                .control
                .changed
                .wait_timeout(paused, KICK_AGAIN)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Runs `work` on every vCPU's own thread, which must all be parked
    /// (`pause` first); returns the results in vCPU order, or an error if
    /// a thread did not answer within `PARKED_WORK_TIMEOUT` (it died).
    pub fn on_each_parked<T: Send + 'static>(
        &self,
        work: impl Fn(&Vcpu) -> T + Send + Sync + 'static,
    ) -> Result<Vec<T>, String> {
        let rx = self.hand_out(work);
        {
            let _guard = lock(&self.control.paused);
            self.control.changed.notify_all();
        }
        self.collect(&rx, false)
    }

    /// Pauses the vCPUs with `work` waiting for each: a thread runs it as
    /// soon as it parks, so pausing and reading a running vCPU cost one
    /// round trip to its thread, not two (a migration's switch-over, whose
    /// downtime each wake-up of a thread on a busy host adds to). Returns
    /// once every vCPU is parked and has run `work`, results in vCPU order.
    pub fn pause_with<T: Send + 'static>(
        &self,
        work: impl Fn(&Vcpu) -> T + Send + Sync + 'static,
    ) -> Result<Vec<T>, String> {
        let rx = self.hand_out(work);
        self.control.wanted.store(WANT_PAUSE, Ordering::Release);
        {
            // Wakes throttled threads from their sleep (`sleep_while_running`).
            let _guard = lock(&self.control.paused);
            self.control.changed.notify_all();
        }
        self.kick_all();
        self.collect(&rx, true)
    }

    /// Puts `work` in every vCPU's slot; each thread sends back its result.
    fn hand_out<T: Send + 'static>(
        &self,
        work: impl Fn(&Vcpu) -> T + Send + Sync + 'static,
    ) -> Receiver<(u8, Box<T>)> {
        let work = Arc::new(work);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut slots = lock(&self.control.work);
        slots.resize_with(self.threads.len(), || None);
        for slot in slots.iter_mut() {
            let (work, tx) = (work.clone(), tx.clone());
            *slot = Some(Box::new(move |vcpu: &Vcpu| {
                // Boxed: the channel then holds a pointer per slot, not a
                // block of 31 states (a 200 KiB allocation per pause).
                let r = Box::new(work(vcpu));
                let _ = tx.send((vcpu.index, r));
            }));
        }
        rx
    }

    /// Every thread's result, in vCPU order; with `kicking`, the threads
    /// not yet answered are kicked every few milliseconds (a kick can be
    /// lost just before KVM_RUN).
    fn collect<T>(&self, rx: &Receiver<(u8, Box<T>)>, kicking: bool) -> Result<Vec<T>, String> {
        let deadline = std::time::Instant::now() + PARKED_WORK_TIMEOUT;
        let awake_until = std::time::Instant::now() + crate::spin::BUDGET;
        let mut results: Vec<(u8, Box<T>)> = Vec::with_capacity(self.threads.len());
        while results.len() < self.threads.len() {
            if let Some(result) = crate::spin::until(awake_until, || rx.try_recv().ok()) {
                results.push(result);
                continue;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let wait = if kicking { left.min(KICK_AGAIN) } else { left };
            match rx.recv_timeout(wait) {
                Ok(result) => results.push(result),
                Err(RecvTimeoutError::Timeout) if kicking && !left.is_zero() => self.kick_all(),
                Err(_) => {
                    lock(&self.control.work).iter_mut().for_each(|w| *w = None);
                    return Err(format!(
                        "{} of {} vCPU threads did not answer",
                        self.threads.len() - results.len(),
                        self.threads.len()
                    ));
                }
            }
        }
        results.sort_by_key(|(index, _)| *index);
        Ok(results.into_iter().map(|(_, r)| *r).collect())
    }

    pub fn resume(&self) {
        self.control.wanted.store(WANT_RUN, Ordering::Release);
        let _guard = lock(&self.control.paused);
        self.control.changed.notify_all();
    }

    /// Stops and joins every vCPU thread. Each thread's end wakes this at
    /// once (a guest's reset is torn down without a polling interval); a
    /// thread not yet out of the guest is kicked again every `KICK_AGAIN`.
    pub fn stop(mut self) {
        self.control.wanted.store(WANT_STOP, Ordering::Release);
        let mut guard = lock(&self.control.paused);
        self.control.changed.notify_all();
        while self.control.finished.load(Ordering::Acquire) < self.threads.len()
            && self.threads.iter().any(|t| !t.is_finished())
        {
            self.kick_all();
            (guard, _) = self
                .control
                .changed
                .wait_timeout(guard, KICK_AGAIN)
                .unwrap_or_else(|e| e.into_inner());
        }
        drop(guard);
        for t in self.threads.drain(..) {
            // A vCPU thread that panicked has already reported nothing useful.
            let _ = t.join();
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "state_x86_64.rs"]
pub mod state;
pub mod throttle;
