//! Seats: threads started ahead of their work. A migration's destination
//! starts its vCPU and API threads while guest memory streams in; each
//! loads its filter then, with nothing waiting, and at the switch-over it
//! only has to be handed its job: the clones and the filter loads (a few
//! hundred BPF instructions each, checked and compiled by the kernel) stay
//! out of the guest's downtime, where they competed for the host's cores
//! with the source's last steps.

use std::io;
use std::sync::mpsc;
use std::thread::{Builder, JoinHandle};

use super::ThreadKind;

type Job = Box<dyn FnOnce() + Send>;

/// A named thread, confined as `kind`, waiting for one job. Dropped
/// without one (the migration failed), it ends.
pub struct Seat {
    job: mpsc::SyncSender<Job>,
    thread: JoinHandle<()>,
}

impl Seat {
    pub fn start(name: String, kind: ThreadKind) -> io::Result<Seat> {
        let (job, jobs) = mpsc::sync_channel::<Job>(1);
        let thread = Builder::new().name(name).spawn(move || {
            super::install(kind);
            if let Ok(job) = jobs.recv() {
                job();
            }
        })?;
        Ok(Seat { job, thread })
    }

    /// Runs `work` on this thread; its handle joins when `work` returns.
    pub fn run(self, work: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
        self.job
            .send(Box::new(work))
            .map_err(|_| io::Error::other("a seat's thread ended before its job"))?;
        Ok(self.thread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seat_runs_its_job_on_its_own_named_thread() {
        let seat = Seat::start("vireo-test-seat".into(), ThreadKind::Api).unwrap();
        let (tx, rx) = mpsc::channel();
        let handle = seat
            .run(move || {
                let name = std::thread::current().name().map(String::from);
                tx.send(name).unwrap();
            })
            .unwrap();
        handle.join().unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("vireo-test-seat"));
    }

    #[test]
    fn a_seat_dropped_without_a_job_ends() {
        let seat = Seat::start("vireo-test-idle".into(), ThreadKind::Api).unwrap();
        let Seat { job, thread } = seat;
        drop(job);
        thread.join().unwrap();
    }
}
