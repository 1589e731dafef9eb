//! What the agent hands a VMM at spawn, so that a fresh boot runs at once:
//! the console's first connection (made before the VMM exists, so no byte
//! the guest prints is lost) and a pipe on which the VMM says it is up
//! (no polling for the API socket, no paused start and resume).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::process::VmmProcess;
use super::Slot;
use crate::error::ApiError;

/// How long a VMM that closed its readiness pipe unwritten may take to
/// exit and write its exit record.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Both socket pairs: the agent's ends and the VMM's.
pub struct Handoff {
    console: UnixStream,
    ready: UnixStream,
    vmm_console: UnixStream,
    vmm_ready: UnixStream,
}

/// The agent's ends, once the VMM has its own.
pub struct AgentEnds {
    pub console: tokio::net::UnixStream,
    pub ready: tokio::net::UnixStream,
}

impl Handoff {
    pub fn new() -> io::Result<Self> {
        let (console, vmm_console) = UnixStream::pair()?;
        let (ready, vmm_ready) = UnixStream::pair()?;
        Ok(Self {
            console,
            ready,
            vmm_console,
            vmm_ready,
        })
    }

    /// The VMM's command-line arguments that name its ends.
    pub fn args(&self) -> Vec<String> {
        super::launch_args::handoff_args(self.vmm_console.as_raw_fd(), self.vmm_ready.as_raw_fd())
    }

    /// The VMM's ends, for it to inherit (dropping them after the spawn
    /// closes them here), and the agent's.
    pub fn split(self) -> (Vec<OwnedFd>, AgentHalf) {
        let vmm = vec![self.vmm_console.into(), self.vmm_ready.into()];
        let agent = AgentHalf {
            console: self.console,
            ready: self.ready,
        };
        (vmm, agent)
    }
}

/// The agent's ends before the VMM runs.
pub struct AgentHalf {
    console: UnixStream,
    ready: UnixStream,
}

impl AgentHalf {
    /// The agent's ends, ready for tokio. Call after the spawn.
    pub fn into_agent_ends(self) -> io::Result<AgentEnds> {
        let to_tokio = |s: UnixStream| {
            s.set_nonblocking(true)?;
            tokio::net::UnixStream::from_std(s)
        };
        Ok(AgentEnds {
            console: to_tokio(self.console)?,
            ready: to_tokio(self.ready)?,
        })
    }
}

/// Waits for the VMM's "ready" on `ready`. A VMM that closes it unwritten
/// failed to build or start the VM: its exit record says why.
pub async fn wait_started(
    slot: &Slot,
    process: &VmmProcess,
    mut ready: tokio::net::UnixStream,
    within: Duration,
) -> Result<(), ApiError> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(within, ready.read(&mut byte)).await {
        Ok(Ok(1..)) => Ok(()),
        Ok(_) => {
            let _ = tokio::time::timeout(EXIT_GRACE, process.exited()).await;
            Err(super::supervisor::start_failure(slot))
        }
        Err(_) => Err(ApiError::internal(format!(
            "the VMM did not say it was up within {within:?}"
        ))),
    }
}
