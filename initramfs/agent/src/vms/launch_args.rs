//! From a VM's definition to a vireo-vmm command line: the boot files
//! (given, or found on the VM's disk), the disks as the storage resolves
//! them, the NICs, and the run directory's sockets and exit file.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;

use super::bootdisk;
use super::def::BootFile;
use super::runtime;
use super::Slot;
use crate::error::ApiError;
use crate::storage::{ResolvedVolume, Storage, VolumeFormat, VolumeRef};
use crate::vm_types::{Boot, VmSpec};

/// The VMM's own default, for a kernel booted without a command line.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";

/// What the VMM boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootPlan {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

pub struct Disk {
    pub resolved: ResolvedVolume,
    pub readonly: bool,
}

/// The boot files of `spec`; for boot from disk they are extracted into
/// `dir` (blocking: runs on a blocking thread).
pub fn boot_plan(storage: &Storage, spec: &VmSpec, dir: &Path) -> Result<BootPlan, ApiError> {
    match &spec.boot {
        Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            let locate = |field: &str, s: &str| {
                BootFile::parse(s)
                    .and_then(|f| f.locate(storage))
                    .map_err(|e| ApiError::bad_request(format!("boot.{field}: {e}")))
            };
            Ok(BootPlan {
                kernel: locate("kernel", kernel)?,
                initrd: initrd.as_deref().map(|i| locate("initrd", i)).transpose()?,
                cmdline: cmdline.clone().unwrap_or_else(|| DEFAULT_CMDLINE.into()),
            })
        }
        Boot::Disk { disk, cmdline } => {
            let volume = spec
                .disks
                .get(*disk)
                .ok_or_else(|| ApiError::bad_request(format!("boot.disk {disk}: no such disk")))?
                .volume
                .clone();
            let v: VolumeRef = volume.parse().map_err(ApiError::bad_request)?;
            let resolved = storage.resolve(&v)?;
            let found = bootdisk::extract(&resolved, &dir.join("boot"), *disk).map_err(|e| {
                ApiError(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("volume '{v}': {e}"),
                )
            })?;
            let mut line = found.cmdline;
            if let Some(extra) = cmdline {
                line = format!("{line} {extra}");
            }
            Ok(BootPlan {
                kernel: found.kernel,
                initrd: found.initrd,
                cmdline: line,
            })
        }
    }
}

/// The VMM's arguments. It runs the guest at once: its console's first
/// client and its readiness pipe are handed over at spawn (`handed`,
/// from [`handoff_args`]), so nothing the guest prints is lost.
pub fn vmm_args(
    slot: &Slot,
    spec: &VmSpec,
    plan: &BootPlan,
    disks: &[Disk],
    handed: Vec<String>,
) -> Result<Vec<String>, String> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut args = vec!["--kernel".to_string(), path(&plan.kernel)];
    if let Some(initrd) = &plan.initrd {
        args.extend(["--initrd".into(), path(initrd)]);
    }
    args.extend([
        "--cmdline".into(),
        plan.cmdline.clone(),
        "--cpus".into(),
        spec.vcpus.to_string(),
        "--memory".into(),
        format!("{}M", spec.memory_mib),
    ]);
    args.extend(host_args(slot, spec, disks)?);
    args.extend(handed);
    Ok(args)
}

/// The inherited fds: the agent's console connection (the VMM's end) and
/// the pipe on which the VMM says it is up.
pub fn handoff_args(serial_client_fd: i32, ready_fd: i32) -> Vec<String> {
    vec![
        "--serial-client-fd".into(),
        serial_client_fd.to_string(),
        "--ready-fd".into(),
        ready_fd.to_string(),
    ]
}

/// A VMM that waits on `url` for the VM a source VMM migrates to it: the
/// VM's description comes from the source, where things are on this host
/// (run directory, disks, NICs) from here. It stays paused once it has the
/// VM, like a fresh boot, until the agent has attached to its console.
pub fn incoming_args(
    slot: &Slot,
    spec: &VmSpec,
    disks: &[Disk],
    url: &str,
) -> Result<Vec<String>, String> {
    let mut args = vec![
        "--incoming".to_string(),
        url.to_string(),
        "--paused".to_string(),
    ];
    args.extend(host_args(slot, spec, disks)?);
    Ok(args)
}

/// The run directory's sockets and exit file, disks and NICs.
fn host_args(slot: &Slot, spec: &VmSpec, disks: &[Disk]) -> Result<Vec<String>, String> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut args = vec![
        "--serial".into(),
        format!("socket:{}", path(&slot.console_socket())),
        "--api-socket".into(),
        path(&slot.api_socket()),
        "--exit-file".into(),
        path(&runtime::exit_file(&slot.dir)),
    ];
    // A VM may migrate: its channels use the node's cluster certificate.
    args.extend(crate::cluster::peer::migration_tls_args());
    for (i, d) in disks.iter().enumerate() {
        args.extend(["--disk".into(), disk_arg(i, d)?]);
    }
    for nic in &spec.nics {
        let mut arg = match (&nic.tap, &nic.macvtap) {
            (Some(t), _) => format!("tap={t}"),
            (None, Some(m)) => format!("macvtap={m}"),
            (None, None) => return Err("a NIC needs tap or macvtap".into()),
        };
        if let Some(mac) = &nic.mac {
            arg += &format!(",mac={mac}");
        }
        if let Some(mtu) = nic.mtu {
            arg += &format!(",mtu={mtu}");
        }
        args.extend(["--net".into(), arg]);
    }
    Ok(args)
}

/// `path=..,format=..,id=diskN[,readonly=on][,backing-dir=..]`. The VMM's
/// syntax splits on commas, so a path with one cannot be passed.
fn disk_arg(index: usize, d: &Disk) -> Result<String, String> {
    let r = &d.resolved;
    let mut paths = vec![&r.path];
    paths.extend(&r.backing_dirs);
    if let Some(p) = paths.iter().find(|p| p.to_string_lossy().contains(',')) {
        return Err(format!(
            "{}: a path with ',' cannot be given to the VMM",
            p.display()
        ));
    }
    let format = match r.format {
        VolumeFormat::Raw => "raw",
        VolumeFormat::Qcow2 => "qcow2",
    };
    let mut arg = format!("path={},format={format},id=disk{index}", r.path.display());
    if d.readonly {
        arg += ",readonly=on";
    }
    for dir in &r.backing_dirs {
        arg += &format!(",backing-dir={}", dir.display());
    }
    Ok(arg)
}
