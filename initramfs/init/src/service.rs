//! Supervised processes (the agent, the debug shell): started, restarted
//! after they die, stopped at shutdown. Children are reaped by the main loop
//! (`waitpid(-1)`), which hands each exit to the service that owned the pid.

use std::os::unix::process::CommandExt;
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
            self.start();
        }
    }

    /// How long the main loop may sleep before this service needs it.
    pub fn next_due(&self, now: Instant) -> Option<Duration> {
        self.restart_at.map(|t| t.saturating_duration_since(now))
    }

    fn start(&mut self) {
        self.restart_at = None;
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
        let delay = match self.started.elapsed() < MIN_HEALTHY_RUN {
            true => SLOW_RESTART,
            false => QUICK_RESTART,
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
