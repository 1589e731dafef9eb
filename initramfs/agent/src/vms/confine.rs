//! What one VM's VMM may see and use when it runs jailed: the files its
//! command line names, its own run files, and the cgroup limits of its
//! definition (`limits`, with defaults from its size).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::launch_args::{BootPlan, Disk};
use super::launcher::Confinement;
use super::{runtime, Slot};
use crate::storage::{jail_staging_dir, VolumeFormat};
use crate::vm_types::{VmLimits, VmSpec};

/// cgroup `cpu.max` period, µs.
const CPU_PERIOD_US: u64 = 100_000;
/// Default CPU beyond the vCPUs (device and I/O threads), % of one CPU.
const VMM_CPU_PERCENT: u64 = 50;
/// Default memory beyond guest RAM (the VMM, its buffers), MiB.
const VMM_MEMORY_MIB: u64 = 128;

/// The confinement of `slot`'s VMM booting `plan` (None: an incoming
/// migration, which brings its VM instead) on `disks`.
pub fn confinement(
    slot: &Slot,
    spec: &VmSpec,
    plan: Option<&BootPlan>,
    disks: &[Disk],
) -> Confinement {
    let mut c = Confinement {
        id: slot.uuid.clone(),
        vmm_dir: runtime::vmm_dir(&slot.dir),
        ..Default::default()
    };
    if let Some(plan) = plan {
        c.read_files.push(plan.kernel.clone());
        c.read_files.extend(plan.initrd.clone());
    }
    for d in disks {
        let r = &d.resolved;
        match d.readonly {
            true => c.read_files.push(r.path.clone()),
            false => {
                c.write_files.push(r.path.clone());
                let staging = jail_staging_dir(&r.backing_dirs[0], &slot.uuid);
                if !c.staging_dirs.contains(&staging) {
                    c.staging_dirs.push(staging);
                }
            }
        }
        // Only a qcow2 image has a backing chain to follow.
        if r.format == VolumeFormat::Qcow2 {
            for dir in &r.backing_dirs {
                if !c.read_dirs.contains(dir) {
                    c.read_dirs.push(dir.clone());
                }
            }
        }
    }
    let l = &spec.limits;
    let cpu = l
        .cpu_percent
        .map_or(u64::from(spec.vcpus) * 100 + VMM_CPU_PERCENT, u64::from);
    c.cpu_max = Some(format!("{} {CPU_PERIOD_US}", cpu * CPU_PERIOD_US / 100));
    let mib = l.memory_max_mib.unwrap_or(spec.memory_mib + VMM_MEMORY_MIB);
    c.memory_max = Some(mib << 20);
    c.io_max = io_max(l, disks.iter().map(|d| d.resolved.path.as_path()));
    c
}

/// One `io.max` line per block device under the disks, if any I/O limit
/// is set. A disk on a file system without a block device (tmpfs, NFS)
/// has nothing to limit.
fn io_max<'a>(l: &VmLimits, paths: impl Iterator<Item = &'a Path>) -> Vec<String> {
    let caps: Vec<String> = [
        ("rbps", l.read_bps),
        ("wbps", l.write_bps),
        ("riops", l.read_iops),
        ("wiops", l.write_iops),
    ]
    .iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
    .collect();
    if caps.is_empty() {
        return Vec::new();
    }
    let mut devices: Vec<String> = paths.filter_map(whole_disk).collect();
    devices.sort();
    devices.dedup();
    devices
        .into_iter()
        .map(|dev| format!("{dev} {}", caps.join(" ")))
        .collect()
}

/// `MAJ:MIN` of the disk holding `path` (io.max takes whole disks, not
/// partitions).
fn whole_disk(path: &Path) -> Option<String> {
    let dev = std::fs::metadata(path).ok()?.dev();
    let sys = PathBuf::from(format!(
        "/sys/dev/block/{}:{}",
        libc::major(dev),
        libc::minor(dev)
    ));
    let sys = sys.canonicalize().ok()?;
    let disk = match sys.join("partition").exists() {
        true => sys.parent()?.to_path_buf(),
        false => sys,
    };
    Some(
        std::fs::read_to_string(disk.join("dev"))
            .ok()?
            .trim()
            .to_string(),
    )
}
