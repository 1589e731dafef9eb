//! Fuzz harness (feature `fuzz`): one request's bytes read by the API's
//! HTTP reader from a socket, then routed as the server does.

use std::io::Write;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::http::Conn;
use super::routes;

/// The whole input is what the client sent before closing its side.
pub fn http_request(data: &[u8]) {
    let Ok((server, mut client)) = UnixStream::pair() else {
        return;
    };
    // The socket buffer holds the largest request the reader accepts
    // (8 KiB head + 64 KiB body) and more; cut beyond it rather than block.
    let _ = client.write_all(&data[..data.len().min(100_000)]);
    let _ = client.shutdown(Shutdown::Write);
    let stop = EventFd::new(EFD_NONBLOCK).expect("eventfd");
    let mut conn = Conn::new(&server, stop.as_raw_fd(), Duration::from_secs(1));
    if let Ok(request) = conn.read_request() {
        let _ = routes::route(&request.method, &request.target, &request.body);
    }
}
