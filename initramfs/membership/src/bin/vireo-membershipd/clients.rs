//! The group socket: one reader thread per client turns frames into inputs
//! for the protocol thread; one writer thread per client drains a bounded
//! queue, so a client that stops reading never stalls the ring. A client
//! whose queue overflows is disconnected (and so leaves its groups): CPG
//! clients that do not dispatch get no better.

use std::io::{BufReader, BufWriter, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::Arc;

use vireo_membership::groups::Frame;

/// Frames queued for one client before it counts as not reading.
pub const CLIENT_QUEUE: usize = 8192;

/// What the other threads tell the protocol thread.
pub enum Input {
    Connected { conn: u32, out: SyncSender<Vec<u8>> },
    Frame { conn: u32, frame: Frame },
    Closed { conn: u32 },
}

/// Sends inputs and wakes the protocol thread's poll.
#[derive(Clone)]
pub struct Inbox {
    tx: Sender<Input>,
    wake: Arc<OwnedFd>,
    next_conn: Arc<AtomicU32>,
}

impl Inbox {
    pub fn new() -> std::io::Result<(Inbox, Receiver<Input>, Arc<OwnedFd>)> {
        let (tx, rx) = std::sync::mpsc::channel();
        // SAFETY: eventfd(2) with valid flags; the fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let wake = Arc::new(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        let inbox = Inbox {
            tx,
            wake: wake.clone(),
            next_conn: Arc::new(AtomicU32::new(1)),
        };
        Ok((inbox, rx, wake))
    }

    pub fn send(&self, input: Input) {
        let _ = self.tx.send(input);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a valid buffer to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    /// A new connection id and the queue its events go to.
    pub fn connect(&self) -> (u32, Receiver<Vec<u8>>) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (out, rx) = std::sync::mpsc::sync_channel(CLIENT_QUEUE);
        self.send(Input::Connected { conn, out });
        (conn, rx)
    }
}

/// Empties the eventfd after a wake-up.
pub fn drain_wake(fd: &OwnedFd) {
    let mut b = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a valid buffer; non-blocking fd.
    unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
}

/// Binds the group socket (root only: nodelist changes go through it).
pub fn serve(path: &Path, inbox: Inbox) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    std::thread::Builder::new()
        .name("vireo-groups".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                client(stream, inbox.clone());
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn client(stream: UnixStream, inbox: Inbox) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let (conn, rx) = inbox.connect();
    let _ = std::thread::Builder::new()
        .name(format!("vireo-grp-w{conn}"))
        .spawn(move || writer(write_half, rx));
    let _ = std::thread::Builder::new()
        .name(format!("vireo-grp-r{conn}"))
        .spawn(move || {
            let mut r = BufReader::new(stream);
            // A malformed frame ends the connection: the stream has no resync point.
            while let Ok(Some(frame)) = Frame::read_from(&mut r) {
                inbox.send(Input::Frame { conn, frame });
            }
            let _ = r.get_ref().shutdown(std::net::Shutdown::Both);
            inbox.send(Input::Closed { conn });
        });
}

fn writer(stream: UnixStream, rx: Receiver<Vec<u8>>) {
    let mut w = BufWriter::new(&stream);
    while let Ok(bytes) = rx.recv() {
        if w.write_all(&bytes).is_err() {
            break;
        }
        // Flush when nothing else is waiting: batches under load, no delay idle.
        let mut ok = true;
        while let Ok(more) = rx.try_recv() {
            if w.write_all(&more).is_err() {
                ok = false;
                break;
            }
        }
        if !ok || w.flush().is_err() {
            break;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
