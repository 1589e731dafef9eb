//! A VM's persistent definition and its validation. What a client sends
//! (`VmSpec`) is checked whole before anything changes; the stored form
//! (`VmDef`) adds the identity the agent gives it. One JSON file per VM,
//! `STATE/vms/UUID.json`, written atomically.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::storage::{valid_name, Storage, VolumeRef};
use crate::store;
use crate::vm_types::{Boot, NicSpec, VmSpec};

/// Smallest guest the VMM builds; the largest we accept (1 TiB).
pub const MIN_MEMORY_MIB: u64 = 16;
pub const MAX_MEMORY_MIB: u64 = 1 << 20;
const MAX_CMDLINE: usize = 2048;
const MAX_TAGS: usize = 32;

/// What the agent stores for a VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDef {
    pub uuid: String,
    /// Seconds since the epoch.
    pub created: u64,
    pub spec: VmSpec,
}

/// Where a VM's kernel or initrd comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootFile {
    Path(PathBuf),
    Volume(VolumeRef),
}

impl BootFile {
    /// An absolute path on the node, or `POOL/VOLUME`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with('/') {
            let p = Path::new(s);
            if p.components().any(|c| c == std::path::Component::ParentDir) {
                return Err(format!("'{s}': '..' is not allowed in a path"));
            }
            return Ok(BootFile::Path(p.to_path_buf()));
        }
        s.parse::<VolumeRef>()
            .map(BootFile::Volume)
            .map_err(|e| format!("{e}, or an absolute path"))
    }

    /// The file on the node; it must exist.
    pub fn locate(&self, storage: &Storage) -> Result<PathBuf, String> {
        match self {
            BootFile::Path(p) if p.is_file() => Ok(p.clone()),
            BootFile::Path(p) => Err(format!("no file {}", p.display())),
            BootFile::Volume(v) => storage.resolve(v).map(|r| r.path).map_err(|e| e.1),
        }
    }
}

/// Checks everything a definition says that does not depend on other VMs.
/// Fills in what is chosen once (NIC MACs). Errors say which field is wrong.
pub fn validate(spec: &mut VmSpec, storage: &Storage) -> Result<(), String> {
    if !valid_name(&spec.name) {
        return Err(format!(
            "name '{}': use 1-64 letters, digits, '.', '_', '-' (not starting with '.')",
            spec.name
        ));
    }
    if !(1..=254).contains(&spec.vcpus) {
        return Err(format!("vcpus {}: must be 1-254", spec.vcpus));
    }
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&spec.memory_mib) {
        return Err(format!(
            "memory_mib {}: must be {MIN_MEMORY_MIB}-{MAX_MEMORY_MIB}",
            spec.memory_mib
        ));
    }
    validate_disks(spec, storage)?;
    validate_boot(&spec.boot, spec.disks.len(), storage)?;
    for (i, nic) in spec.nics.iter_mut().enumerate() {
        validate_nic(nic, i).map_err(|e| format!("nics[{i}]: {e}"))?;
    }
    validate_limits(&spec.limits)?;
    validate_tags(spec)
}

/// A zero limit would stop the VM outright: refused, not applied.
fn validate_limits(l: &crate::vm_types::VmLimits) -> Result<(), String> {
    let fields = [
        ("cpu_percent", l.cpu_percent.map(u64::from)),
        ("memory_max_mib", l.memory_max_mib),
        ("read_bps", l.read_bps),
        ("write_bps", l.write_bps),
        ("read_iops", l.read_iops),
        ("write_iops", l.write_iops),
    ];
    match fields.iter().find(|(_, v)| *v == Some(0)) {
        Some((name, _)) => Err(format!("limits.{name}: must be at least 1")),
        None => Ok(()),
    }
}

fn validate_disks(spec: &VmSpec, storage: &Storage) -> Result<(), String> {
    let mut seen = HashSet::new();
    for (i, d) in spec.disks.iter().enumerate() {
        let v: VolumeRef = d.volume.parse().map_err(|e| format!("disks[{i}]: {e}"))?;
        storage
            .resolve(&v)
            .map_err(|e| format!("disks[{i}]: {}", e.1))?;
        if !seen.insert(v) {
            return Err(format!("disks[{i}]: volume '{}' is listed twice", d.volume));
        }
    }
    Ok(())
}

fn validate_boot(boot: &Boot, disks: usize, storage: &Storage) -> Result<(), String> {
    let cmdline = match boot {
        Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            let kernel = BootFile::parse(kernel).map_err(|e| format!("boot.kernel: {e}"))?;
            kernel
                .locate(storage)
                .map_err(|e| format!("boot.kernel: {e}"))?;
            if let Some(initrd) = initrd {
                let initrd = BootFile::parse(initrd).map_err(|e| format!("boot.initrd: {e}"))?;
                initrd
                    .locate(storage)
                    .map_err(|e| format!("boot.initrd: {e}"))?;
            }
            cmdline
        }
        Boot::Disk { disk, cmdline } => {
            if *disk >= disks {
                return Err(format!(
                    "boot.disk {disk}: the VM has {disks} disk(s); boot from disk needs one"
                ));
            }
            cmdline
        }
    };
    match cmdline {
        Some(c) if c.len() > MAX_CMDLINE => Err(format!(
            "boot.cmdline: {} bytes, at most {MAX_CMDLINE}",
            c.len()
        )),
        Some(c) if c.chars().any(|ch| ch.is_control()) => {
            Err("boot.cmdline: control characters (newline, NUL, ...) are not allowed".into())
        }
        _ => Ok(()),
    }
}

fn validate_nic(nic: &mut NicSpec, index: usize) -> Result<(), String> {
    let name = match (&nic.tap, &nic.macvtap, &nic.network) {
        (Some(t), None, None) => t,
        (None, Some(m), None) => m,
        // The agent names the port and derives the MAC when the VM starts.
        (None, None, Some(_)) => return nic.mac.as_deref().map_or(Ok(()), check_mac),
        _ => return Err("give exactly one of network, tap or macvtap".into()),
    };
    let iface_ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !iface_ok {
        return Err(format!(
            "interface '{name}': 1-15 letters, digits, '.', '_', '-'"
        ));
    }
    if let Some(mtu) = nic.mtu {
        if mtu < 68 {
            return Err(format!("mtu {mtu}: must be 68-65535"));
        }
    }
    match &nic.mac {
        Some(mac) => check_mac(mac),
        None => {
            nic.mac = Some(random_mac(index));
            Ok(())
        }
    }
}

fn check_mac(mac: &str) -> Result<(), String> {
    let bytes: Vec<Option<u8>> = mac
        .split(':')
        .map(|p| match p.len() {
            2 => u8::from_str_radix(p, 16).ok(),
            _ => None,
        })
        .collect();
    if bytes.len() != 6 || bytes.iter().any(Option::is_none) {
        return Err(format!("mac '{mac}': use six hex pairs, 02:00:00:00:00:01"));
    }
    if bytes[0].is_some_and(|b| b & 1 == 1) {
        return Err(format!(
            "mac '{mac}': a multicast address cannot be a NIC's"
        ));
    }
    Ok(())
}

/// A locally administered unicast MAC, random but for the NIC's index.
fn random_mac(index: usize) -> String {
    let r = uuid::Uuid::new_v4().into_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        r[0],
        r[1],
        r[2],
        r[3],
        r[4].wrapping_add(index as u8)
    )
}

fn validate_tags(spec: &VmSpec) -> Result<(), String> {
    if spec.tags.len() > MAX_TAGS {
        return Err(format!("tags: at most {MAX_TAGS}"));
    }
    for (k, v) in &spec.tags {
        if !valid_name(k) {
            return Err(format!("tags: key '{k}': letters, digits, '.', '_', '-'"));
        }
        if v.len() > 256 || v.chars().any(|c| c.is_control()) {
            return Err(format!(
                "tags.{k}: at most 256 bytes, no control characters"
            ));
        }
    }
    Ok(())
}

/// The volumes a definition uses, with whether it writes them.
pub fn volumes(spec: &VmSpec) -> Vec<(VolumeRef, bool)> {
    let mut out: Vec<(VolumeRef, bool)> = spec
        .disks
        .iter()
        .filter_map(|d| Some((d.volume.parse().ok()?, !d.readonly)))
        .collect();
    if let Boot::Kernel { kernel, initrd, .. } = &spec.boot {
        for f in std::iter::once(kernel).chain(initrd) {
            if let Ok(BootFile::Volume(v)) = BootFile::parse(f) {
                out.push((v, false));
            }
        }
    }
    out
}

/// `STATE/vms`.
pub fn dir(state: &Path) -> PathBuf {
    state.join("vms")
}

pub fn save(state: &Path, def: &VmDef) -> std::io::Result<()> {
    store::write_json(&dir(state).join(format!("{}.json", def.uuid)), def)
}

/// Removes a VM's definition; one already gone counts as removed.
pub fn remove(state: &Path, uuid: &str) -> std::io::Result<()> {
    match std::fs::remove_file(dir(state).join(format!("{uuid}.json"))) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::File::open(dir(state))?.sync_all()
}

/// Every stored definition. A file that does not parse is reported and
/// left alone: one bad file must not keep the node's other VMs away.
pub fn load_all(state: &Path) -> std::io::Result<Vec<VmDef>> {
    let dir = dir(state);
    std::fs::create_dir_all(&dir)?;
    let mut defs = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match store::read_json::<VmDef>(&path) {
            Ok(Some(def)) => defs.push(def),
            Ok(None) => {}
            Err(e) => eprintln!("vireo-agent: skipping VM definition {e}"),
        }
    }
    defs.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    Ok(defs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_files_are_paths_or_volumes() {
        assert_eq!(
            BootFile::parse("/usr/lib/vireo/probe.elf"),
            Ok(BootFile::Path("/usr/lib/vireo/probe.elf".into()))
        );
        assert!(matches!(
            BootFile::parse("local/vmlinuz"),
            Ok(BootFile::Volume(_))
        ));
        assert!(BootFile::parse("/boot/../etc/shadow").is_err());
        assert!(BootFile::parse("vmlinuz").is_err());
    }

    #[test]
    fn macs() {
        assert!(check_mac("02:00:00:00:00:01").is_ok());
        assert!(check_mac("03:00:00:00:00:01").is_err());
        assert!(check_mac("02:00:00:00:00").is_err());
        assert!(check_mac("02:00:00:00:00:0g").is_err());
        let m = random_mac(0);
        assert!(check_mac(&m).is_ok(), "{m}");
    }
}
