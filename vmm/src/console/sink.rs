//! The console's sinks, each written two ways: `try_write` never blocks
//! (the vCPU's fast path), `write_all` may (the writer thread's backlog).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a socket write may block before the writer looks again at
/// whether the client changed.
const SOCKET_WRITE_TIMEOUT: Duration = Duration::from_millis(100);

/// A socket console's client; `id` tells one connection from the next.
pub struct Client {
    pub id: u64,
    pub stream: UnixStream,
}

/// The client currently attached to a socket console, if any.
pub type SocketClient = Arc<Mutex<Option<Client>>>;

/// Where the guest's console bytes go.
pub enum Sink {
    Stdout,
    File(File),
    /// Bytes written while no client is attached are dropped, like a
    /// physical serial line with nothing plugged in.
    Socket(SocketClient),
    None,
}

impl Sink {
    /// Writes what the sink takes right now; returns how many bytes that was.
    pub fn try_write(&self, bytes: &[u8]) -> usize {
        match self {
            Sink::Stdout => {
                if !writable_now(libc::STDOUT_FILENO) {
                    return 0;
                }
                // A pipe with room for a page takes up to a page at once.
                let n = bytes.len().min(4096);
                // SAFETY: writes from a buffer we own to fd 1.
                let rc = unsafe { libc::write(libc::STDOUT_FILENO, bytes.as_ptr().cast(), n) };
                usize::try_from(rc).unwrap_or(0)
            }
            // Regular files do not wait for a reader.
            Sink::File(f) => (&*f).write(bytes).unwrap_or(bytes.len()),
            Sink::Socket(client) => try_send(client, bytes),
            Sink::None => bytes.len(),
        }
    }

    /// Writes all of `bytes`, blocking as needed; a sink that fails loses
    /// them (and a socket client that fails is detached). A socket client
    /// that takes nothing while `give_up()` holds loses them too.
    pub fn write_all(&self, bytes: &[u8], give_up: &dyn Fn() -> bool) {
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                let _ = out.write_all(bytes).and_then(|()| out.flush());
            }
            Sink::File(f) => {
                let _ = (&*f).write_all(bytes);
            }
            Sink::Socket(client) => write_to_client(client, bytes, give_up),
            Sink::None => {}
        }
    }
}

fn writable_now(fd: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: polls one pollfd we own, without waiting.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc == 1 && pfd.revents & libc::POLLOUT != 0
}

fn lock_client(client: &SocketClient) -> MutexGuard<'_, Option<Client>> {
    client.lock().unwrap_or_else(|e| e.into_inner())
}

/// MSG_DONTWAIT: the client's socket stays blocking for the writer thread.
fn try_send(client: &SocketClient, bytes: &[u8]) -> usize {
    let mut guard = lock_client(client);
    let Some(c) = guard.as_ref() else {
        return bytes.len();
    };
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // SAFETY: sends from a buffer we own on the client's socket.
    let rc = unsafe {
        libc::send(
            c.stream.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            flags,
        )
    };
    if rc >= 0 {
        return rc as usize;
    }
    let err = io::Error::last_os_error();
    if err.kind() != io::ErrorKind::WouldBlock {
        // The client went away; wait for the next one.
        *guard = None;
        return bytes.len();
    }
    0
}

/// Writes to the attached client without holding its lock across a blocked
/// write, so the event loop can always replace the client.
fn write_to_client(client: &SocketClient, mut bytes: &[u8], give_up: &dyn Fn() -> bool) {
    let Some((id, mut stream)) = lock_client(client)
        .as_ref()
        .and_then(|c| Some((c.id, c.stream.try_clone().ok()?)))
    else {
        return;
    };
    let _ = stream.set_write_timeout(Some(SOCKET_WRITE_TIMEOUT));
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(n) if n > 0 => bytes = &bytes[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // Still the same client, and the VMM not stopping? Then keep
                // waiting for it to read; the queue fills meanwhile and the
                // guest's bytes are dropped.
                if current_id(client) != Some(id) || give_up() {
                    return;
                }
            }
            _ => {
                let mut guard = lock_client(client);
                if guard.as_ref().is_some_and(|c| c.id == id) {
                    *guard = None;
                }
                return;
            }
        }
    }
}

fn current_id(client: &SocketClient) -> Option<u64> {
    lock_client(client).as_ref().map(|c| c.id)
}
