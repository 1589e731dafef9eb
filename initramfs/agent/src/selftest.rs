//! POST /selftest/vmm: boot the probe guest (docs/probe.md) under vireo-vmm
//! on this node and return its serial report. It proves /dev/kvm, the VMM
//! and the guest path work on this machine, before any real VM runs.
//! `?guest=linux` boots a Linux guest instead, when the image carries one
//! (the test images do: the rig's minimal guest kernel and initramfs). On
//! aarch64, where there is no probe (it is an x86_64 program), Linux is the
//! default.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use tokio::process::Command;

use crate::server::{ApiError, AppState};
use crate::types::VmmSelftest;

/// Where the VMM and the guests are, and how long a run may take.
#[derive(Debug, Clone)]
pub struct SelftestConfig {
    pub vmm: PathBuf,
    pub probe: PathBuf,
    /// A Linux kernel (bzImage or ELF; an arm64 Image on aarch64) and its initramfs, whose /init prints
    /// `VIREO-GUEST-INIT cpus=N mem_kb=M` and resets (tests/rig/build-guest-initramfs.sh).
    pub linux_kernel: PathBuf,
    pub linux_initrd: PathBuf,
    pub timeout: Duration,
}

/// Which guest a selftest boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Guest {
    Probe,
    Linux,
}

impl Default for Guest {
    /// The probe where it exists (x86_64), else the Linux guest.
    fn default() -> Self {
        if cfg!(target_arch = "x86_64") {
            Guest::Probe
        } else {
            Guest::Linux
        }
    }
}

/// The Linux guest's kernel as the image ships it (`Image` on arm64).
const LINUX_KERNEL: &str = if cfg!(target_arch = "aarch64") {
    "/usr/lib/vireo/guest/Image"
} else {
    "/usr/lib/vireo/guest/bzImage"
};

#[derive(Debug, Default, serde::Deserialize)]
pub struct SelftestQuery {
    #[serde(default)]
    guest: Guest,
}

impl Default for SelftestConfig {
    /// The appliance's layout (initramfs/build-initramfs.sh). Under QEMU
    /// TCG (nested KVM) the probe takes a few seconds; 120 s is generous.
    fn default() -> Self {
        SelftestConfig {
            vmm: "/usr/bin/vireo-vmm".into(),
            probe: "/usr/lib/vireo/probe.elf".into(),
            linux_kernel: LINUX_KERNEL.into(),
            linux_initrd: "/usr/lib/vireo/guest/initramfs.cpio.gz".into(),
            timeout: Duration::from_secs(120),
        }
    }
}

/// A run's output is the probe's short report; more than this is a runaway.
const MAX_OUTPUT: usize = 256 * 1024;

/// The probe with 2 vCPUs and 64 MiB: enough to check SMP bring-up and the
/// memory map, small enough for a node that runs under emulation. Linux gets
/// 2 vCPUs and 256 MiB, its console on the serial port, and resets at /init's end.
fn vmm_args(cfg: &SelftestConfig, guest: Guest) -> Vec<String> {
    let path = |p: &PathBuf| p.to_string_lossy().into_owned();
    let (files, memory, cmdline) = match guest {
        Guest::Probe => (vec![("--kernel", &cfg.probe)], "64M", "vireo selftest"),
        Guest::Linux => (
            vec![
                ("--kernel", &cfg.linux_kernel),
                ("--initrd", &cfg.linux_initrd),
            ],
            "256M",
            "console=ttyS0 reboot=k panic=-1",
        ),
    };
    let mut args = Vec::new();
    for (flag, file) in files {
        args.extend([flag.to_string(), path(file)]);
    }
    let rest = [
        "--cpus",
        "2",
        "--memory",
        memory,
        "--serial",
        "stdio",
        "--cmdline",
        cmdline,
    ];
    args.extend(rest.map(String::from));
    args
}

/// The guest's own word that it booted: the probe's last report line, or
/// the Linux guest's /init line (the kernel booted, every vCPU online).
fn guest_succeeded(guest: Guest, serial: &str) -> bool {
    serial.lines().any(|l| match guest {
        Guest::Probe => l.trim() == "PROBE done ok",
        Guest::Linux => l.trim_start().starts_with("VIREO-GUEST-INIT cpus=2 "),
    })
}

pub async fn vmm(
    State(state): State<AppState>,
    Query(query): Query<SelftestQuery>,
) -> Result<Json<VmmSelftest>, ApiError> {
    // One run at a time: two nested VMs on an emulated node only slow both.
    let Ok(_running) = state.selftest_lock.try_lock() else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "a VMM selftest is already running".into(),
        ));
    };
    let cfg = &state.selftest;
    let needed = match query.guest {
        Guest::Probe => vec![&cfg.probe],
        Guest::Linux => vec![&cfg.linux_kernel, &cfg.linux_initrd],
    };
    if let Some(missing) = needed.into_iter().find(|p| !p.is_file()) {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no {} at {}: this image was built without it",
                if query.guest == Guest::Probe {
                    "probe guest"
                } else {
                    "Linux guest"
                },
                missing.display()
            ),
        ));
    }
    run(cfg, query.guest).await.map(Json)
}

async fn run(cfg: &SelftestConfig, guest: Guest) -> Result<VmmSelftest, ApiError> {
    let args = vmm_args(cfg, guest);
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
    let ok = exit_status == Some(0) && guest_succeeded(guest, &serial);
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
