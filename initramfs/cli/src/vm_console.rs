//! `vireo vm console` (the agent's console WebSocket, the terminal raw,
//! Ctrl-] to detach) and `vireo vm shutdown`'s wait, shown as a progress bar.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use tungstenite::stream::MaybeTlsStream;
use tungstenite::Message;

use crate::{print_out, request};

/// Ctrl-], as telnet and virsh use it.
const DETACH: u8 = 0x1d;

/// The terminal in raw mode until dropped (nothing when stdin is no tty).
pub struct RawTerminal(Option<libc::termios>);

/// The terminal without echo until dropped (a password prompt).
pub fn no_echo() -> RawTerminal {
    RawTerminal::with(|t| t.c_lflag &= !libc::ECHO)
}

impl RawTerminal {
    fn enter() -> Self {
        // SAFETY: cfmakeraw only edits the termios it is given.
        Self::with(|t| unsafe { libc::cfmakeraw(t) })
    }

    fn with(change: impl FnOnce(&mut libc::termios)) -> Self {
        // SAFETY: termios calls on fd 0 with a termios we own.
        unsafe {
            if libc::isatty(0) != 1 {
                return RawTerminal(None);
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return RawTerminal(None);
            }
            let mut changed = saved;
            change(&mut changed);
            libc::tcsetattr(0, libc::TCSANOW, &changed);
            RawTerminal(Some(saved))
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings saved from fd 0.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
}

pub fn attach(base: &str, name: &str) -> Result<(), String> {
    let url = format!(
        "{}/vms/{name}/console{}",
        base.replacen("http://", "ws://", 1),
        crate::token::token_for(base).map_or(String::new(), |t| format!("?token={t}"))
    );
    let (mut ws, _) = tungstenite::connect(url.as_str()).map_err(|e| match e {
        tungstenite::Error::Http(resp) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            format!(
                "{url}: {}",
                crate::error_text(&body, resp.status().as_u16())
            )
        }
        e => format!("cannot reach {url}: {e}"),
    })?;
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
    }
    eprint!("Connected to VM {name}'s console; Ctrl-] detaches.\r\n");
    let _raw = RawTerminal::enter();
    let keys = stdin_keys();
    let mut out = std::io::stdout();
    loop {
        for bytes in keys.try_iter() {
            if let Some(i) = bytes.iter().position(|&b| b == DETACH) {
                if i > 0 {
                    let _ = ws.send(Message::Binary(bytes[..i].to_vec().into()));
                }
                let _ = ws.close(None);
                eprint!("\r\nDetached from VM {name}.\r\n");
                return Ok(());
            }
            ws.send(Message::Binary(bytes.into()))
                .map_err(|e| format!("console: {e}"))?;
        }
        match ws.read() {
            Ok(Message::Binary(b)) => {
                let _ = out.write_all(&b).and_then(|()| out.flush());
            }
            Ok(Message::Close(_)) => return Err("the agent closed the console".into()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
            Err(e) => return Err(format!("console: {e}")),
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Keystrokes from a thread of their own (stdin blocks).
fn stdin_keys() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        while let Ok(n @ 1..) = stdin.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    rx
}

/// Starts the shutdown task and follows it with a progress bar (the
/// seconds the guest has used of its timeout).
pub fn shutdown(
    base: &str,
    name: &str,
    timeout: Option<u64>,
    no_wait: bool,
    json: bool,
) -> Result<(), String> {
    let q = timeout.map_or(String::new(), |t| format!("?timeout={t}"));
    let body = request(
        base,
        "POST",
        &format!("/vms/{name}/shutdown{q}"),
        None,
        Duration::from_secs(30),
    )?;
    let task: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let id = task["id"].as_str().unwrap_or_default().to_string();
    if no_wait {
        return match json {
            true => crate::vm::print_json(&task),
            false => print_out(&format!("shutdown of VM {name} requested (task {id})\n")),
        };
    }
    let bar = indicatif::ProgressBar::new(timeout.unwrap_or(60));
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} s")
            .map_err(|e| e.to_string())?,
    );
    bar.set_message(format!("waiting for {name} to shut down"));
    let done = loop {
        let t: serde_json::Value = serde_json::from_str(&request(
            base,
            "GET",
            &format!("/tasks/{id}"),
            None,
            Duration::from_secs(30),
        )?)
        .map_err(|e| e.to_string())?;
        if let Some(total) = t["total"].as_u64().filter(|&n| n > 0) {
            bar.set_length(total);
        }
        bar.set_position(t["done"].as_u64().unwrap_or(0));
        if t["state"] != "running" {
            break t;
        }
        bar.tick();
        std::thread::sleep(Duration::from_millis(200));
    };
    bar.finish_and_clear();
    if json {
        return crate::vm::print_json(&done);
    }
    match (done["state"].as_str(), done["result"]["forced"].as_bool()) {
        (Some("done"), Some(false)) => print_out(&format!("VM {name} shut down\n")),
        (Some("done"), _) => print_out(&format!(
            "VM {name} was stopped hard: {}\n",
            done["result"]["reason"]
                .as_str()
                .unwrap_or("the guest did not shut down")
        )),
        _ => Err(format!(
            "shutdown of VM {name}: {}",
            done["error"].as_str().unwrap_or("failed")
        )),
    }
}
