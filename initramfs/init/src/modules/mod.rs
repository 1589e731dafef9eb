//! Kernel modules: coldplug from sysfs modaliases and loading by name.
//!
//! The image ships a subset of Debian's modules with modules.dep and
//! modules.alias regenerated for that subset (build-initramfs.sh), so
//! whatever the tables name is on disk. Loading is finit_module(2).

pub mod alias;
pub mod dep;
mod options;

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::log;
use alias::AliasTable;
use dep::DepTable;

/// `kvm-amd` and `kvm_amd` name the same module; the kernel uses `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The text of the module tables a Loader is built from.
struct Tables {
    alias: String,
    dep: String,
    softdep: String,
    builtin: String,
}

/// The module tables and what this boot has loaded so far. Shared by the
/// main thread (coldplug), the network thread and the power-button watcher.
pub struct Loader {
    dir: PathBuf,
    aliases: AliasTable,
    deps: DepTable,
    builtin: HashSet<String>,
    softdeps: HashMap<String, Vec<String>>,
    /// Module parameters from the kernel command line, by module name.
    options: HashMap<String, String>,
    quiet: bool,
    loaded: Mutex<HashSet<String>>,
}

impl Loader {
    /// Reads the tables from /lib/modules/`uname -r`. A missing file gives an
    /// empty table, so a kernel with everything built in still boots.
    /// `quiet` (modprobe mode) logs nothing.
    pub fn open(quiet: bool) -> Loader {
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let dir = Path::new("/lib/modules").join(release.trim());
        let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
        let tables = Tables {
            alias: read("modules.alias"),
            dep: read("modules.dep"),
            softdep: read("modules.softdep"),
            builtin: read("modules.builtin"),
        };
        let mut loader = Loader::from_tables(dir, &tables, quiet);
        loader.options = options::parse(&fs::read_to_string("/proc/cmdline").unwrap_or_default());
        loader
    }

    fn from_tables(dir: PathBuf, t: &Tables, quiet: bool) -> Loader {
        let loader = Loader {
            aliases: AliasTable::parse(&t.alias),
            deps: DepTable::parse(&t.dep),
            softdeps: dep::parse_softdeps(&t.softdep),
            options: HashMap::new(),
            builtin: t.builtin.lines().map(dep::module_name).collect(),
            quiet,
            loaded: Mutex::new(HashSet::new()),
            dir,
        };
        if !quiet {
            log!(
                "modules: {} in {} ({} aliases)",
                loader.deps.len(),
                loader.dir.display(),
                loader.aliases.len()
            );
        }
        loader
    }

    /// Makes the device nodes of modules.devname (`tun net/tun c10:200`)
    /// that do not exist yet, as `kmod static-nodes` does for systemd:
    /// opening one makes the kernel load its module (request_module of
    /// `char-major-10-200`, which runs us as modprobe). Without it
    /// /dev/net/tun is missing until something loads tun, and the agent
    /// cannot make a VM's tap. Returns how many it made.
    pub fn make_static_nodes(&self) -> usize {
        let text = fs::read_to_string(self.dir.join("modules.devname")).unwrap_or_default();
        let mut made = 0;
        for node in parse_devname(&text) {
            let path = Path::new("/dev").join(&node.path);
            if path.exists() {
                continue;
            }
            if let Some(parent) = path.parent() {
                let _ = fs::create_dir_all(parent);
            }
            let kind = if node.char_device {
                nix::sys::stat::SFlag::S_IFCHR
            } else {
                nix::sys::stat::SFlag::S_IFBLK
            };
            let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
            let dev = nix::sys::stat::makedev(node.major, node.minor);
            match nix::sys::stat::mknod(&path, kind, mode, dev) {
                Ok(()) => made += 1,
                Err(e) => log!("modules: {}: {e}", path.display()),
            }
        }
        made
    }

    /// Loads `name` (a module name or an alias such as `crypto-crc32c` or
    /// `fs-ext4`) with its dependencies. Built-in or already loaded is Ok.
    pub fn load(&self, name: &str) -> Result<(), String> {
        let modules = self.resolve(name);
        if modules.is_empty() {
            return Err(format!("no module or alias {name}"));
        }
        // An alias may name several modules (crc32c_intel, crc32c_generic);
        // one that loads is enough.
        let mut last_err = String::new();
        for m in &modules {
            match self.load_module(m, 0) {
                Ok(()) => return Ok(()),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    /// Module names for `name`: itself if it is one, else its alias matches.
    fn resolve(&self, name: &str) -> Vec<String> {
        let n = normalize(name);
        if self.builtin.contains(&n) || self.deps.load_order(&n).is_ok() {
            return vec![n];
        }
        self.aliases
            .lookup(name)
            .into_iter()
            .map(String::from)
            .collect()
    }

    fn load_module(&self, name: &str, depth: u32) -> Result<(), String> {
        if self.builtin.contains(name) || self.is_loaded(name) {
            return Ok(());
        }
        for path in self.deps.load_order(name)? {
            let module = dep::module_name(path);
            if self.is_loaded(&module) {
                continue;
            }
            self.load_softdeps(&module, depth);
            let params = self.options.get(&module).map_or("", String::as_str);
            insert(&self.dir.join(path), params).map_err(|e| format!("{module}: {e}"))?;
            if !params.is_empty() && !self.quiet {
                log!("modules: {module} loaded with {params}");
            }
            self.loaded.lock().unwrap().insert(module);
        }
        Ok(())
    }

    /// Best effort: a missing soft dependency is the module's problem to
    /// report, and the depth bound stops a cyclic softdep file.
    fn load_softdeps(&self, module: &str, depth: u32) {
        let Some(pre) = self.softdeps.get(module).filter(|_| depth < 4) else {
            return;
        };
        for name in pre {
            for m in self.resolve(name) {
                if self.load_module(&m, depth + 1).is_ok() {
                    break;
                }
            }
        }
    }

    /// Like `load`, logging instead of returning the error: for callers to
    /// whom a missing module is a degraded feature, not a failure.
    pub fn load_logged(&self, name: &str) -> bool {
        match self.load(name) {
            Ok(()) => true,
            Err(e) => {
                if !self.quiet {
                    log!("modules: cannot load {name}: {e}");
                }
                false
            }
        }
    }

    fn is_loaded(&self, name: &str) -> bool {
        self.loaded.lock().unwrap().contains(name)
    }

    /// One coldplug pass: every modalias under /sys/devices that names a
    /// module not yet loaded. Returns how many modules it loaded.
    pub fn coldplug_pass(&self) -> usize {
        let mut wanted: Vec<String> = Vec::new();
        for modalias in read_modaliases(Path::new("/sys/devices")) {
            for m in self.aliases.lookup(&modalias) {
                if !wanted.iter().any(|w| w == m) && !self.is_loaded(m) {
                    wanted.push(m.to_string());
                }
            }
        }
        let mut count = 0;
        for m in &wanted {
            match self.load(m) {
                Ok(()) => count += 1,
                // Expected for e.g. kvm_intel's sibling on the other vendor.
                Err(e) => log!("coldplug: {e}"),
            }
        }
        count
    }

    /// Repeats passes while they load something: a loaded driver creates
    /// devices (ahci → SCSI disks → sd_mod; button → input → evdev).
    pub fn coldplug(&self) {
        for pass in 1..=4 {
            let n = self.coldplug_pass();
            log!("coldplug pass {pass}: {n} modules loaded");
            if n == 0 {
                break;
            }
            // Let asynchronous probes (SCSI scan, PCI) register their devices.
            thread::sleep(Duration::from_millis(150));
        }
        let mut loaded: Vec<_> = self.loaded.lock().unwrap().iter().cloned().collect();
        loaded.sort();
        log!("modules loaded: {}", loaded.join(" "));
    }
}

/// `modprobe [-q] [--] NAME...`: what the kernel runs for request_module()
/// (/proc/sys/kernel/modprobe → /sbin/modprobe → vireo-init). Options are
/// accepted and ignored; the exit status says whether every name loaded.
pub fn modprobe_main(args: &[String]) -> i32 {
    let loader = Loader::open(true);
    let names = args.iter().filter(|a| !a.starts_with('-'));
    let failed = names.filter(|n| loader.load(n).is_err()).count();
    i32::from(failed > 0)
}

/// Every `modalias` file's content below `root`, without following symlinks
/// (sysfs is full of them and they loop).
fn read_modaliases(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() && entry.file_name() == "modalias" {
                if let Ok(s) = fs::read_to_string(entry.path()) {
                    let s = s.trim();
                    if !s.is_empty() {
                        out.push(s.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Tells finit_module the file is compressed and the kernel should inflate
/// it (Linux ≥ 6.x with CONFIG_MODULE_DECOMPRESS, as Debian 13 ships .ko.xz).
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// finit_module(2) on one file with its parameters; EEXIST (already there)
/// counts as success.
fn insert(path: &Path, params: &str) -> Result<(), String> {
    let file = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.to_string_lossy();
    let flags = if name.ends_with(".ko") {
        0
    } else {
        MODULE_INIT_COMPRESSED_FILE
    };
    // The command line holds no NUL, so this only fails on a forged table.
    let params = CString::new(params).map_err(|_| format!("NUL in the parameters of {name}"))?;
    // SAFETY: plain syscall with a valid fd and a NUL-terminated string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    match std::io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        e => Err(e.to_string()),
    }
}

/// A line of modules.devname: the node under /dev and its numbers.
#[derive(Debug, PartialEq, Eq)]
struct StaticNode {
    path: String,
    char_device: bool,
    major: u64,
    minor: u64,
}

/// `MODULE DEVNAME cMAJOR:MINOR` (or `b` for a block device) lines;
/// comments and malformed lines are skipped, and so is a name that would
/// leave /dev.
fn parse_devname(text: &str) -> Vec<StaticNode> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (_module, path, numbers) = (words.next()?, words.next()?, words.next()?);
            let char_device = match numbers.chars().next()? {
                'c' => true,
                'b' => false,
                _ => return None,
            };
            let (major, minor) = numbers[1..].split_once(':')?;
            if path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
                return None;
            }
            Some(StaticNode {
                path: path.to_string(),
                char_device,
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devname_lines_become_nodes_and_bad_ones_are_skipped() {
        let text = "# Device nodes to trigger on-demand module loading.\n\
            tun net/tun c10:200\n\
            loop loop-control c10:237\n\
            nbd nbd0 b43:0\n\
            evil ../etc/passwd c1:3\n\
            odd x q1:2\n\
            short\n";
        let nodes = parse_devname(text);
        let paths: Vec<(&str, bool, u64, u64)> = nodes
            .iter()
            .map(|n| (n.path.as_str(), n.char_device, n.major, n.minor))
            .collect();
        assert_eq!(
            paths,
            [
                ("net/tun", true, 10, 200),
                ("loop-control", true, 10, 237),
                ("nbd0", false, 43, 0)
            ]
        );
    }

    fn loader() -> Loader {
        let tables = Tables {
            alias: "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\nalias fs-ext4 ext4\n".into(),
            dep: "kernel/arch/x86/crypto/crc32c-intel.ko:\nkernel/crypto/crc32c_generic.ko:\nkernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\nkernel/fs/jbd2/jbd2.ko:\n".into(),
            softdep: "softdep ext4 pre: crypto-crc32c\n".into(),
            builtin: "kernel/drivers/net/tun.ko\n".into(),
        };
        Loader::from_tables(PathBuf::from("/nonexistent"), &tables, true)
    }

    #[test]
    fn resolves_names_and_aliases() {
        let l = loader();
        assert_eq!(l.resolve("ext4"), vec!["ext4"]);
        assert_eq!(l.resolve("fs-ext4"), vec!["ext4"]);
        assert_eq!(
            l.resolve("crypto-crc32c"),
            vec!["crc32c_intel", "crc32c_generic"]
        );
        assert_eq!(l.resolve("crc32c-intel"), vec!["crc32c_intel"]);
        assert_eq!(l.resolve("tun"), vec!["tun"], "built in");
        assert!(l.resolve("nothing").is_empty());
    }

    #[test]
    fn builtin_needs_no_file_and_missing_files_fail() {
        let l = loader();
        assert!(l.load("tun").is_ok());
        assert!(l.load("nothing").unwrap_err().contains("no module"));
        // The tables name it but the file is not there: the error says which.
        assert!(l.load("ext4").unwrap_err().contains("/nonexistent"));
    }
}
