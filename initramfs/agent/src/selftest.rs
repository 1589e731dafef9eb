//! POST /selftest/vmm: boot the probe guest (docs/probe.md) under vireo-vmm
//! on this node and return its serial report. It proves /dev/kvm, the VMM
//! and the guest path work on this machine, before any real VM runs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use tokio::process::Command;

use crate::server::{ApiError, AppState};
use crate::types::VmmSelftest;

/// Where the VMM and the probe guest are, and how long a run may take.
#[derive(Debug, Clone)]
pub struct SelftestConfig {
    pub vmm: PathBuf,
    pub probe: PathBuf,
    pub timeout: Duration,
}

impl Default for SelftestConfig {
    /// The appliance's layout (initramfs/build-initramfs.sh). Under QEMU
    /// TCG (nested KVM) the probe takes a few seconds; 120 s is generous.
    fn default() -> Self {
        SelftestConfig {
            vmm: "/usr/bin/vireo-vmm".into(),
            probe: "/usr/lib/vireo/probe.elf".into(),
            timeout: Duration::from_secs(120),
        }
    }
}

/// A run's output is the probe's short report; more than this is a runaway.
const MAX_OUTPUT: usize = 256 * 1024;

/// The probe with 2 vCPUs and 64 MiB: enough to check SMP bring-up and the
/// memory map, small enough for a node that runs under emulation.
fn vmm_args(cfg: &SelftestConfig) -> Vec<String> {
    [
        "--kernel",
        &cfg.probe.to_string_lossy(),
        "--cpus",
        "2",
        "--memory",
        "64M",
        "--serial",
        "stdio",
        "--cmdline",
        "vireo selftest",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub async fn vmm(State(state): State<AppState>) -> Result<Json<VmmSelftest>, ApiError> {
    // One run at a time: two nested VMs on an emulated node only slow both.
    let Ok(_running) = state.selftest_lock.try_lock() else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "a VMM selftest is already running".into(),
        ));
    };
    let cfg = &state.selftest;
    if !cfg.probe.is_file() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no probe guest at {}: this image was built without it",
                cfg.probe.display()
            ),
        ));
    }
    run(cfg).await.map(Json)
}

async fn run(cfg: &SelftestConfig) -> Result<VmmSelftest, ApiError> {
    let args = vmm_args(cfg);
    let start = Instant::now();
    let child = Command::new(&cfg.vmm)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot start {}: {e}", cfg.vmm.display()),
            )
        })?;
    let (output, timed_out) =
        match tokio::time::timeout(cfg.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => (Some(out), false),
            Ok(Err(e)) => {
                return Err(ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("waiting for {}: {e}", cfg.vmm.display()),
                ))
            }
            // Dropping the future drops the child: kill_on_drop ends it.
            Err(_) => (None, true),
        };
    let text = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(MAX_OUTPUT)]).into_owned();
    let (exit_status, serial, stderr) = match &output {
        Some(out) => (out.status.code(), text(&out.stdout), text(&out.stderr)),
        None => (None, String::new(), String::new()),
    };
    let ok = exit_status == Some(0) && serial.lines().any(|l| l.trim() == "PROBE done ok");
    let mut command = vec![cfg.vmm.to_string_lossy().into_owned()];
    command.extend(args);
    Ok(VmmSelftest {
        ok,
        command,
        exit_status,
        serial,
        stderr,
        duration_ms: start.elapsed().as_millis() as u64,
        timed_out,
    })
}
