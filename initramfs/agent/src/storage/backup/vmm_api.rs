//! The few calls a backup makes to a running VM's vireo-vmm: HTTP/1.1
//! over its API socket (docs/api/openapi.yaml), blocking, one connection
//! per request (the VMM closes it after answering).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// `METHOD path` with an optional JSON body; the status and body.
pub fn call(socket: &Path, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let fail = |e: std::io::Error| format!("the VMM's API ({}): {e}", socket.display());
    let mut s = UnixStream::connect(socket).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(fail)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(fail)?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(fail)?;
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("the VMM answered {method} {path} with no status"))?;
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// A call that must answer `want`.
pub fn expect(
    socket: &Path,
    method: &str,
    path: &str,
    body: &str,
    want: u16,
) -> Result<String, String> {
    let (status, answer) = call(socket, method, path, body)?;
    if status != want {
        return Err(format!(
            "the VMM refused {method} {path} ({status}): {}",
            answer.trim()
        ));
    }
    Ok(answer)
}

/// Starts committing disk `id`'s overlay and waits for the end.
pub fn commit(socket: &Path, id: &str) -> Result<(), String> {
    let path = format!("/vm/disks/{id}/commit");
    expect(socket, "PUT", &path, "", 202)?;
    let started = Instant::now();
    loop {
        let body = expect(socket, "GET", &path, "", 200)?;
        let status: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("commit status: {e}"))?;
        match status["phase"].as_str() {
            Some("committed") => return Ok(()),
            Some("committing") => {}
            _ => {
                return Err(format!(
                    "committing disk '{id}' failed: {}",
                    status["error"].as_str().unwrap_or("unknown")
                ))
            }
        }
        // Generous: the commit copies what the guest wrote during the backup.
        if started.elapsed() > Duration::from_secs(3600) {
            return Err(format!("committing disk '{id}' did not end within an hour"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
