//! A client for one vireo-vmm's control API (docs/api/openapi.yaml): JSON
//! over HTTP/1.1 on a Unix socket, one request per connection, the answer
//! ending when the VMM closes the connection.
//!
//! Written by hand (30 lines of framing): hyper's client would need
//! hyper-util and http-body-util beside it for a protocol that is one
//! request, `Connection: close`, and a body read to the end.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Answers are small (GET /vm is about a KiB); more is a broken VMM.
const MAX_ANSWER: u64 = 256 * 1024;

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The VMM's `{"error": ...}` message, or the raw body.
    pub fn error(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_else(|| self.body.trim().to_string())
    }
}

/// `METHOD path` on the VMM at `socket`, within `timeout`.
pub async fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> std::io::Result<Answer> {
    tokio::time::timeout(timeout, exchange(socket, method, path, body))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the VMM did not answer {method} {path} in {timeout:?}"),
            )
        })?
}

async fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Answer> {
    let mut stream = UnixStream::connect(socket).await?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    (&mut stream).take(MAX_ANSWER).read_to_end(&mut raw).await?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> std::io::Result<Answer> {
    let text = String::from_utf8_lossy(raw);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(bad)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(Answer {
        status,
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        let a = parse(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!((a.status, a.ok()), (204, true));
        let a =
            parse(b"HTTP/1.1 409 Conflict\r\n\r\n{\"error\":\"the VM is not paused\"}").unwrap();
        assert_eq!(a.error(), "the VM is not paused");
        assert!(parse(b"garbage").is_err());
    }
}
