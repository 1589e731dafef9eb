//! The jailed launch: every VMM through `vireo-jailer` (docs/security.md,
//! "Jailed VMs"), as a uid of its own, in its own mount and PID namespaces,
//! seeing only its kernel, disks and run files, in a cgroup with the VM's
//! limits. The agent opens the VM's taps and macvtaps and passes the
//! descriptors, since the VMM may not (no CAP_NET_ADMIN, no /dev/tapN).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;

use vireo_jailer::JailSpec;
use vireo_vmm::devices::virtio::net::tap::Tap;

use super::launcher::{spawn_detached, LaunchRequest, Launcher};

/// VM uids and gids are taken from [UID_BASE, UID_BASE + UID_COUNT): above
/// the ranges distributions and container runtimes hand out.
const UID_BASE: u32 = 1_000_000;
const UID_COUNT: u32 = 65_536;

/// Where a jailed VMM is confined and with what.
#[derive(Clone, Debug)]
pub struct JailSettings {
    pub jailer: PathBuf,
    /// Where jails are made (`BASE/UUID/root`).
    pub base: PathBuf,
}

/// `--jail`: whether VMMs run through the jailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum JailMode {
    /// Jailed when the agent is root and the jailer is there.
    Auto,
    /// Always jailed; the agent refuses to start if it cannot.
    On,
    /// Never (development: VMMs run as the agent's user).
    Off,
}

impl JailSettings {
    /// The settings `mode` asks for: None runs VMMs directly. `jailer`
    /// defaults to `vireo-jailer` beside the VMM; jails go in `RUN/jail`.
    pub fn choose(
        mode: JailMode,
        jailer: Option<PathBuf>,
        vmm: &Path,
        run: &Path,
    ) -> Result<Option<Self>, String> {
        if mode == JailMode::Off {
            return Ok(None);
        }
        let jailer = jailer.unwrap_or_else(|| vmm.with_file_name("vireo-jailer"));
        let Some(why_not) = why_not_jailed(&jailer) else {
            return Ok(Some(JailSettings {
                jailer,
                base: run.join("jail"),
            }));
        };
        match mode {
            JailMode::On => Err(format!("--jail on: {why_not}")),
            _ => {
                eprintln!("vireo-agent: VMMs run unjailed: {why_not}");
                Ok(None)
            }
        }
    }
}

/// What this host lacks to jail VMMs: root, the jailer, PID, user and
/// mount namespaces, a cgroup with the memory controller.
fn why_not_jailed(jailer: &Path) -> Option<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the agent does not run as root".into());
    }
    if !jailer.is_file() {
        return Some(format!("{} is missing", jailer.display()));
    }
    for ns in ["pid", "user", "mnt"] {
        if !Path::new("/proc/self/ns").join(ns).exists() {
            return Some(format!("the kernel has no {ns} namespaces"));
        }
    }
    // The jailer's cgroup: v2 (perhaps under `unified`), or v1's memory
    // controller on hosts without v2 memory.
    let v2_memory = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .any(|r| {
            std::fs::read_to_string(Path::new(r).join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|w| w == "memory"))
        });
    if !v2_memory && !Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        return Some("no cgroup hierarchy with the memory controller".into());
    }
    None
}

pub struct JailedLauncher {
    settings: JailSettings,
    /// Which VM got which uid in this agent's life.
    uids: Mutex<HashMap<String, u32>>,
}

impl JailedLauncher {
    pub fn new(settings: JailSettings) -> Self {
        Self {
            settings,
            uids: Mutex::default(),
        }
    }

    /// The VM's uid: the same one every start while the agent runs, its
    /// first choice from a hash of the uuid (so usually the same across
    /// agent restarts too), never one a running process has, so two VMs
    /// never share one (re-adopted VMMs are seen in /proc).
    fn uid_for(&self, id: &str) -> io::Result<u32> {
        let mut uids = self.uids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&uid) = uids.get(id) {
            return Ok(uid);
        }
        let busy = uids_in_use();
        let first = fnv1a(id) % UID_COUNT;
        let free = (0..UID_COUNT)
            .map(|k| UID_BASE + (first + k) % UID_COUNT)
            .find(|u| !busy.contains(u) && !uids.values().any(|v| v == u))
            .ok_or_else(|| io::Error::other("no free VM uid"))?;
        uids.insert(id.to_string(), free);
        Ok(free)
    }

    fn spec(&self, req: &LaunchRequest, uid: u32, args: Vec<String>, fds: &[RawFd]) -> JailSpec {
        let c = &req.confine;
        let mut spec = JailSpec::new(&c.id, uid, uid, &req.vmm);
        spec.base = self.settings.base.clone();
        spec.files = c.read_files.clone();
        spec.rw_files = c.write_files.clone();
        let (public, private) = migration_tls_files(&args);
        spec.files.extend(public);
        spec.private_files = private;
        spec.dirs = c.read_dirs.clone();
        spec.rw_dirs = std::iter::once(&c.vmm_dir)
            .chain(&c.staging_dirs)
            .cloned()
            .collect();
        spec.ro_paths = library_dirs(&req.vmm);
        spec.cpu_max = c.cpu_max.clone();
        spec.memory_max = c.memory_max;
        spec.io_max = c.io_max.clone();
        spec.keep_fds = fds.to_vec();
        spec.vmm_args = args;
        spec
    }
}

impl Launcher for JailedLauncher {
    fn launch(&self, req: &LaunchRequest) -> io::Result<Child> {
        let c = &req.confine;
        let uid = self.uid_for(&c.id)?;
        for dir in &c.staging_dirs {
            std::fs::create_dir_all(dir)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        }
        // What the VMM writes must be its own; the agent (root) keeps access.
        let owned = [&c.vmm_dir].into_iter().chain(&c.staging_dirs);
        for path in owned.chain(&c.write_files) {
            std::os::unix::fs::chown(path, Some(uid), Some(uid))
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        }
        let (args, taps) = pass_nics(&req.args)?;
        let fds: Vec<RawFd> = taps
            .iter()
            .map(|f| f.as_raw_fd())
            .chain(req.inherit.iter().copied())
            .collect();
        let spec = self.spec(req, uid, args, &fds);
        spec.validate().map_err(io::Error::other)?;
        record_staging(&spec, c)?;
        // The taps stay open here until the jailer has its copies.
        spawn_detached(spec.command(&self.settings.jailer), &req.log, &fds)
    }
}

/// The node's migration TLS files the VMM's `--tls-*` arguments name:
/// the certificate and the CA's (public, mode 0644: bound read-only) and
/// the key (the jailer gives the VM's uid a copy of its own). The jailer
/// rewrites the arguments to their places in the jail, for a VMM that
/// boots and one that awaits an incoming migration alike.
fn migration_tls_files(args: &[String]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut public, mut private) = (Vec::new(), Vec::new());
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--tls-cert" | "--tls-ca" => public.push(PathBuf::from(&pair[1])),
            "--tls-key" => private.push(PathBuf::from(&pair[1])),
            _ => {}
        }
    }
    (public, private)
}

/// Notes where the jail shows each staging directory, for a live backup.
fn record_staging(spec: &JailSpec, c: &super::launcher::Confinement) -> io::Result<()> {
    let staging: Vec<(PathBuf, PathBuf)> = vireo_jailer::rewrite::mappings(spec)
        .into_iter()
        .filter(|m| c.staging_dirs.contains(&m.host))
        .map(|m| (m.host, m.inside))
        .collect();
    let run_dir = c.vmm_dir.parent().unwrap_or(&c.vmm_dir);
    super::runtime::write_jail_staging(run_dir, &staging)
}

/// `--net tap=NAME` and `--net macvtap=NAME` become `--net fd=N` on a
/// descriptor the agent opened, with the MAC the VMM would have chosen
/// for the name (the guest keeps its address whichever way it runs).
fn pass_nics(args: &[String]) -> io::Result<(Vec<String>, Vec<File>)> {
    use vireo_vmm::config::NetBackendConfig;
    use vireo_vmm::devices::virtio::net::stable_local_mac;
    let mut out = Vec::with_capacity(args.len());
    let mut files = Vec::new();
    let mut index = 0;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        out.push(a.clone());
        if a != "--net" {
            continue;
        }
        let value = it.next().cloned().unwrap_or_default();
        let (backend, rest) = value.split_once(',').unwrap_or((&value, ""));
        let mut opts: Vec<String> = rest
            .split(',')
            .filter(|o| !o.is_empty())
            .map(String::from)
            .collect();
        let has_mac = opts.iter().any(|o| o.starts_with("mac="));
        let (file, mac) = match backend.split_once('=') {
            Some(("tap", name)) => {
                let mac = stable_local_mac(&NetBackendConfig::Tap(name.into()), index);
                (Tap::open_named_file(name), mac)
            }
            Some(("macvtap", name)) => (Tap::open_macvtap_file(name), link_mac(name)?),
            _ => {
                out.push(value);
                index += 1;
                continue;
            }
        };
        let file = file.map_err(|e| io::Error::new(e.kind(), format!("{backend}: {e}")))?;
        if !has_mac {
            let hex: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
            opts.insert(0, format!("mac={}", hex.join(":")));
        }
        opts.insert(0, format!("fd={}", file.as_raw_fd()));
        out.push(opts.join(","));
        files.push(file);
        index += 1;
    }
    Ok((out, files))
}

/// A macvtap passes up only frames for its own address.
fn link_mac(name: &str) -> io::Result<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))?;
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect();
    bytes
        .try_into()
        .map_err(|_| io::Error::other(format!("unreadable address of '{name}': {text}")))
}

/// The uids processes run as now (the owner of /proc/PID).
fn uids_in_use() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        e.file_name().to_str()?.parse::<u32>().ok()?;
        Some(e.metadata().ok()?.uid())
    })
    .collect()
}

fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A dynamically linked VMM (a development build; the appliance's is
/// static) needs the host's library directories, read-only.
fn library_dirs(vmm: &Path) -> Vec<PathBuf> {
    let mut head = vec![0u8; 4096];
    let n = File::open(vmm)
        .and_then(|mut f| io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    let head = &head[..n];
    let dynamic = [&b"ld-linux"[..], b"ld-musl"]
        .iter()
        .any(|needle| head.windows(needle.len()).any(|w| w == *needle));
    if !dynamic {
        return Vec::new();
    }
    // Where the loader and libc live (also behind merged-/usr symlinks).
    let dirs: &[&str] = if cfg!(target_arch = "x86_64") {
        &["/lib/x86_64-linux-gnu", "/lib64"]
    } else {
        &["/lib"]
    };
    dirs.iter()
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_nics_and_arguments_pass_unchanged() {
        let args: Vec<String> = ["--kernel", "/k", "--net", "fd=5,mac=02:00:00:00:00:01"]
            .map(String::from)
            .to_vec();
        let (out, files) = pass_nics(&args).unwrap();
        assert_eq!(out, args);
        assert!(files.is_empty());
    }

    #[test]
    fn the_tls_key_is_a_private_copy_and_the_certificates_are_bound() {
        let args: Vec<String> = [
            "--api-socket",
            "/run/vm/api.sock",
            "--tls-cert",
            "/c/tls/node.crt",
            "--tls-key",
            "/c/tls/node.key",
            "--tls-ca",
            "/c/tls/ca.crt",
        ]
        .map(String::from)
        .to_vec();
        let (public, private) = migration_tls_files(&args);
        let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(public, paths(&["/c/tls/node.crt", "/c/tls/ca.crt"]));
        assert_eq!(private, paths(&["/c/tls/node.key"]));
        assert_eq!(migration_tls_files(&args[..2]), (Vec::new(), Vec::new()));
    }

    #[test]
    fn uids_are_distinct_and_stable() {
        let l = JailedLauncher::new(JailSettings {
            jailer: "/x".into(),
            base: "/y".into(),
        });
        let a = l.uid_for("a").unwrap();
        let b = l.uid_for("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(l.uid_for("a").unwrap(), a);
        assert!((UID_BASE..UID_BASE + UID_COUNT).contains(&a));
    }
}
