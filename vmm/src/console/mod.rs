//! The host side of the serial console: where output goes (through the
//! queue and writer thread of `output.rs`, so no reader can stall a vCPU)
//! and where input comes from (stdin in raw mode, or one client of a Unix
//! socket at a time).

mod output;
mod sink;

use output::ConsoleWriter;
pub use output::{ConsoleOutput, ConsoleStats};
use sink::{Client, Sink, SocketClient};

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vmm_sys_util::terminal::Terminal;

use crate::config::SerialOutput;
use crate::devices::bus::lock;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot open the serial output file '{path}': {source}")]
    File { path: String, source: io::Error },
    #[error("cannot listen on the serial socket '{path}': {source}")]
    Socket { path: String, source: io::Error },
    #[error("'{0}' already exists and is not a stale socket; refusing to replace it")]
    PathInUse(String),
    #[error("--serial-client-fd needs --serial socket:PATH")]
    ClientWithoutSocket,
    #[error("cannot start the console writer: {0}")]
    Writer(io::Error),
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

/// The console's host resources; dropping it writes out what the guest
/// printed last (for a bounded time), restores the terminal and removes
/// the socket.
pub struct Console {
    // Field order is drop order: the writer drains before the input goes.
    writer: ConsoleWriter,
    input: Input,
    client: SocketClient,
    /// The event loop's own handle on the client it watches for input (a
    /// dup of the client's socket). epoll keeps watching an open file
    /// description until every descriptor of it is closed, not just the
    /// one registered: so the client's socket, which writers may drop on a
    /// failed write, is never the registered one. Only the event loop
    /// closes this handle, after unregistering it ([`Console::unwatch`]).
    watched: Option<(u64, UnixStream)>,
    clients_accepted: AtomicU64,
}

/// What a read of console input found.
pub enum ConsoleInput {
    Bytes(Vec<u8>),
    /// Nothing to read right now (a wakeup without data).
    Nothing,
    /// The input ended or broke: unregister the fd, then [`Console::unwatch`] it.
    Ended,
}

/// A client [`Console::accept`] took: `fd` to watch, and the previous
/// client's handle, to unregister before it is dropped.
pub struct Accepted {
    pub fd: RawFd,
    pub replaced: Option<UnixStream>,
}

impl Console {
    pub fn open(spec: &SerialOutput) -> Result<Self, ConsoleError> {
        Self::open_with_client(spec, None)
    }

    /// `open`, with `first` already attached as the socket console's
    /// client (`--serial-client-fd`): a supervisor that made the connection
    /// before spawning the VMM reads every byte from the first one, so the
    /// VM need not start paused. Later clients replace it as usual.
    pub fn open_with_client(
        spec: &SerialOutput,
        first: Option<UnixStream>,
    ) -> Result<Self, ConsoleError> {
        let client: SocketClient = Arc::new(Mutex::new(None));
        let mut watched = None;
        if let Some(stream) = first {
            if !matches!(spec, SerialOutput::Socket(_)) {
                return Err(ConsoleError::ClientWithoutSocket);
            }
            watched = Some((0, stream.try_clone().map_err(ConsoleError::Writer)?));
            *lock(&client) = Some(Client { id: 0, stream });
        }
        let mut input = Input::None;
        let sink = match spec {
            SerialOutput::Stdio => Sink::Stdout,
            SerialOutput::File(path) => Sink::File(create_output_file(path)?),
            SerialOutput::Socket(path) => {
                input = listen(path)?;
                Sink::Socket(client.clone())
            }
            SerialOutput::None => Sink::None,
        };
        let writer = match ConsoleWriter::start(sink) {
            Ok(w) => w,
            Err(e) => {
                // Nothing may be left behind for a VM that did not start.
                if let Input::Socket { path, .. } = &input {
                    let _ = std::fs::remove_file(path);
                }
                return Err(ConsoleError::Writer(e));
            }
        };
        if matches!(spec, SerialOutput::Stdio) {
            // Raw mode only for a real terminal: keys go to the guest as typed.
            // SAFETY: isatty only inspects the fd.
            let is_tty = unsafe { libc::isatty(libc::STDIN_FILENO) } == 1;
            let raw = is_tty && io::stdin().lock().set_raw_mode().is_ok();
            input = Input::Stdin { raw };
        }
        let attached = u64::from(lock(&client).is_some());
        Ok(Console {
            writer,
            input,
            client,
            watched,
            clients_accepted: AtomicU64::new(attached),
        })
    }

    /// A writer for the serial device; called again for each (re)boot.
    pub fn output(&self) -> ConsoleOutput {
        self.writer.output()
    }

    /// Bytes the guest wrote to the console, and those dropped.
    pub fn stats(&self) -> ConsoleStats {
        self.output().stats()
    }

    /// The fds the event loop watches for console input.
    pub fn watched_fds(&self) -> Vec<RawFd> {
        match &self.input {
            Input::Stdin { .. } => vec![libc::STDIN_FILENO],
            Input::Socket { listener, .. } => {
                let first = self.watched.as_ref().map(|(_, s)| s.as_raw_fd());
                std::iter::once(listener.as_raw_fd()).chain(first).collect()
            }
            Input::None => Vec::new(),
        }
    }

    /// Accepts a waiting socket client, replacing any previous one.
    pub fn accept(&mut self) -> Option<Accepted> {
        let Input::Socket { listener, .. } = &self.input else {
            return None;
        };
        let (stream, _) = listener.accept().ok()?;
        let watch = stream.try_clone().ok()?;
        let fd = watch.as_raw_fd();
        let id = self.clients_accepted.fetch_add(1, Ordering::Relaxed);
        *lock(&self.client) = Some(Client { id, stream });
        let replaced = self.watched.replace((id, watch)).map(|(_, s)| s);
        Some(Accepted { fd, replaced })
    }

    pub fn is_listener(&self, fd: RawFd) -> bool {
        matches!(&self.input, Input::Socket { listener, .. } if listener.as_raw_fd() == fd)
    }

    /// Reads what is available on `fd` (stdin or the socket client) without
    /// ever blocking the event loop.
    pub fn read_input(&self, fd: RawFd) -> ConsoleInput {
        let mut buf = [0u8; 64];
        let read = if fd == libc::STDIN_FILENO {
            io::stdin().lock().read(&mut buf)
        } else {
            match &self.watched {
                Some((_, s)) if s.as_raw_fd() == fd => recv_now(s, &mut buf),
                _ => return ConsoleInput::Ended,
            }
        };
        match read {
            Ok(0) => ConsoleInput::Ended,
            Ok(n) => ConsoleInput::Bytes(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ConsoleInput::Nothing,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => ConsoleInput::Nothing,
            Err(_) => ConsoleInput::Ended,
        }
    }

    /// Forgets the socket client watched on `fd` once the event loop has
    /// unregistered it: closes the loop's handle and detaches the client
    /// (its input ended, so it is gone).
    pub fn unwatch(&mut self, fd: RawFd) {
        if !matches!(&self.watched, Some((_, s)) if s.as_raw_fd() == fd) {
            return;
        }
        if let Some((id, _)) = self.watched.take() {
            let mut client = lock(&self.client);
            if client.as_ref().is_some_and(|c| c.id == id) {
                *client = None;
            }
        }
    }
}

/// One non-blocking read: the client's socket stays blocking for the
/// console's writer thread, and a wakeup without data must not hang the
/// event loop in a read.
fn recv_now(stream: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: receives into a buffer we own, on a socket we own.
    let rc = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

fn create_output_file(path: &Path) -> Result<File, ConsoleError> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|source| ConsoleError::File {
            path: path.display().to_string(),
            source,
        })
}

fn listen(path: &Path) -> Result<Input, ConsoleError> {
    let socket_err = |source| ConsoleError::Socket {
        path: path.display().to_string(),
        source,
    };
    clear_stale_socket(path).map_err(ConsoleError::PathInUse)?;
    let listener = UnixListener::bind(path).map_err(socket_err)?;
    if let Err(e) = listener.set_nonblocking(true) {
        let _ = std::fs::remove_file(path);
        return Err(socket_err(e));
    }
    Ok(Input::Socket {
        listener,
        path: path.to_path_buf(),
    })
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
