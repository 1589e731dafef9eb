//! What a node publishes about itself: `/proc` and `statvfs` read into a
//! `NodeStats`. The CPU share needs two readings of `/proc/stat`, so the
//! sampler keeps the previous one.

use std::path::Path;

use crate::cluster_types::NodeStats;
use crate::node;

/// Busy and total jiffies of the `cpu` line of /proc/stat.
#[derive(Clone, Copy, Default)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

#[derive(Default)]
pub struct Sampler {
    last: Option<CpuTimes>,
}

impl Sampler {
    /// The node's statistics now; `vms` and `running` are the agent's counts.
    pub fn sample(&mut self, disk_of: &Path, vms: u32, running: u32) -> NodeStats {
        let info = node::collect();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let available = meminfo_kib(&meminfo, "MemAvailable:").unwrap_or(0) * 1024;
        let now = cpu_times(&std::fs::read_to_string("/proc/stat").unwrap_or_default());
        let cpu_percent = match (self.last, now) {
            (Some(a), Some(b)) if b.total > a.total => {
                100.0 * (b.busy.saturating_sub(a.busy)) as f64 / (b.total - a.total) as f64
            }
            _ => 0.0,
        };
        self.last = now;
        let (disk_total, disk_free) = disk_space(disk_of).unwrap_or((0, 0));
        NodeStats {
            uptime_s: info.uptime_s,
            load_1m: info.load.m1,
            cpus: info.cpus,
            cpu_percent: (cpu_percent * 10.0).round() / 10.0,
            memory_total: info.memory_bytes,
            memory_used: info.memory_bytes.saturating_sub(available),
            disk_total,
            disk_used: disk_total.saturating_sub(disk_free),
            vms,
            vms_running: running,
        }
    }
}

fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The first line of /proc/stat: user nice system idle iowait irq softirq
/// steal …; idle and iowait are not busy.
fn cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

/// Total and available bytes of the file system holding `path`.
fn disk_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs
    // the call fills; nothing is kept past the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_line_splits_busy_from_idle() {
        let t = cpu_times("cpu  10 0 5 80 5 0 0 0 0 0\ncpu0 1 2 3 4 5\n").unwrap();
        assert_eq!((t.busy, t.total), (15, 100));
        assert!(cpu_times("intr 1 2\n").is_none());
    }

    #[test]
    fn meminfo_available() {
        let m = "MemTotal: 100 kB\nMemAvailable:  40 kB\n";
        assert_eq!(meminfo_kib(m, "MemAvailable:"), Some(40));
    }
}
