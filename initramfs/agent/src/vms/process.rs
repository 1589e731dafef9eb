//! A VMM process the agent watches, whether it started it (a child) or
//! re-adopted it after a restart (not a child: its parent was the agent
//! that died). Either way it is held by a pidfd: readable once the process
//! has exited, and a signal sent through it cannot reach a process that
//! reused the pid. A pid file records the pid with its start time
//! (/proc/PID/stat field 22), so a reused pid is never mistaken for the VMM.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, ExitStatus};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;

/// What the run directory's `vmm.pid.json` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidRecord {
    pub pid: i32,
    /// Clock ticks after boot when the process started.
    pub starttime: u64,
    /// Seconds since the epoch, for `started_at`.
    pub started_at: u64,
}

pub struct VmmProcess {
    pub pid: i32,
    pub starttime: u64,
    pidfd: AsyncFd<OwnedFd>,
    /// Set when this agent started it: reaped for its exit status.
    child: Mutex<Option<Child>>,
}

impl VmmProcess {
    /// A VMM this agent just spawned.
    pub fn from_child(child: Child) -> io::Result<Self> {
        let pid = child.id() as i32;
        let pidfd = pidfd_open(pid)?;
        let starttime = start_time(pid)?;
        Ok(Self {
            pid,
            starttime,
            pidfd: watch_fd(pidfd)?,
            child: Mutex::new(Some(child)),
        })
    }

    /// The process a pid file names, if it is still that process.
    pub fn adopt(record: &PidRecord) -> Option<Self> {
        let pidfd = pidfd_open(record.pid).ok()?;
        // Checked after the pidfd exists: if the start time matches now, the
        // pidfd holds the right process even if the pid is reused later.
        if start_time(record.pid).ok()? != record.starttime {
            return None;
        }
        Some(Self {
            pid: record.pid,
            starttime: record.starttime,
            pidfd: watch_fd(pidfd).ok()?,
            child: Mutex::new(None),
        })
    }

    /// Returns once the process has exited (at once if it has).
    pub async fn exited(&self) {
        // A pidfd polls readable when its process ends; nothing is read.
        let _ = self.pidfd.readable().await.map(|mut g| g.retain_ready());
    }

    /// Whether it has exited, without waiting.
    pub fn has_exited(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.pidfd.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one pollfd we own, without waiting.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    }

    /// Collects a child's exit status (None for an adopted process).
    pub fn reap(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn signal(&self, signal: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal on a pidfd we own; no siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.get_ref().as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        match rc {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

/// The pidfd on the runtime's reactor (readable = the process ended).
fn watch_fd(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid open descriptor, and it stays the same
    // one until the AsyncFd (its only owner) drops it.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is new and ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Field 22 of /proc/PID/stat. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its last ')'.
pub fn start_time(pid: i32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // After ')': field 3 (state) is index 0, so field 22 is index 19.
    after
        .split_whitespace()
        .nth(19)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc/PID/stat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_child_is_watched_and_a_wrong_start_time_is_refused() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let p = VmmProcess::from_child(child).unwrap();
        let record = PidRecord {
            pid: p.pid,
            starttime: p.starttime,
            started_at: 0,
        };
        assert!(VmmProcess::adopt(&record).is_some());
        let wrong = PidRecord {
            starttime: p.starttime + 1,
            ..record
        };
        assert!(VmmProcess::adopt(&wrong).is_none());
        assert!(!p.has_exited());
        p.signal(libc::SIGKILL).unwrap();
        p.exited().await;
        assert!(p.has_exited());
        assert!(p.reap().is_some());
    }
}
