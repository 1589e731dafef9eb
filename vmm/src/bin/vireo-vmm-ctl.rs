//! vireo-vmm-ctl: drives one vireo-vmm through its API socket — pause,
//! resume, shut down, snapshot, and migrate with a progress bar.
//!
//! ```text
//! vireo-vmm-ctl --api-socket PATH info|pause|resume|shutdown|reboot|ctrl-alt-del
//! vireo-vmm-ctl --api-socket PATH snapshot DIR
//! vireo-vmm-ctl --api-socket PATH migrate URL [--max-downtime-ms N] [--bandwidth-mbps N]
//!                                             [--disks shared|copy] [--no-auto-converge] [--detach]
//! vireo-vmm-ctl --api-socket PATH migration|cancel
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use vireo_vmm::ctl::request;

#[derive(Parser)]
#[command(
    name = "vireo-vmm-ctl",
    version,
    about = "Drive a vireo-vmm through its API socket"
)]
struct Args {
    /// The VMM's --api-socket.
    #[arg(long, value_name = "PATH")]
    api_socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The VM's configuration and state (JSON).
    Info,
    Pause,
    Resume,
    Shutdown,
    Reboot,
    /// Type Ctrl-Alt-Del on the guest's keyboard (x86_64; most Linux
    /// guests then shut down or reboot in order).
    CtrlAltDel,
    /// Save the paused VM into DIR (new or empty).
    Snapshot {
        dir: PathBuf,
    },
    /// Move the running VM to a `vireo-vmm --incoming URL` and wait, with
    /// a progress bar, until it runs there.
    Migrate {
        /// tcp://HOST:PORT, tls://HOST:PORT or unix:PATH
        url: String,
        #[arg(long, default_value_t = 300)]
        max_downtime_ms: u64,
        /// 0: no cap.
        #[arg(long, default_value_t = 0)]
        bandwidth_mbps: u64,
        #[arg(long, value_parser = ["shared", "copy"], default_value = "shared")]
        disks: String,
        #[arg(long)]
        no_auto_converge: bool,
        /// Start it and return at once.
        #[arg(long)]
        detach: bool,
    },
    /// The last migration's progress (JSON).
    Migration,
    /// Stop the running migration (the VM goes on here).
    Cancel,
}

fn call(args: &Args, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let body = body.map(|b| b.to_string());
    request(&args.api_socket, method, path, body.as_deref())
        .map_err(|e| e.to_string())?
        .ok_json()
}

fn run(args: &Args) -> Result<(), String> {
    let put = |path: &str| call(args, "PUT", path, None).map(|_| ());
    match &args.command {
        Command::Info => print(call(args, "GET", "/vm", None)?),
        Command::Pause => put("/vm/pause"),
        Command::Resume => put("/vm/resume"),
        Command::Shutdown => put("/vm/shutdown"),
        Command::Reboot => put("/vm/reboot"),
        Command::CtrlAltDel => put("/vm/ctrl-alt-del"),
        Command::Snapshot { dir } => {
            call(args, "PUT", "/vm/snapshot", Some(json!({ "dir": dir })))?;
            eprintln!("snapshot written to {}", dir.display());
            Ok(())
        }
        Command::Migration => print(call(args, "GET", "/vm/migration", None)?),
        Command::Cancel => put("/vm/migration/cancel"),
        Command::Migrate {
            url,
            max_downtime_ms,
            bandwidth_mbps,
            disks,
            no_auto_converge,
            detach,
        } => {
            let body = json!({
                "url": url,
                "max_downtime_ms": max_downtime_ms,
                "bandwidth_mbps": bandwidth_mbps,
                "disks": disks,
                "auto_converge": !no_auto_converge,
                "exit_when_done": *detach,
            });
            call(args, "PUT", "/vm/migrate", Some(body))?;
            if *detach {
                return Ok(());
            }
            follow(args)
        }
    }
}

fn print(v: Value) -> Result<(), String> {
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    Ok(())
}

/// Polls GET /vm/migration until it ends; the source VMM stays until then
/// (exit_when_done false) and is shut down after the figures are read.
fn follow(args: &Args) -> Result<(), String> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let last = loop {
        let status = call(args, "GET", "/vm/migration", None)?;
        let sent = status["bytes_sent"].as_u64().unwrap_or(0);
        bar.set_length(sent + status["bytes_remaining"].as_u64().unwrap_or(0));
        bar.set_position(sent);
        bar.set_message(format!(
            "{} pass {} {} Mbit/s dirty {} Mbit/s throttle {}%",
            phase(&status),
            status["pass"],
            status["bandwidth_mbps"],
            status["dirty_rate_mbps"],
            status["throttle_percent"]
        ));
        match phase(&status) {
            "completed" => break status,
            "failed" | "cancelled" | "unknown" => {
                bar.abandon();
                return Err(format!("migration {}: {}", phase(&status), status["error"]));
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    bar.finish_and_clear();
    call(args, "PUT", "/vm/shutdown", None)?;
    let parts = &last["downtime_breakdown_ms"];
    eprintln!(
        "migrated: {} passes, {} bytes, downtime {} ms (capture {}, last pages {}, state {}, \
         destination build {}, commit {}), total {} ms",
        last["pass"],
        last["bytes_sent"],
        last["downtime_ms"],
        parts[0],
        parts[1],
        parts[2],
        parts[3],
        parts[4],
        last["total_ms"]
    );
    Ok(())
}

fn phase(v: &Value) -> &str {
    v["phase"].as_str().unwrap_or("")
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vireo-vmm-ctl: {e}");
            ExitCode::FAILURE
        }
    }
}
