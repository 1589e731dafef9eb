//! The files a running VM leaves in its run directory (`RUN/vms/UUID`, a
//! tmpfs on the node), which let a restarted agent find its VMMs again:
//! the pid record, the VMM's exit record (`--exit-file`), and the last
//! exit the agent saw. And the marker that tells an agent restart from a
//! node boot.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::process::PidRecord;
use crate::store;
use crate::vm_types::ExitInfo;

const PID_FILE: &str = "vmm.pid.json";
const EXIT_FILE: &str = "exit.json";
const LAST_EXIT_FILE: &str = "last-exit.json";
const BOOT_MARKER: &str = "agent-boot-id";
/// Present while the agent is stopping the run: a successor agent then
/// knows its end is no crash and no guest reboot to answer.
const STOPPING: &str = "stopping";

/// True the first time an agent starts on this run directory since the
/// node booted (the run directory is a tmpfs, so a reboot empties it; the
/// kernel's boot id guards a run directory that is not). Autostart happens
/// then only: an agent restart must not start VMs someone stopped.
pub fn first_start_this_boot(run: &Path) -> bool {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let marker = run.join(BOOT_MARKER);
    let seen = std::fs::read_to_string(&marker).unwrap_or_default();
    if !seen.is_empty() && seen == boot_id {
        return false;
    }
    if let Err(e) = std::fs::write(&marker, &boot_id) {
        eprintln!("vireo-agent: cannot write {}: {e}", marker.display());
    }
    true
}

/// Whole or not at all (temporary file, rename), but not fsynced: the run
/// directory is a tmpfs, and a power loss takes the VMMs with it. (An fsync
/// here cost milliseconds of every start on a disk-backed directory.)
fn write_runtime_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(value).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

pub fn write_pid(dir: &Path, record: &PidRecord) -> std::io::Result<()> {
    write_runtime_json(&dir.join(PID_FILE), record)
}

pub fn read_pid(dir: &Path) -> Option<PidRecord> {
    store::read_json(&dir.join(PID_FILE)).ok().flatten()
}

/// What `vireo-vmm --exit-file` writes.
#[derive(Debug, Deserialize)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub outcome: String,
    pub message: Option<String>,
}

/// The part of the run directory the VMM writes: its sockets and exit
/// record. A jailed VMM owns it and nothing else of the run directory, so
/// it cannot touch the pid file a restarted agent trusts.
pub fn vmm_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("vmm")
}

pub fn exit_file(dir: &Path) -> std::path::PathBuf {
    vmm_dir(dir).join(EXIT_FILE)
}

pub fn read_exit(dir: &Path) -> Option<ExitRecord> {
    store::read_json(&exit_file(dir)).ok().flatten()
}

/// A jailed VMM's staging directories (host path, path in its jail), in
/// the root-owned part of the run directory.
const JAIL_STAGING_FILE: &str = "jail-staging.json";

pub fn write_jail_staging(dir: &Path, staging: &[(PathBuf, PathBuf)]) -> std::io::Result<()> {
    write_runtime_json(&dir.join(JAIL_STAGING_FILE), &staging)
}

pub fn read_jail_staging(dir: &Path) -> Option<Vec<(PathBuf, PathBuf)>> {
    store::read_json(&dir.join(JAIL_STAGING_FILE))
        .ok()
        .flatten()
}

/// Removes what belonged to the run that ended (its sockets are the VMM's
/// to remove, but a killed VMM leaves them).
pub fn clear_run_files(dir: &Path) {
    for f in [PID_FILE, STOPPING, JAIL_STAGING_FILE] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    for f in [EXIT_FILE, "api.sock", "console.sock"] {
        let _ = std::fs::remove_file(vmm_dir(dir).join(f));
    }
}

pub fn save_last_exit(dir: &Path, exit: &ExitInfo) {
    let _ = write_runtime_json(&dir.join(LAST_EXIT_FILE), exit);
}

pub fn read_last_exit(dir: &Path) -> Option<ExitInfo> {
    store::read_json(&dir.join(LAST_EXIT_FILE)).ok().flatten()
}

/// The last lines of the VMM's own log, for an error message.
pub fn vmm_log_tail(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("vmm.log")).ok()?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    (!tail.is_empty()).then_some(tail)
}

pub fn mark_stopping(dir: &Path) {
    let _ = std::fs::write(dir.join(STOPPING), b"");
}

pub fn clear_stopping(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(STOPPING));
}

pub fn is_stopping(dir: &Path) -> bool {
    dir.join(STOPPING).exists()
}
