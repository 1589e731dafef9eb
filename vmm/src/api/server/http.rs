//! Just enough HTTP/1.1 for the control API, on a blocking Unix stream.
//!
//! Why not tiny_http 0.12: when a request is dropped with part of its body
//! unread, it reads the rest on the dropping thread into one buffer of the
//! declared length, so `Content-Length: 1099511627776000` aborts the whole VMM
//! (out of memory) and a client that declares a body but never sends it hangs
//! the server; it also runs its own accept thread and a pool of four or more
//! connection threads. The API's endpoints take no bodies and have one client
//! at a time, so a small reader with hard limits on every length and a
//! deadline on every read is both safer and simpler.
//!
//! Each connection carries one request: every response says
//! `Connection: close`, so an idle client can never hold the server.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Largest request head (request line and headers) accepted.
pub(super) const MAX_HEAD_BYTES: usize = 8 << 10;
/// Largest request body read; longer ones get 413.
pub(super) const MAX_BODY_BYTES: u64 = 64 << 10;
/// Longest line inside a chunked body (chunk size with extensions, trailers).
const MAX_CHUNK_LINE: usize = 1024;

/// An HTTP response, built by the routes and written by [`send_reply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reply {
    pub status: u16,
    /// A JSON document, if the response has a body.
    pub body: Option<Vec<u8>>,
    /// The methods a resource takes, sent with 405.
    pub allow: Option<&'static str>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl Reply {
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Reply {
        match serde_json::to_vec(value) {
            Ok(body) => Reply {
                status,
                body: Some(body),
                allow: None,
            },
            // Only non-UTF-8 paths in the config can get here.
            Err(e) => Reply::error(500, &format!("cannot encode the answer as JSON: {e}")),
        }
    }

    /// `{"error": message}` with the given status.
    pub fn error(status: u16, message: &str) -> Reply {
        let body = serde_json::to_vec(&ErrorBody { error: message })
            .expect("a struct of one string always serializes");
        Reply {
            status,
            body: Some(body),
            allow: None,
        }
    }

    pub fn accepted() -> Reply {
        Reply {
            status: 202,
            allow: None,
            body: None,
        }
    }

    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            body: None,
            allow: None,
        }
    }

    pub fn with_allow(mut self, allow: &'static str) -> Reply {
        self.allow = Some(allow);
        self
    }

    /// The bytes on the wire; `head_only` answers a HEAD request.
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        if let Some(body) = &self.body {
            out.push_str("Content-Type: application/json\r\n");
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        } else if self.status != 204 {
            // RFC 9110 forbids Content-Length on 204 but wants it elsewhere.
            out.push_str("Content-Length: 0\r\n");
        }
        if let Some(allow) = self.allow {
            out.push_str(&format!("Allow: {allow}\r\n"));
        }
        out.push_str("Connection: close\r\n\r\n");
        let mut bytes = out.into_bytes();
        if let (Some(body), false) = (&self.body, head_only) {
            bytes.extend_from_slice(body);
        }
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes the whole reply.
pub(super) fn send_reply(stream: &UnixStream, reply: &Reply, head_only: bool) -> io::Result<()> {
    send_all(stream, &reply.to_bytes(head_only))
}

/// MSG_NOSIGNAL because a client that hung up must cost an EPIPE, never a
/// SIGPIPE that could kill the VMM.
fn send_all(stream: &UnixStream, bytes: &[u8]) -> io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: the pointer and length describe `rest`, which lives across
        // the call; send() only reads from it.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        rest = &rest[n as usize..];
    }
    Ok(())
}

/// Waits until one of `fds` is readable or hung up and returns the index of
/// the first such, or `None` once `timeout` (if any) has passed.
pub(super) fn poll_in(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Option<usize>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Round up so a short wait is never a busy zero-timeout poll.
    let ms = timeout.map_or(-1, |t| {
        i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX)
    });
    loop {
        // SAFETY: `pfds` is an exclusively borrowed array of `pfds.len()`
        // pollfd structs that outlives the call.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if n >= 0 {
            return Ok(pfds.iter().position(|p| p.revents != 0));
        }
        let err = io::Error::last_os_error();
        // A signal restarts the full wait; callers keep their own deadlines.
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Why no request came out of a connection.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The client went away; there is nobody to answer.
    Closed,
    /// The server is stopping.
    Stopped,
    /// The request is refused with this response.
    Reject(Reply),
}

fn reject(status: u16, message: &str) -> ReadError {
    ReadError::Reject(Reply::error(status, message))
}

/// The parts of a request the routes need.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Request {
    pub method: String,
    pub target: String,
    /// At most `MAX_BODY_BYTES`.
    pub body: Vec<u8>,
}

/// A request head split into its parts; header names are lowercase.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

/// How the request body is delimited (RFC 9112 section 6).
#[derive(Debug, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
}

/// One client connection: a receive buffer, the stop eventfd and a deadline
/// by which the whole request must have arrived.
pub(super) struct Conn<'a> {
    stream: &'a UnixStream,
    stop: RawFd,
    deadline: Instant,
    /// Received bytes not consumed yet.
    buf: Vec<u8>,
    /// The request body, as it is read.
    body: Vec<u8>,
}

impl<'a> Conn<'a> {
    pub fn new(stream: &'a UnixStream, stop: RawFd, timeout: Duration) -> Self {
        Conn {
            stream,
            stop,
            deadline: Instant::now() + timeout,
            buf: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Reads one request and its body, if that is small enough.
    pub fn read_request(&mut self) -> Result<Request, ReadError> {
        let text = self.read_head()?;
        let head = parse_head(&text)?;
        self.read_body(&head.headers)?;
        Ok(Request {
            method: head.method,
            target: head.target,
            body: std::mem::take(&mut self.body),
        })
    }

    /// Appends whatever the client sends next, waiting until the deadline.
    fn fill(&mut self) -> Result<(), ReadError> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(reject(408, "the request did not arrive in time"));
            }
            match poll_in(&[self.stop, self.stream.as_raw_fd()], Some(left)) {
                Ok(Some(0)) => return Err(ReadError::Stopped),
                Ok(Some(_)) => break,
                Ok(None) => continue,
                Err(_) => return Err(ReadError::Closed),
            }
        }
        let mut chunk = [0u8; 4096];
        match (&*self.stream).read(&mut chunk) {
            Ok(0) => Err(ReadError::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(_) => Err(ReadError::Closed),
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
    }

    /// Reads up to the blank line that ends the head; returns the head.
    fn read_head(&mut self) -> Result<String, ReadError> {
        loop {
            // RFC 9112 section 2.2: ignore blank lines before the request line.
            let blank = self.buf.iter().take_while(|b| matches!(b, b'\r' | b'\n'));
            self.consume(blank.count());
            if let Some(end) = head_end(&self.buf) {
                if end > MAX_HEAD_BYTES {
                    break;
                }
                let head = self.buf[..end].to_vec();
                self.consume(end);
                return String::from_utf8(head)
                    .map_err(|_| reject(400, "the request head is not UTF-8"));
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                break;
            }
            self.fill()?;
        }
        Err(reject(431, "the request head is larger than 8 KiB"))
    }

    /// Reads the body into `self.body`; refuses large ones before reading
    /// any of them (a chunked one as soon as its sizes add up past the limit).
    fn read_body(&mut self, headers: &[(String, String)]) -> Result<(), ReadError> {
        let body = body_framing(headers)?;
        // The client waits for this before sending the body. Going ahead
        // rather than answering at once keeps one rule for every body: read
        // up to 64 KiB, refuse beyond (a chunked body has no size up front).
        if expects_continue(headers)? && body != Body::None {
            send_all(self.stream, b"HTTP/1.1 100 Continue\r\n\r\n")
                .map_err(|_| ReadError::Closed)?;
        }
        match body {
            Body::None => Ok(()),
            Body::Length(n) => self.skip(n),
            Body::Chunked => self.skip_chunked(),
        }
    }

    /// Moves the next `n` bytes of the request into the body.
    fn skip(&mut self, mut n: u64) -> Result<(), ReadError> {
        loop {
            let have = self.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            self.body.extend_from_slice(&self.buf[..have]);
            self.consume(have);
            n -= have as u64;
            if n == 0 {
                return Ok(());
            }
            self.fill()?;
        }
    }

    /// Returns the next line without its CRLF (or bare LF).
    fn read_line(&mut self, max: usize) -> Result<String, ReadError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.consume(i + 1);
                return Ok(line.strip_suffix('\r').unwrap_or(&line).to_string());
            }
            if self.buf.len() > max {
                return Err(reject(400, "a line of the chunked body is too long"));
            }
            self.fill()?;
        }
    }

    /// Reads a chunked body (RFC 9112 section 7.1), refusing it as soon as
    /// the chunk sizes add up to more than the limit.
    fn skip_chunked(&mut self) -> Result<(), ReadError> {
        let mut total: u64 = 0;
        loop {
            let line = self.read_line(MAX_CHUNK_LINE)?;
            let size = parse_chunk_size(&line)?;
            total = total.saturating_add(size);
            if total > MAX_BODY_BYTES {
                return Err(body_too_large());
            }
            if size == 0 {
                break;
            }
            self.skip(size)?;
            if !self.read_line(MAX_CHUNK_LINE)?.is_empty() {
                return Err(reject(400, "a chunk is longer than its size says"));
            }
        }
        self.skip_trailers()
    }

    fn skip_trailers(&mut self) -> Result<(), ReadError> {
        let mut total = 0;
        loop {
            let line = self.read_line(MAX_CHUNK_LINE)?;
            if line.is_empty() {
                return Ok(());
            }
            total += line.len();
            if total > MAX_HEAD_BYTES {
                return Err(reject(431, "the request trailers are larger than 8 KiB"));
            }
        }
    }
}

fn body_too_large() -> ReadError {
    reject(413, "the request body is larger than 64 KiB")
}

/// Where the head ends: just past the first empty line, if there is one.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match &buf[i + 1..] {
            [b'\n', ..] => Some(i + 2),
            [b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        }
    })
}

/// `tchar` of RFC 9110 section 5.6.2: what methods and header names are made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_head(text: &str) -> Result<Head, ReadError> {
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .take_while(|l| !l.is_empty());
    let (method, target) = parse_request_line(lines.next().unwrap_or(""))?;
    let headers = lines.map(parse_header).collect::<Result<_, _>>()?;
    Ok(Head {
        method,
        target,
        headers,
    })
}

fn parse_request_line(line: &str) -> Result<(String, String), ReadError> {
    let bad = || reject(400, "malformed request line");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !is_token(method) || target.is_empty() || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(bad());
    }
    match version.strip_prefix("HTTP/").map(str::as_bytes) {
        Some(b"1.1" | b"1.0") => Ok((method.to_string(), target.to_string())),
        Some([major, b'.', minor]) if major.is_ascii_digit() && minor.is_ascii_digit() => {
            Err(reject(505, "only HTTP/1.0 and HTTP/1.1 are supported"))
        }
        _ => Err(bad()),
    }
}

fn parse_header(line: &str) -> Result<(String, String), ReadError> {
    // Header folding is obsolete and a classic smuggling vector (RFC 9112 5.2).
    if line.starts_with([' ', '\t']) {
        return Err(reject(400, "folded header lines are not accepted"));
    }
    match line.split_once(':') {
        Some((name, value)) if is_token(name) => Ok((
            name.to_ascii_lowercase(),
            value.trim_matches([' ', '\t']).to_string(),
        )),
        _ => Err(reject(400, &format!("malformed header line: {line}"))),
    }
}

fn header_values<'h>(headers: &'h [(String, String)], name: &str) -> Vec<&'h str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Works out how the body is delimited and refuses a declared length over the
/// limit, so such a body is never read.
fn body_framing(headers: &[(String, String)]) -> Result<Body, ReadError> {
    let lengths = header_values(headers, "content-length");
    let codings = header_values(headers, "transfer-encoding");
    if !codings.is_empty() {
        // Both at once is how requests get smuggled; RFC 9112 6.3 allows refusing it.
        if !lengths.is_empty() {
            return Err(reject(400, "both Content-Length and Transfer-Encoding"));
        }
        let last = codings.last().and_then(|v| v.rsplit(',').next());
        return match last.map(str::trim) {
            Some(c) if c.eq_ignore_ascii_case("chunked") => Ok(Body::Chunked),
            _ => Err(reject(
                400,
                "a request's last transfer coding must be chunked",
            )),
        };
    }
    let Some(&first) = lengths.first() else {
        return Ok(Body::None);
    };
    if lengths.iter().any(|&l| l != first) || first.is_empty() {
        return Err(reject(400, "conflicting or empty Content-Length"));
    }
    if !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(reject(400, "malformed Content-Length"));
    }
    // All digits, so a parse failure can only be an overflow: too large.
    let n = first.parse::<u64>().unwrap_or(u64::MAX);
    match n {
        0 => Ok(Body::None),
        n if n > MAX_BODY_BYTES => Err(body_too_large()),
        n => Ok(Body::Length(n)),
    }
}

fn expects_continue(headers: &[(String, String)]) -> Result<bool, ReadError> {
    match header_values(headers, "expect").as_slice() {
        [] => Ok(false),
        [v] if v.eq_ignore_ascii_case("100-continue") => Ok(true),
        _ => Err(reject(
            417,
            "the only expectation supported is 100-continue",
        )),
    }
}

fn parse_chunk_size(line: &str) -> Result<u64, ReadError> {
    let digits = line
        .split(';')
        .next()
        .unwrap_or("")
        .trim_matches([' ', '\t']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(reject(400, "malformed chunk size"));
    }
    // All hex digits, so a parse failure can only be an overflow: too large.
    u64::from_str_radix(digits, 16).map_err(|_| body_too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: Result<impl std::fmt::Debug, ReadError>) -> u16 {
        match r {
            Err(ReadError::Reject(reply)) => reply.status,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn head_end_accepts_crlf_and_bare_lf() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nxyz"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nxyz"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }

    #[test]
    fn heads_parse_into_parts() {
        let head =
            parse_head("PUT /vm/pause HTTP/1.1\r\nHost: x\r\nContent-Length:  3 \r\n\r\n").unwrap();
        assert_eq!(head.method, "PUT");
        assert_eq!(head.target, "/vm/pause");
        assert_eq!(
            head.headers,
            headers(&[("host", "x"), ("content-length", "3")])
        );
    }

    #[test]
    fn bad_heads_are_refused() {
        assert_eq!(status(parse_head("GET /vm\r\n")), 400);
        assert_eq!(status(parse_head("GET  /vm HTTP/1.1\r\n")), 400);
        assert_eq!(status(parse_head("GET /vm HTTP/2.0\r\n")), 505);
        assert_eq!(status(parse_head("GET /vm FOO/1.1\r\n")), 400);
        assert_eq!(status(parse_head("GET /vm HTTP/1.1\r\nNo colon\r\n")), 400);
        assert_eq!(
            status(parse_head("GET /vm HTTP/1.1\r\nBad name: x\r\n")),
            400
        );
        assert_eq!(
            status(parse_head("GET /vm HTTP/1.1\r\nA: b\r\n folded\r\n")),
            400
        );
    }

    #[test]
    fn body_framing_follows_rfc_9112() {
        assert_eq!(body_framing(&[]).unwrap(), Body::None);
        let cl = |v| body_framing(&headers(&[("content-length", v)]));
        assert_eq!(cl("0").unwrap(), Body::None);
        assert_eq!(cl("65536").unwrap(), Body::Length(65536));
        assert_eq!(status(cl("65537")), 413);
        assert_eq!(status(cl("99999999999999999999999")), 413);
        assert_eq!(status(cl("-1")), 400);
        assert_eq!(status(cl("1, 2")), 400);
        let te = |v| body_framing(&headers(&[("transfer-encoding", v)]));
        assert_eq!(te("gzip, Chunked").unwrap(), Body::Chunked);
        assert_eq!(status(te("gzip")), 400);
        let both = headers(&[("content-length", "3"), ("transfer-encoding", "chunked")]);
        assert_eq!(status(body_framing(&both)), 400);
    }

    #[test]
    fn chunk_sizes_parse_as_hex() {
        assert_eq!(parse_chunk_size("1a;name=value").unwrap(), 26);
        assert_eq!(parse_chunk_size("0").unwrap(), 0);
        assert_eq!(status(parse_chunk_size("")), 400);
        assert_eq!(status(parse_chunk_size("xyz")), 400);
        assert_eq!(status(parse_chunk_size("fffffffffffffffffffff")), 413);
    }

    #[test]
    fn replies_carry_the_right_headers() {
        let text = |r: &Reply, head| String::from_utf8(r.to_bytes(head)).unwrap();
        let no_content = text(&Reply::no_content(), false);
        assert!(no_content.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(!no_content.contains("Content-Length"));
        let err = Reply::error(405, "nope").with_allow("PUT");
        let full = text(&err, false);
        assert!(full.contains("Content-Type: application/json\r\n"));
        assert!(full.contains("Allow: PUT\r\n"));
        assert!(full.ends_with("\r\n\r\n{\"error\":\"nope\"}"));
        assert!(text(&err, true)
            .ends_with("Content-Length: 16\r\nAllow: PUT\r\nConnection: close\r\n\r\n"));
    }
}
