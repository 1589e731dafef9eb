//! Supervised processes (the agent, the membership daemon, the debug shell):
//! started, restarted after they die, stopped at shutdown. Children are
//! reaped by the main loop (`waitpid(-1)`), which hands each exit to the
//! service that owned the pid. A service may run only while a file exists
//! (vireo-membershipd: while the node has a corosync.conf), and a one-shot
//! runs until it succeeds once (the zero-touch cluster join).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::log;

/// Restart delay for a service that ran a while: well inside the 1 s promise.
const QUICK_RESTART: Duration = Duration::from_millis(100);
/// A service that died sooner than this after starting is crash-looping:
/// wait longer (still under a second) so it does not eat a core.
const MIN_HEALTHY_RUN: Duration = Duration::from_secs(1);
const SLOW_RESTART: Duration = Duration::from_millis(500);
/// A one-shot that failed tries again this much later (the network may not
/// be up yet, the member may be rebooting).
const ONESHOT_RETRY: Duration = Duration::from_secs(5);

pub struct Service {
    pub name: &'static str,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    /// Make the child a session leader (the shell needs its own session to
    /// take the console as controlling terminal).
    new_session: bool,
    /// What `stop` sends: SIGTERM, or SIGKILL for what ignores it (an
    /// interactive shell does).
    stop_signal: Signal,
    pid: Option<Pid>,
    started: Instant,
    restart_at: Option<Instant>,
    /// Runs only while this file exists.
    condition: Option<PathBuf>,
    /// Done once it exits 0.
    oneshot: bool,
    /// Restarted once this file appears (it was not there at its start).
    restart_when_created: Option<PathBuf>,
    /// Whether that file existed when it last started.
    started_with_file: bool,
}

impl Service {
    pub fn new(name: &'static str, argv: Vec<String>) -> Service {
        Service {
            name,
            argv,
            env: Vec::new(),
            new_session: false,
            stop_signal: Signal::SIGTERM,
            pid: None,
            started: Instant::now(),
            restart_at: Some(Instant::now()),
            condition: None,
            oneshot: false,
            restart_when_created: None,
            started_with_file: false,
        }
    }

    /// Restarted when `path` appears while it runs (the agent opens the
    /// cluster's store only at its start, and a join writes corosync.conf
    /// after it started).
    pub fn restart_when_created(mut self, path: &str) -> Service {
        self.restart_when_created = Some(path.into());
        self
    }

    fn watched_file_exists(&self) -> bool {
        self.restart_when_created
            .as_ref()
            .is_some_and(|p| p.exists())
    }

    /// Runs only while `path` exists: not started before, not restarted after.
    pub fn only_while(mut self, path: &str) -> Service {
        self.condition = Some(path.into());
        self
    }

    /// Runs until it exits 0 once (retried every few seconds until then).
    pub fn oneshot(mut self) -> Service {
        self.oneshot = true;
        self
    }

    fn allowed(&self) -> bool {
        self.condition.as_ref().is_none_or(|p| p.exists())
    }

    /// A conditional service that is not running: whether it should now
    /// (its file appeared). Called on SIGHUP and every few seconds.
    pub fn recheck(&mut self, now: Instant) {
        if let Some(pid) = self.pid {
            if !self.started_with_file && self.watched_file_exists() {
                let path = self.restart_when_created.as_ref();
                let path = path.map(|p| p.display().to_string()).unwrap_or_default();
                log!("{}: {path} appeared; restarting it", self.name);
                // Its exit is reaped as any other's: restarted at once.
                self.started_with_file = true;
                let _ = kill(pid, self.stop_signal);
            }
        }
        if self.pid.is_none()
            && self.restart_at.is_none()
            && self.condition.is_some()
            && !self.oneshot
            && self.allowed()
        {
            self.restart_at = Some(now);
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Service {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn session(mut self) -> Service {
        self.new_session = true;
        self
    }

    pub fn stop_signal(mut self, sig: Signal) -> Service {
        self.stop_signal = sig;
        self
    }

    pub fn pid(&self) -> Option<Pid> {
        self.pid
    }

    /// Starts it if it is due (not running and its restart time has come).
    pub fn poll(&mut self, now: Instant) {
        if self.pid.is_none() && self.restart_at.is_some_and(|t| now >= t) {
            if !self.allowed() {
                // Its file is gone (or not there yet): wait for a recheck.
                self.restart_at = None;
                return;
            }
            self.start();
        }
    }

    /// How long the main loop may sleep before this service needs it.
    pub fn next_due(&self, now: Instant) -> Option<Duration> {
        self.restart_at.map(|t| t.saturating_duration_since(now))
    }

    fn start(&mut self) {
        self.restart_at = None;
        self.started_with_file = self.watched_file_exists();
        let new_session = self.new_session;
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]).envs(self.env.iter().cloned());
        // SAFETY: between fork and exec only async-signal-safe calls:
        // sigprocmask and setsid. PID 1 blocks its signals to read them with
        // sigtimedwait; children must not inherit that mask.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::signal::sigprocmask(
                    SigmaskHow::SIG_SETMASK,
                    Some(&SigSet::empty()),
                    None,
                )?;
                if new_session {
                    nix::unistd::setsid()?;
                }
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => {
                let pid = Pid::from_raw(child.id() as i32);
                log!("{} started (pid {pid})", self.name);
                self.pid = Some(pid);
                self.started = Instant::now();
            }
            Err(e) => {
                log!(
                    "{}: cannot start {}: {e}; retrying",
                    self.name,
                    self.argv[0]
                );
                self.restart_at = Some(Instant::now() + SLOW_RESTART);
            }
        }
    }

    /// Called by the reaper; true if `status` was this service's process.
    pub fn on_exit(&mut self, status: &WaitStatus) -> bool {
        if status.pid() != self.pid {
            return false;
        }
        self.pid = None;
        if self.oneshot && matches!(status, WaitStatus::Exited(_, 0)) {
            log!("{} done", self.name);
            self.restart_at = None;
            return true;
        }
        if !self.allowed() {
            log!(
                "{} exited ({}); not restarted: {} is gone",
                self.name,
                describe(status),
                self.condition
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            self.restart_at = None;
            return true;
        }
        let delay = match (self.oneshot, self.started.elapsed() < MIN_HEALTHY_RUN) {
            (true, _) => ONESHOT_RETRY,
            (false, true) => SLOW_RESTART,
            (false, false) => QUICK_RESTART,
        };
        log!(
            "{} exited ({}); restarting in {delay:?}",
            self.name,
            describe(status)
        );
        self.restart_at = Some(Instant::now() + delay);
        true
    }

    /// Stops it for good: its stop signal now; the caller waits and reaps.
    pub fn stop(&mut self) {
        self.restart_at = None;
        if let Some(pid) = self.pid {
            let _ = kill(pid, self.stop_signal);
        }
    }

    /// Marks it gone without a restart (reaped during shutdown).
    pub fn forget(&mut self, status: &WaitStatus) -> bool {
        let ours = status.pid() == self.pid;
        if ours {
            self.pid = None;
        }
        ours
    }
}

pub fn describe(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("signal {sig}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::waitpid;

    fn run_to_exit(s: &mut Service) -> WaitStatus {
        s.poll(Instant::now());
        let st = waitpid(s.pid().expect("started"), None).unwrap();
        assert!(s.on_exit(&st));
        st
    }

    #[test]
    fn restarted_once_its_file_appears() {
        let dir = std::env::temp_dir().join(format!("vireo-init-watch-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let flag = dir.join("corosync.conf");
        let _ = std::fs::remove_file(&flag);
        let argv = vec!["/bin/sleep".into(), "30".into()];
        let mut s = Service::new("w", argv).restart_when_created(flag.to_str().unwrap());
        s.poll(Instant::now());
        s.recheck(Instant::now());
        let first = s.pid().expect("started");
        std::fs::write(&flag, "x").unwrap();
        s.recheck(Instant::now());
        let st = waitpid(first, None).unwrap();
        assert!(
            matches!(st, WaitStatus::Signaled(_, Signal::SIGTERM, _)),
            "{st:?}"
        );
        assert!(s.on_exit(&st));
        s.poll(Instant::now() + Duration::from_secs(1));
        let second = s.pid().expect("restarted");
        s.recheck(Instant::now());
        assert_eq!(s.pid(), Some(second), "restarted a second time");
        s.stop();
        let _ = waitpid(second, None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn conditional_and_oneshot_services() {
        let dir = std::env::temp_dir().join(format!("vireo-init-svc-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let flag = dir.join("conf");
        let _ = std::fs::remove_file(&flag);
        let mut s = Service::new("t", vec!["/bin/true".into()]).only_while(flag.to_str().unwrap());
        s.poll(Instant::now());
        assert_eq!(s.pid(), None, "started without its file");
        std::fs::write(&flag, "x").unwrap();
        s.recheck(Instant::now());
        run_to_exit(&mut s);
        assert!(
            s.next_due(Instant::now()).is_some(),
            "an ordinary exit restarts"
        );
        std::fs::remove_file(&flag).unwrap();
        s.poll(Instant::now() + Duration::from_secs(1));
        assert_eq!(
            (s.pid(), s.next_due(Instant::now())),
            (None, None),
            "restarted without its file"
        );

        let mut once = Service::new("o", vec!["/bin/true".into()]).oneshot();
        run_to_exit(&mut once);
        assert_eq!(
            once.next_due(Instant::now()),
            None,
            "a finished one-shot runs again"
        );
        let mut retry = Service::new("r", vec!["/bin/false".into()]).oneshot();
        run_to_exit(&mut retry);
        assert!(retry.next_due(Instant::now()).unwrap() > Duration::from_secs(4));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
