//! The client side of the VMM's API, for `vireo-vmm-ctl`: one request per
//! connection over the Unix socket, JSON in and out, the way the server
//! (`api/server/`) answers.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// An answer: the status code and the body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The body as JSON, or the server's `{"error": ...}` as the error.
    pub fn ok_json(self) -> Result<serde_json::Value, String> {
        if (200..300).contains(&self.status) {
            if self.body.is_empty() {
                return Ok(serde_json::Value::Null);
            }
            return serde_json::from_str(&self.body).map_err(|e| format!("bad answer: {e}"));
        }
        let message = serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(String::from))
            .unwrap_or(self.body);
        Err(format!("{} ({})", message, self.status))
    }
}

/// Sends `method path` with an optional JSON body.
pub fn request(socket: &Path, method: &str, path: &str, body: Option<&str>) -> io::Result<Answer> {
    let mut s = UnixStream::connect(socket)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", socket.display())))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    parse(&reply)
}

fn parse(reply: &str) -> io::Result<Answer> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not an HTTP answer: {reply:.80}"),
        )
    };
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let body = reply
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_and_errors_carry_the_message() {
        let a = parse("HTTP/1.1 409 Conflict\r\nContent-Length: 20\r\n\r\n{\"error\":\"paused\"}")
            .unwrap();
        assert_eq!(a.status, 409);
        assert_eq!(a.ok_json().unwrap_err(), "paused (409)");
        let a = parse("HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!(a.ok_json().unwrap(), serde_json::Value::Null);
        assert!(parse("garbage").is_err());
    }
}
