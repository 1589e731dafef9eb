//! `vireo login`: a session token from the agent's user name and password,
//! kept for that agent in ~/.config/vireo/credentials.json (0600), and the
//! CA trusted for it (--ca, or a node's cluster CA) in ~/.config/vireo/ca/.

use std::io::{BufRead, IsTerminal, Write};

use serde_json::json;
use vireo_agent::auth_api::LoginAnswer;

use crate::storage::Conn;

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The user (admin at first; its password is in the node's
    /// STATE/initial-admin-password).
    #[arg(long, default_value = "admin")]
    pub user: String,
}

/// The password: VIREO_PASSWORD, else a line of stdin (not echoed on a
/// terminal).
fn password() -> Result<String, String> {
    if let Ok(p) = std::env::var("VIREO_PASSWORD") {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    if tty {
        eprint!("password: ");
        let _ = std::io::stderr().flush();
    }
    let echo = tty.then(crate::vm_console::no_echo);
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    drop(echo);
    if tty {
        eprintln!();
    }
    read.map_err(|e| format!("reading the password: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn run(conn: &Conn, args: LoginArgs) -> Result<(), String> {
    let base = crate::base_url(&conn.host);
    let password = password()?;
    let body = json!({"user": args.user, "password": password}).to_string();
    let text = crate::request(
        &base,
        "POST",
        "/auth/login",
        Some(&body),
        std::time::Duration::from_secs(60),
    )?;
    let answer: LoginAnswer =
        serde_json::from_str(&text).map_err(|e| format!("unexpected answer: {e}"))?;
    let file = crate::token::save(&base, &answer.token)?;
    let ca = crate::token::save_ca(&base)?
        .map_or(String::new(), |f| format!("; CA kept in {}", f.display()));
    let tenant = answer
        .tenant
        .map_or(String::new(), |t| format!(", tenant {t}"));
    crate::print_out(&format!(
        "logged in to {base} as {} ({}{tenant}); token kept in {}{ca}\n",
        answer.user,
        answer.role,
        file.display()
    ))
}
