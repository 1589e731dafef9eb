//! The migration channel: a TCP connection (optionally TLS) or a Unix
//! socket, named by a URL: `tcp://HOST:PORT`, `tls://HOST:PORT`,
//! `unix:PATH`. Both ends time out on a silent peer, so a link that goes
//! down ends the migration instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(String),
    Tls(String),
    Unix(PathBuf),
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(url: &str) -> Result<Self, String> {
        let hostport = |rest: &str| {
            if rest
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                Ok(rest.to_string())
            } else {
                Err(format!("'{url}': give HOST:PORT"))
            }
        };
        if let Some(rest) = url.strip_prefix("tcp://") {
            return hostport(rest).map(Endpoint::Tcp);
        }
        if let Some(rest) = url.strip_prefix("tls://") {
            return hostport(rest).map(Endpoint::Tls);
        }
        match url.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => Ok(Endpoint::Unix(path.into())),
            _ => Err(format!(
                "'{url}' is not a migration URL (tcp://HOST:PORT, tls://HOST:PORT or unix:PATH)"
            )),
        }
    }
}

/// A connected channel, either way.
pub trait Channel: Read + Write + Send {
    /// How long a read or a write may wait for the peer.
    fn set_timeout(&self, timeout: Duration) -> io::Result<()>;

    /// Whether a read would find bytes now, without waiting; a channel
    /// that cannot tell says true (TLS: records rustls has buffered are
    /// invisible to poll), and is then read, and waited on, as before.
    fn has_input(&self) -> bool {
        true
    }
}

/// Waits for the peer's next frame awake for a moment (`spin`), then as
/// usual: on the switch-over's path, where the peer answers within a
/// millisecond.
pub fn wait_awake(ch: &dyn Channel) {
    let until = std::time::Instant::now() + crate::spin::BUDGET;
    crate::spin::until(until, || ch.has_input().then_some(()));
}

impl Channel for TcpStream {
    fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }

    fn has_input(&self) -> bool {
        crate::spin::readable(self.as_raw_fd())
    }
}

impl Channel for UnixStream {
    fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }

    fn has_input(&self) -> bool {
        crate::spin::readable(self.as_raw_fd())
    }
}

/// TLS material (file paths), for `tls://` URLs.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

/// Connects to `endpoint` (the source's side).
pub fn connect(
    endpoint: &Endpoint,
    tls: &TlsFiles,
    timeout: Duration,
) -> io::Result<Box<dyn Channel>> {
    match endpoint {
        Endpoint::Tcp(hostport) => Ok(Box::new(tcp_connect(hostport, timeout)?)),
        Endpoint::Tls(hostport) => {
            let stream = tcp_connect(hostport, timeout)?;
            super::tls::client(stream, hostport, tls)
        }
        Endpoint::Unix(path) => Ok(Box::new(UnixStream::connect(path)?)),
    }
}

fn tcp_connect(hostport: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::other(format!("'{hostport}' resolves to no address"));
    for addr in hostport.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A listening endpoint (the destination's side).
pub enum Listener {
    Tcp(TcpListener, bool),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    pub fn bind(endpoint: &Endpoint) -> io::Result<Self> {
        Ok(match endpoint {
            Endpoint::Tcp(hp) => Listener::Tcp(TcpListener::bind(hp)?, false),
            Endpoint::Tls(hp) => Listener::Tcp(TcpListener::bind(hp)?, true),
            Endpoint::Unix(path) => {
                // A stale socket of a dead destination would make bind fail.
                if UnixStream::connect(path).is_err() {
                    let _ = std::fs::remove_file(path);
                }
                Listener::Unix(UnixListener::bind(path)?, path.clone())
            }
        })
    }

    pub fn fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l, _) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }

    /// Accepts one source (call when `fd()` is readable).
    pub fn accept(&self, tls: &TlsFiles) -> io::Result<Box<dyn Channel>> {
        match self {
            Listener::Tcp(l, false) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(Box::new(s))
            }
            Listener::Tcp(l, true) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                super::tls::server(s, tls)
            }
            Listener::Unix(l, _) => Ok(Box::new(l.accept()?.0)),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}
