//! How a VMM process comes to exist: one trait, so a jailer (namespaces,
//! seccomp, an unprivileged user) can wrap the launch later without the
//! supervisor knowing.

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// One VMM to start.
#[derive(Clone, Debug)]
pub struct LaunchRequest {
    /// The VM's name (for a jailer's bookkeeping and messages).
    pub name: String,
    pub vmm: PathBuf,
    pub args: Vec<String>,
    /// Where the VMM's own messages (stdout and stderr) go.
    pub log: PathBuf,
    /// Descriptors the VMM inherits under their own numbers (close-on-exec
    /// in the agent, so no other child gets them).
    pub inherit: Vec<RawFd>,
}

pub trait Launcher: Send + Sync {
    /// Starts the VMM; it must outlive the agent (own session), and take no
    /// terminal or pipe from the agent that would break when the agent dies.
    fn launch(&self, req: &LaunchRequest) -> io::Result<Child>;
}

/// Runs vireo-vmm directly, as the agent's user.
pub struct DirectLauncher;

impl Launcher for DirectLauncher {
    fn launch(&self, req: &LaunchRequest) -> io::Result<Child> {
        let log = File::options().create(true).append(true).open(&req.log)?;
        let mut cmd = Command::new(&req.vmm);
        cmd.args(&req.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let inherit = req.inherit.clone();
        // SAFETY: setsid and fcntl are async-signal-safe and touch only the
        // child. A session of its own keeps the VMM out of the agent's
        // process group: a signal to the agent's group (a terminal's Ctrl-C,
        // init's stop of the agent) does not reach the VMs.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                for &fd in &inherit {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd.spawn()
    }
}
