//! The host side of the serial console: where output goes and where input
//! comes from (stdin in raw mode, or one client of a Unix socket at a time).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vmm_sys_util::terminal::Terminal;

use crate::config::SerialOutput;
use crate::devices::bus::lock;
use crate::devices::legacy::serial::{ConsoleOutput, SocketClient};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot open the serial output file '{path}': {source}")]
    File { path: String, source: io::Error },
    #[error("cannot listen on the serial socket '{path}': {source}")]
    Socket { path: String, source: io::Error },
    #[error("'{0}' already exists and is not a stale socket; refusing to replace it")]
    PathInUse(String),
}

/// Removes a leftover socket from a crashed run; refuses anything else.
pub fn clear_stale_socket(path: &Path) -> Result<(), String> {
    let shown = || path.display().to_string();
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() || UnixStream::connect(path).is_ok() {
        return Err(shown());
    }
    std::fs::remove_file(path).map_err(|_| shown())
}

enum Input {
    None,
    Stdin {
        raw: bool,
    },
    Socket {
        listener: UnixListener,
        path: PathBuf,
    },
}

/// The console's host resources; dropping it restores the terminal and
/// removes the socket.
pub struct Console {
    input: Input,
    file: Option<File>,
    client: SocketClient,
}

impl Console {
    pub fn open(spec: &SerialOutput) -> Result<Self, ConsoleError> {
        let mut console = Console {
            input: Input::None,
            file: None,
            client: Arc::new(Mutex::new(None)),
        };
        match spec {
            SerialOutput::Stdio => {
                // Raw mode only for a real terminal: keys go to the guest as typed.
                // SAFETY: isatty only inspects the fd.
                let is_tty = unsafe { libc::isatty(libc::STDIN_FILENO) } == 1;
                let raw = is_tty && io::stdin().lock().set_raw_mode().is_ok();
                console.input = Input::Stdin { raw };
            }
            SerialOutput::File(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(path)
                    .map_err(|source| ConsoleError::File {
                        path: path.display().to_string(),
                        source,
                    })?;
                console.file = Some(file);
            }
            SerialOutput::Socket(path) => {
                clear_stale_socket(path).map_err(ConsoleError::PathInUse)?;
                let listener = UnixListener::bind(path).map_err(|source| ConsoleError::Socket {
                    path: path.display().to_string(),
                    source,
                })?;
                listener
                    .set_nonblocking(true)
                    .map_err(|source| ConsoleError::Socket {
                        path: path.display().to_string(),
                        source,
                    })?;
                console.input = Input::Socket {
                    listener,
                    path: path.clone(),
                };
            }
            SerialOutput::None => {}
        }
        Ok(console)
    }

    /// A writer for the serial device; called again for each (re)boot.
    pub fn output(&self) -> io::Result<ConsoleOutput> {
        Ok(match (&self.input, &self.file) {
            (_, Some(file)) => ConsoleOutput::File(file.try_clone()?),
            (Input::Stdin { .. }, _) => ConsoleOutput::Stdout(io::stdout()),
            (Input::Socket { .. }, _) => ConsoleOutput::Socket(self.client.clone()),
            (Input::None, _) => ConsoleOutput::Sink,
        })
    }

    /// The fds the event loop watches for console input.
    pub fn watched_fds(&self) -> Vec<RawFd> {
        match &self.input {
            Input::Stdin { .. } => vec![libc::STDIN_FILENO],
            Input::Socket { listener, .. } => vec![listener.as_raw_fd()],
            Input::None => Vec::new(),
        }
    }

    /// Accepts a waiting socket client, replacing any previous one. Returns
    /// the new client's fd for the event loop to watch.
    pub fn accept(&self) -> Option<RawFd> {
        let Input::Socket { listener, .. } = &self.input else {
            return None;
        };
        let (stream, _) = listener.accept().ok()?;
        let fd = stream.as_raw_fd();
        *lock(&self.client) = Some(stream);
        Some(fd)
    }

    pub fn is_listener(&self, fd: RawFd) -> bool {
        matches!(&self.input, Input::Socket { listener, .. } if listener.as_raw_fd() == fd)
    }

    /// Reads what is available on `fd` (stdin or the socket client).
    /// `Ok(empty)` means end of input: stop watching the fd.
    pub fn read_input(&self, fd: RawFd) -> io::Result<Vec<u8>> {
        let mut buf = [0u8; 64];
        let n = if fd == libc::STDIN_FILENO {
            io::stdin().lock().read(&mut buf)?
        } else {
            let mut guard = lock(&self.client);
            match guard.as_mut() {
                Some(stream) if stream.as_raw_fd() == fd => {
                    let n = stream.read(&mut buf)?;
                    if n == 0 {
                        *guard = None;
                    }
                    n
                }
                _ => 0,
            }
        };
        Ok(buf[..n].to_vec())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        match &self.input {
            Input::Stdin { raw: true } => {
                // Best effort: the process is exiting either way.
                let _ = io::stdin().lock().set_canon_mode();
            }
            Input::Socket { path, .. } => {
                let _ = std::fs::remove_file(path);
            }
            _ => {}
        }
    }
}
