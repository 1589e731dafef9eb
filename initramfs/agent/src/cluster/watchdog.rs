//! The fencing watchdog behind a trait: the node is reset unless the agent
//! feeds it, and the agent feeds it only while the node is quorate.
//!
//! - `DeviceWatchdog`: Linux's `/dev/watchdog` (softdog, i6300esb, a
//!   board's own). Its countdown survives the agent: a crashed or hung
//!   agent stops feeding and the node is reset. Closing it with the magic
//!   `V` first disarms it (what `disarm` does; a driver built with
//!   `nowayout` keeps it armed anyway, which is safe).
//! - `FileWatchdog`: for the host-tier tests, where resetting the machine is
//!   not an option: arming and each feed rewrite a file
//!   (`armed TIMEOUT_MS`, its mtime the last feed) that a supervisor outside
//!   the agent watches; once it is older than the timeout the supervisor
//!   kills every process of the node (tests/cluster/src/agents.rs).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

pub trait Watchdog: Send {
    /// Starts the countdown (idempotent: arming again only feeds).
    fn arm(&mut self, timeout: Duration) -> std::io::Result<()>;
    fn feed(&mut self) -> std::io::Result<()>;
    /// Stops the countdown (no HA VM left here to fence).
    fn disarm(&mut self) -> std::io::Result<()>;
}

/// Which watchdog `--watchdog` names: a device path, or `file:PATH`.
pub fn from_arg(arg: &str) -> Box<dyn Watchdog> {
    match arg.strip_prefix("file:") {
        Some(path) => Box::new(FileWatchdog {
            path: path.into(),
            timeout: None,
        }),
        None => Box::new(DeviceWatchdog {
            path: arg.into(),
            file: None,
        }),
    }
}

pub struct DeviceWatchdog {
    path: PathBuf,
    file: Option<File>,
}

/// `WDIOC_SETTIMEOUT` = `_IOWR('W', 6, int)` (linux/watchdog.h).
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;

impl Watchdog for DeviceWatchdog {
    fn arm(&mut self, timeout: Duration) -> std::io::Result<()> {
        if self.file.is_some() {
            return self.feed();
        }
        let file = File::options().write(true).open(&self.path)?;
        let mut secs: libc::c_int = timeout.as_secs().max(1) as libc::c_int;
        // SAFETY: the fd is open for the call's duration and `secs` is a
        // valid int the driver reads and overwrites with what it set.
        // `as _`: the request is a c_ulong with glibc, a c_int with musl.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT as _, &mut secs) };
        let wanted = timeout.as_secs().max(1) as libc::c_int;
        if rc != 0 || secs > wanted {
            // Survivors wait for the configured timeout: a longer one
            // here would let them restart VMs this node still runs.
            let _ = (&file).write_all(b"V");
            return Err(std::io::Error::other(format!(
                "cannot set a {wanted} s timeout (the driver has {secs} s): not armed"
            )));
        }
        self.file = Some(file);
        self.feed()
    }

    fn feed(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(b"\0"),
            None => Ok(()),
        }
    }

    fn disarm(&mut self) -> std::io::Result<()> {
        match self.file.take() {
            Some(mut f) => f.write_all(b"V"),
            None => Ok(()),
        }
    }
}

pub struct FileWatchdog {
    path: PathBuf,
    timeout: Option<Duration>,
}

impl FileWatchdog {
    fn write(&self, text: &str) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
    }
}

impl Watchdog for FileWatchdog {
    fn arm(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.timeout = Some(timeout);
        self.feed()
    }

    fn feed(&mut self) -> std::io::Result<()> {
        match self.timeout {
            Some(t) => self.write(&format!("armed {}\n", t.as_millis())),
            None => Ok(()),
        }
    }

    fn disarm(&mut self) -> std::io::Result<()> {
        self.timeout = None;
        self.write("disarmed\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_watchdog_arms_feeds_and_disarms() {
        let dir = std::env::temp_dir().join(format!("vireo-wd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("watchdog");
        let mut w = from_arg(&format!("file:{}", path.display()));
        w.feed().unwrap();
        assert!(!path.exists(), "feeding an unarmed watchdog writes nothing");
        w.arm(Duration::from_millis(4500)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "armed 4500\n");
        w.disarm().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "disarmed\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
