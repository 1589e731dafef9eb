//! How a VMM process comes to exist: one trait, so the jailed launch
//! (`jailed.rs`: namespaces, an unprivileged user, a cgroup) and the direct
//! one are the same to the supervisor.

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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
    /// What a jailed VMM may see and use; a direct launch ignores it.
    pub confine: Confinement,
    /// Descriptors the VMM inherits under their own numbers (close-on-exec
    /// in the agent, so no other child gets them).
    pub inherit: Vec<RawFd>,
}

/// The host files one VMM needs and the limits its cgroup gets. Every
/// path the VMM's arguments name is in one of the lists.
#[derive(Clone, Debug, Default)]
pub struct Confinement {
    /// The VM's uuid: names its jail, its cgroup and picks its uid.
    pub id: String,
    /// The directory the VMM writes: its sockets and exit record.
    pub vmm_dir: PathBuf,
    /// Kernel, initrd, read-only disks.
    pub read_files: Vec<PathBuf>,
    /// Disk images it writes.
    pub write_files: Vec<PathBuf>,
    /// Directories of qcow2 backing chains (read-only).
    pub read_dirs: Vec<PathBuf>,
    /// Its staging directory in each pool of its writable disks (writable:
    /// where a live backup has it create the disks' overlays).
    pub staging_dirs: Vec<PathBuf>,
    /// cgroup `cpu.max` ("QUOTA PERIOD", µs).
    pub cpu_max: Option<String>,
    /// cgroup `memory.max` in bytes.
    pub memory_max: Option<u64>,
    /// cgroup `io.max` lines ("MAJ:MIN rbps=N ...").
    pub io_max: Vec<String>,
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
        let mut cmd = Command::new(&req.vmm);
        cmd.args(&req.args);
        spawn_detached(cmd, &req.log, &req.inherit)
    }
}

/// Spawns `cmd` in a session of its own, its output appended to `log`,
/// with the descriptors `inherit` left open across the exec.
pub(super) fn spawn_detached(mut cmd: Command, log: &Path, inherit: &[RawFd]) -> io::Result<Child> {
    let log = File::options().create(true).append(true).open(log)?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let inherit = inherit.to_vec();
    // SAFETY: setsid and fcntl are async-signal-safe and touch only the
    // child. A session of its own keeps the VMM out of the agent's process
    // group: a signal to the agent's group (a terminal's Ctrl-C, init's
    // stop of the agent) does not reach the VMs.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            for &fd in &inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}
