//! vireo-api: one request to a running vireo-vmm's control API, for scripts
//! and machines without curl (the rig, the appliance).
//!
//! `vireo-api SOCKET METHOD PATH [BODY]`, e.g.
//! `vireo-api /run/vm.sock PUT /vm/ctrl-alt-del`. Prints the status line and
//! the body; exits 0 on a 2xx answer, 1 on any other answer, 2 when there is
//! no answer (bad arguments, no socket, a closed connection).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

/// Longer than the API's own wait for the VMM (5 s), so a slow answer is seen.
const TIMEOUT: Duration = Duration::from_secs(10);

fn request(socket: &str, method: &str, path: &str, body: &str) -> Result<String, String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("cannot connect to {socket}: {e}"))?;
    let set = |s: &UnixStream| -> std::io::Result<()> {
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))
    };
    set(&stream).map_err(|e| format!("cannot set timeouts: {e}"))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("no answer: {e}"))?;
    Ok(answer)
}

/// The status code of an HTTP/1.1 answer, if it has a status line.
fn status_of(answer: &str) -> Option<u16> {
    let line = answer.lines().next()?;
    let mut words = line.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(3..=4).contains(&args.len()) {
        eprintln!("usage: vireo-api SOCKET METHOD PATH [BODY]");
        return ExitCode::from(2);
    }
    let body = args.get(3).map_or("", String::as_str);
    let answer = match request(&args[0], &args[1], &args[2], body) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vireo-api: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(status) = status_of(&answer) else {
        eprintln!("vireo-api: not an HTTP answer: {answer:?}");
        return ExitCode::from(2);
    };
    // The status line, then the body without the headers.
    println!("{}", answer.lines().next().unwrap_or_default());
    if let Some((_, body)) = answer.split_once("\r\n\r\n") {
        if !body.is_empty() {
            println!("{body}");
        }
    }
    ExitCode::from(if (200..300).contains(&status) { 0 } else { 1 })
}
