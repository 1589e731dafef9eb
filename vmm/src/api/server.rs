//! The control API's HTTP server: one thread, named "vireo-api", on one Unix
//! socket.
//!
//! Clients are served one at a time, one request per connection (`http.rs`
//! says why). Each request becomes an [`ApiRequest`] sent to the event loop,
//! which answers on a channel of its own; the server never touches the VM.
//!
//! Stopping: the handle writes an eventfd that the thread polls alongside
//! every socket and checks while waiting for the VMM, so stopping is prompt
//! even when the event loop itself is the one stopping the server.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use super::{ApiReceiver, ApiRequest, ApiResponse, ApiSender};
use crate::seccomp::seat::Seat;
use crate::seccomp::ThreadKind;
use http::{Conn, ReadError, Reply};

#[cfg(feature = "fuzz")]
pub mod fuzz_harness;
mod http;
mod routes;
#[cfg(test)]
mod tests;

/// How long a request waits for the event loop before the client gets 503.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to send its whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to accept the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a wait for the event loop checks whether the server is stopping.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// Back-off after a failed accept (e.g. out of file descriptors), which would
/// otherwise spin: the listener stays readable.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Only the VMM's owner may drive the VM.
const SOCKET_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("another server is already listening on the API socket {0}")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; not replacing it")]
    NotASocket(PathBuf),
    #[error("cannot check the existing API socket {path}: {source}")]
    Probe { path: PathBuf, source: io::Error },
    #[error("cannot remove the stale API socket {path}: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("cannot listen on the API socket {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot start the API server thread: {0}")]
    Start(#[source] io::Error),
}

/// Makes the two ends of the API channel. The eventfd is non-blocking, ready
/// for the event loop's epoll.
pub fn api_channel() -> io::Result<(ApiSender, ApiReceiver)> {
    let (tx, rx) = mpsc::channel();
    let wake = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?;
    let sender = ApiSender {
        requests: tx,
        wake: wake.try_clone()?,
    };
    Ok((sender, ApiReceiver { requests: rx, wake }))
}

/// Starts the API server on `path` with the default reply timeout.
pub fn start(path: &Path, sender: ApiSender) -> Result<ApiServerHandle, ApiError> {
    ApiServer::new(path, sender).start()
}

/// The server thread's name.
pub const THREAD_NAME: &str = "vireo-api";

/// A seat for the server thread, started ahead (seccomp/seat.rs).
pub fn seat() -> io::Result<Seat> {
    Seat::start(THREAD_NAME.to_string(), ThreadKind::Api)
}

/// An API server not started yet; [`ApiServer::start`] binds and spawns it.
pub struct ApiServer {
    path: PathBuf,
    sender: ApiSender,
    reply_timeout: Duration,
}

impl ApiServer {
    pub fn new(path: &Path, sender: ApiSender) -> Self {
        ApiServer {
            path: path.to_path_buf(),
            sender,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
        }
    }

    /// How long each request waits for the event loop's answer.
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// Binds the socket (replacing a stale one, see [`bind_socket`]) and
    /// starts the server thread.
    pub fn start(self) -> Result<ApiServerHandle, ApiError> {
        self.start_on(None)
    }

    /// `start`, serving on `seat` when one was started ahead (an incoming
    /// migration's: seccomp/seat.rs).
    pub fn start_on(self, seat: Option<Seat>) -> Result<ApiServerHandle, ApiError> {
        let listener = bind_socket(&self.path)?;
        // From here on, dropping `socket` on an error removes the file again.
        let socket = SocketFile::created_at(&self.path);
        fs::set_permissions(&self.path, fs::Permissions::from_mode(SOCKET_MODE)).map_err(
            |source| ApiError::Bind {
                path: self.path.clone(),
                source,
            },
        )?;
        // poll() may report a client that is gone by the time accept() runs;
        // a blocking accept() would then hang the thread, deaf to stop.
        listener.set_nonblocking(true).map_err(ApiError::Start)?;
        let stop = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(ApiError::Start)?;
        let worker = Worker {
            listener,
            stop: stop.try_clone().map_err(ApiError::Start)?,
            sender: self.sender,
            reply_timeout: self.reply_timeout,
        };
        let seat = match seat {
            Some(seat) => seat,
            None => self::seat().map_err(ApiError::Start)?,
        };
        let thread = seat.run(move || worker.run()).map_err(ApiError::Start)?;
        Ok(ApiServerHandle {
            stop,
            thread: Some(thread),
            socket,
        })
    }
}

/// A running API server. Dropping it (or calling [`ApiServerHandle::stop`])
/// stops the thread and removes the socket file.
pub struct ApiServerHandle {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
    // Declared last so it is dropped after `Drop::drop` joined the thread.
    socket: SocketFile,
}

impl ApiServerHandle {
    pub fn path(&self) -> &Path {
        &self.socket.path
    }

    /// Stops serving, waits for the server thread, removes the socket.
    /// A request in flight gets 503 at once rather than waiting for the VMM.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ApiServerHandle {
    fn drop(&mut self) {
        // Never read, so the eventfd stays readable: every later poll on the
        // server thread sees it.
        let _ = self.stop.write(1);
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread has been reported already; the
            // socket must go either way.
            let _ = thread.join();
        }
    }
}

/// Binds `path`. A socket there that refuses connections was left by a VMM
/// that died, and is replaced; a live socket or anything that is not a socket
/// is left untouched and reported.
fn bind_socket(path: &Path) -> Result<UnixListener, ApiError> {
    let probe_error = |source| ApiError::Probe {
        path: path.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(probe_error(e)),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ApiError::NotASocket(path.to_path_buf()))
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => return Err(ApiError::InUse(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => remove_stale(path)?,
            // Gone between the two calls: nothing to remove.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(probe_error(e)),
        },
    }
    UnixListener::bind(path).map_err(|source| ApiError::Bind {
        path: path.to_path_buf(),
        source,
    })
}

/// Fails when another live server answers on `path`: what `start` would
/// find there, asked before binding (a migration's destination asks before
/// it says Ready, so the API cannot fail it after the hand-over).
pub fn check_free(path: &Path) -> Result<(), ApiError> {
    match UnixStream::connect(path) {
        Ok(_) => Err(ApiError::InUse(path.to_path_buf())),
        Err(_) => Ok(()),
    }
}

fn remove_stale(path: &Path) -> Result<(), ApiError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ApiError::RemoveStale {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// The socket file a server created, removed when this is dropped, unless
/// the file at the path is no longer that socket (someone replaced it, and
/// the replacement is not ours to delete).
struct SocketFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl SocketFile {
    fn created_at(path: &Path) -> Self {
        SocketFile {
            path: path.to_path_buf(),
            identity: file_identity(path),
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.identity.is_some() && file_identity(&self.path) == self.identity {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Device and inode: what tells one file at a path from another.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The server thread's state.
struct Worker {
    listener: UnixListener,
    stop: EventFd,
    sender: ApiSender,
    reply_timeout: Duration,
}

impl Worker {
    fn run(self) {
        let fds = [self.stop.as_raw_fd(), self.listener.as_raw_fd()];
        loop {
            match http::poll_in(&fds, None) {
                Ok(Some(0)) => return,
                Ok(_) => self.accept_one(),
                Err(_) => self.pause(),
            }
        }
    }

    fn accept_one(&self) {
        match self.listener.accept() {
            Ok((stream, _)) => self.serve(&stream),
            Err(e) if is_transient(&e) => {}
            Err(_) => self.pause(),
        }
    }

    fn pause(&self) {
        let _ = http::poll_in(&[self.stop.as_raw_fd()], Some(ACCEPT_ERROR_PAUSE));
    }

    fn stopping(&self) -> bool {
        let now = Some(Duration::ZERO);
        matches!(http::poll_in(&[self.stop.as_raw_fd()], now), Ok(Some(_)))
    }

    /// Reads one request, answers it, and lets the connection close.
    fn serve(&self, stream: &UnixStream) {
        // Reads wait in poll(); writes block, but not forever.
        if stream.set_nonblocking(false).is_err()
            || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
        {
            return;
        }
        let mut conn = Conn::new(stream, self.stop.as_raw_fd(), REQUEST_TIMEOUT);
        let (reply, head_only) = match conn.read_request() {
            Ok(request) => (self.handle(&request), request.method == "HEAD"),
            Err(ReadError::Reject(reply)) => (reply, false),
            Err(ReadError::Closed | ReadError::Stopped) => return,
        };
        // If the client is gone there is nobody left to tell.
        let _ = http::send_reply(stream, &reply, head_only);
    }

    fn handle(&self, request: &http::Request) -> Reply {
        let action = match routes::route(&request.method, &request.target, &request.body) {
            Ok(action) => action,
            Err(reply) => return reply,
        };
        match self.forward(action.clone()) {
            Ok(response) => routes::reply_for(&action, response),
            Err(reply) => reply,
        }
    }

    /// Hands `request` to the event loop and waits for its answer.
    fn forward(&self, request: ApiRequest) -> Result<ApiResponse, Reply> {
        let (reply_tx, reply_rx) = mpsc::channel();
        if self.sender.requests.send((request, reply_tx)).is_err() {
            return Err(shutting_down());
        }
        // The loop sleeps in epoll and only looks at the channel when woken.
        // A write fails only when the counter is saturated, and then the loop
        // has wake-ups pending anyway.
        let _ = self.sender.wake.write(1);
        let deadline = Instant::now() + self.reply_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Reply::error(503, "the VMM did not answer in time"));
            }
            match reply_rx.recv_timeout(left.min(STOP_CHECK_INTERVAL)) {
                Ok(response) => return Ok(response),
                Err(RecvTimeoutError::Timeout) if self.stopping() => return Err(shutting_down()),
                Err(RecvTimeoutError::Timeout) => {}
                // The loop dropped the request unanswered: it is exiting.
                Err(RecvTimeoutError::Disconnected) => return Err(shutting_down()),
            }
        }
    }
}

fn shutting_down() -> Reply {
    Reply::error(503, "the VMM is shutting down")
}

/// Accept errors that concern one client only, not the listener.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    )
}
