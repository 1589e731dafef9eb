//! `vireo-spawn`: the thread that starts device workers.
//!
//! A worker starts when the driver writes DRIVER_OK, that is on a vCPU
//! thread. A thread spawned there would inherit the vCPU filter, so that
//! filter would have to allow everything a disk or tap worker does
//! (pread, pwrite, fallocate, fdatasync, ...). Instead the vCPU hands the
//! spawn to this thread, whose filter is the workers' lists together, and
//! waits for the handle: the vCPU filter keeps only what a vCPU does.

use std::io;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread::{Builder, JoinHandle};

use super::ThreadKind;

type Job = Box<dyn FnOnce() + Send>;

static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

/// Starts the spawner thread (once per process; later calls do nothing).
/// Called by the main thread before it confines itself.
pub fn start() -> io::Result<()> {
    if SPAWNER.get().is_some() {
        return Ok(());
    }
    let (tx, rx) = mpsc::channel::<Job>();
    Builder::new().name("vireo-spawn".into()).spawn(move || {
        super::install(ThreadKind::Spawner);
        for job in rx {
            job();
        }
    })?;
    let _ = SPAWNER.set(Mutex::new(tx));
    Ok(())
}

/// Spawns `f` as `builder` says, on the spawner thread when there is one
/// (the VMM), else here (unit tests). Returns once the thread exists.
pub fn spawn<T, F>(builder: Builder, f: F) -> io::Result<JoinHandle<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let Some(spawner) = SPAWNER.get() else {
        return builder.spawn(f);
    };
    let (reply, answer) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = reply.send(builder.spawn(f));
    });
    let sent = spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .is_ok();
    let gone = || io::Error::other("the vireo-spawn thread is gone");
    if !sent {
        return Err(gone());
    }
    answer.recv().map_err(|_| gone())?
}
