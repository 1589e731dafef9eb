//! The VM's cgroup: cgroup v2 (cpu.max, memory.max, io.max), or on a host
//! that only has v1 controllers (some containers) the same limits through
//! the v1 files, so the jail works and is tested there too.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::{JailError, JailSpec};

const ROOT: &str = "/sys/fs/cgroup";

/// The VM's group(s): one directory on v2, one per controller on v1.
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    v2: bool,
}

fn write(path: &Path, value: &str) -> Result<(), JailError> {
    fs::write(path, value)
        .map_err(|e| JailError::io(format!("write {value:?} to {}", path.display()), e))
}

fn mkdir(path: &Path) -> Result<(), JailError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(JailError::io(format!("create {}", path.display()), e)),
    }
}

/// The v2 hierarchy, if this host has one with the controllers we need.
fn v2_root() -> Option<PathBuf> {
    [ROOT, "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|r| {
            fs::read_to_string(r.join("cgroup.controllers"))
                .map(|c| c.split_whitespace().any(|w| w == "memory"))
                .unwrap_or(false)
        })
}

impl Cgroup {
    /// Makes the VM's group with the spec's limits.
    pub fn create(spec: &JailSpec) -> Result<Self, JailError> {
        match v2_root() {
            Some(root) => Self::create_v2(&root, spec),
            None => Self::create_v1(spec),
        }
    }

    fn create_v2(root: &Path, spec: &JailSpec) -> Result<Self, JailError> {
        let parent = root.join(&spec.cgroup_parent);
        mkdir(&parent)?;
        // Each level hands the controllers down to the next.
        let wanted = "+cpu +memory +io";
        for dir in [root, parent.as_path()] {
            let _ = fs::write(dir.join("cgroup.subtree_control"), wanted);
        }
        let dir = parent.join(&spec.id);
        mkdir(&dir)?;
        if let Some(cpu) = &spec.cpu_max {
            write(&dir.join("cpu.max"), cpu)?;
        }
        if let Some(mem) = spec.memory_max {
            write(&dir.join("memory.max"), &mem.to_string())?;
            // Guest RAM must not escape the limit into swap; kill the group whole.
            let _ = fs::write(dir.join("memory.swap.max"), "0");
            let _ = fs::write(dir.join("memory.oom.group"), "1");
        }
        for line in &spec.io_max {
            write(&dir.join("io.max"), line)?;
        }
        Ok(Cgroup {
            dirs: vec![dir],
            v2: true,
        })
    }

    fn create_v1(spec: &JailSpec) -> Result<Self, JailError> {
        let group = |controller: &str| -> Result<PathBuf, JailError> {
            let parent = Path::new(ROOT).join(controller).join(&spec.cgroup_parent);
            mkdir(&parent)?;
            let dir = parent.join(&spec.id);
            mkdir(&dir)?;
            Ok(dir)
        };
        let mut dirs = Vec::new();
        let memory = group("memory")?;
        if let Some(mem) = spec.memory_max {
            write(&memory.join("memory.limit_in_bytes"), &mem.to_string())?;
            let _ = fs::write(memory.join("memory.swappiness"), "0");
        }
        dirs.push(memory);
        let cpu = group("cpu")?;
        if let Some(cpu_max) = &spec.cpu_max {
            let (quota, period) = parse_cpu_max(cpu_max)?;
            write(&cpu.join("cpu.cfs_period_us"), &period.to_string())?;
            write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        dirs.push(cpu);
        let blkio = group("blkio")?;
        for line in &spec.io_max {
            for (file, value) in io_max_v1(line)? {
                write(&blkio.join(file), &value)?;
            }
        }
        dirs.push(blkio);
        Ok(Cgroup { dirs, v2: false })
    }

    /// The v2 group's directory, for `clone3(CLONE_INTO_CGROUP)`.
    pub fn v2_dir(&self) -> Result<Option<OwnedFd>, JailError> {
        if !self.v2 {
            return Ok(None);
        }
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&self.dirs[0])
            .map_err(|e| JailError::io(format!("open {}", self.dirs[0].display()), e))?;
        Ok(Some(dir.into()))
    }

    /// Moves the calling process, single-threaded, into the group(s). On v1
    /// it writes "0" (itself) to `tasks`: a thread moving itself is the one
    /// migration the kernel makes without the global lock whose RCU grace
    /// period costs milliseconds (clone.rs); being single-threaded, the
    /// thread is the whole process. v2 has no such file, so `cgroup.procs`
    /// (the fallback when `clone3` could not place the child).
    pub fn enter(&self) -> Result<(), JailError> {
        let file = if self.v2 { "cgroup.procs" } else { "tasks" };
        for dir in &self.dirs {
            write(&dir.join(file), "0")?;
        }
        Ok(())
    }

    /// How many times the memory limit's OOM killer fired in the group.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        let text = fs::read_to_string(self.dirs[0].join(file)).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Removes the group(s); they must be empty (the VMM has exited).
    pub fn remove(&self) {
        for dir in &self.dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// cpu.max's "QUOTA PERIOD" ("max" = no quota) as v1's quota (-1 = none).
fn parse_cpu_max(value: &str) -> Result<(i64, u64), JailError> {
    let bad = || JailError::Invalid(format!("cpu.max '{value}': expected 'QUOTA PERIOD'"));
    let mut words = value.split_whitespace();
    let quota = match words.next().ok_or_else(bad)? {
        "max" => -1,
        q => q.parse().map_err(|_| bad())?,
    };
    let period = match words.next() {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => 100_000,
    };
    Ok((quota, period))
}

/// An io.max line as v1 blkio throttle files and their values.
fn io_max_v1(line: &str) -> Result<Vec<(&'static str, String)>, JailError> {
    let mut words = line.split_whitespace();
    let dev = words.next().filter(|d| d.contains(':')).ok_or_else(|| {
        JailError::Invalid(format!("io.max '{line}': expected 'MAJ:MIN KEY=N...'"))
    })?;
    let mut out = Vec::new();
    for word in words {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| JailError::Invalid(format!("io.max '{line}': '{word}'")))?;
        let file = match key {
            "rbps" => "blkio.throttle.read_bps_device",
            "wbps" => "blkio.throttle.write_bps_device",
            "riops" => "blkio.throttle.read_iops_device",
            "wiops" => "blkio.throttle.write_iops_device",
            _ => return Err(JailError::Invalid(format!("io.max key '{key}'"))),
        };
        let value = if value == "max" { "0" } else { value };
        out.push((file, format!("{dev} {value}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_limits_translate_to_v1() {
        assert_eq!(parse_cpu_max("50000 100000").unwrap(), (50_000, 100_000));
        assert_eq!(parse_cpu_max("max").unwrap(), (-1, 100_000));
        assert!(parse_cpu_max("lots").is_err());
        assert_eq!(
            io_max_v1("8:0 rbps=1048576 wiops=max").unwrap(),
            [
                ("blkio.throttle.read_bps_device", "8:0 1048576".to_string()),
                ("blkio.throttle.write_iops_device", "8:0 0".to_string()),
            ]
        );
        assert!(io_max_v1("8:0 speed=3").is_err());
    }
}
