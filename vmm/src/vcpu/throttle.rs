//! vCPU throttling for auto-converge: when a guest dirties memory faster
//! than a migration sends it, its vCPUs are made to sleep a share of the
//! time. A vCPU thread that comes out of KVM_RUN at least `PERIOD` after
//! its last sleep sleeps `PERIOD × p / (100 − p)`, so it runs (100 − p)% of
//! the time; a kicker thread interrupts KVM_RUN every `PERIOD` so a guest
//! that never exits on its own is throttled too (QEMU does the same).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{kick_signal, VcpuControl};

pub const PERIOD: Duration = Duration::from_millis(10);
/// QEMU's ceiling too: the guest must still make some progress.
pub const MAX_PERCENT: u8 = 99;

/// Per vCPU thread: when it last slept.
pub struct ThrottleClock(Instant);

impl ThrottleClock {
    pub fn new() -> Self {
        Self(Instant::now())
    }

    /// Sleeps if throttling asks for it now; a pause or stop of the vCPUs
    /// ends the sleep at once (at 99% it would last 990 ms, all of it
    /// downtime when a migration pauses the guest for its switch-over).
    pub fn maybe_sleep(&mut self, control: &VcpuControl) {
        let percent = control.throttle.load(Ordering::Relaxed);
        if percent == 0 || self.0.elapsed() < PERIOD {
            return;
        }
        let p = u32::from(percent.min(MAX_PERCENT));
        control.sleep_while_running(PERIOD * p / (100 - p));
        self.0 = Instant::now();
    }
}

impl Default for ThrottleClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Sets the throttle and kicks the vCPUs while it is on. Dropping it
/// turns throttling off and stops the kicker.
pub struct Throttle {
    control: Arc<VcpuControl>,
    /// pthread_t values, as integers.
    threads: Vec<usize>,
    kicker: Option<(JoinHandle<()>, Arc<AtomicBool>)>,
}

impl Throttle {
    pub(super) fn new(control: Arc<VcpuControl>, threads: Vec<usize>) -> Self {
        Self {
            control,
            threads,
            kicker: None,
        }
    }

    pub fn percent(&self) -> u8 {
        self.control.throttle.load(Ordering::Relaxed)
    }

    /// Sets the share of time the vCPUs sleep (0 turns throttling off).
    pub fn set(&mut self, percent: u8) {
        self.control
            .throttle
            .store(percent.min(MAX_PERCENT), Ordering::Relaxed);
        if percent > 0 && self.kicker.is_none() {
            self.start_kicker();
        }
        if percent == 0 {
            self.stop_kicker();
        }
    }

    fn start_kicker(&mut self) {
        let stop = Arc::new(AtomicBool::new(false));
        let (threads, stopping) = (self.threads.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("vireo-throttle".into())
            .spawn(move || {
                crate::seccomp::install(crate::seccomp::ThreadKind::Throttle);
                while !stopping.load(Ordering::Relaxed) {
                    for &t in &threads {
                        // SAFETY: the vCPU threads outlive this kicker: the
                        // VMM stops the migration (dropping the Throttle,
                        // which joins this thread) before it joins them.
                        unsafe { libc::pthread_kill(t as libc::pthread_t, kick_signal()) };
                    }
                    std::thread::sleep(PERIOD);
                }
            });
        if let Ok(handle) = handle {
            self.kicker = Some((handle, stop));
        }
    }

    fn stop_kicker(&mut self) {
        if let Some((handle, stop)) = self.kicker.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{WANT_PAUSE, WANT_RUN};
    use super::*;
    use crate::devices::bus::lock;
    use vmm_sys_util::eventfd::EventFd;

    fn throttled_sleep_ended_by(wanted: u8) -> Duration {
        let control = VcpuControl::new(EventFd::new(0).unwrap());
        control.throttle.store(MAX_PERCENT, Ordering::Relaxed);
        let c = control.clone();
        let sleeper = std::thread::spawn(move || {
            let mut clock = ThrottleClock(Instant::now() - PERIOD);
            let start = Instant::now();
            clock.maybe_sleep(&c);
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(50));
        control.wanted.store(wanted, Ordering::Release);
        drop(lock(&control.paused));
        control.changed.notify_all();
        sleeper.join().unwrap()
    }

    #[test]
    fn a_pause_ends_a_throttle_sleep() {
        // At 99% the sleep is 990 ms; the pause must not wait it out.
        let slept = throttled_sleep_ended_by(WANT_PAUSE);
        assert!(slept < Duration::from_millis(500), "slept {slept:?}");
    }

    #[test]
    fn running_on_the_sleep_lasts_its_share() {
        let slept = throttled_sleep_ended_by(WANT_RUN);
        assert!(slept >= PERIOD * 99, "slept {slept:?}");
    }
}
