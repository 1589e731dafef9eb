//! What a node publishes about itself: `/proc` and `statvfs` read into a
//! `NodeStats`. The CPU share needs two readings of `/proc/stat`, so the
//! sampler keeps the previous one.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

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
    vmms: CpuMeter,
}

/// The CPU time of processes (VMMs) between two readings, as cores used.
#[derive(Default)]
pub struct CpuMeter {
    last: HashMap<i32, (u64, Instant)>,
}

impl CpuMeter {
    /// Cores each of `pids` used since this meter's previous reading of it;
    /// a pid seen for the first time (or gone) has no figure yet.
    pub fn read(&mut self, pids: &[i32]) -> HashMap<i32, f64> {
        let ticks_per_s = crate::metrics::clock_ticks();
        let now = Instant::now();
        let mut used = HashMap::new();
        let mut next = HashMap::new();
        for &pid in pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let Some(ticks) = crate::metrics::sample::process_ticks(&stat) else {
                continue;
            };
            if let Some((before, at)) = self.last.get(&pid) {
                let seconds = now.duration_since(*at).as_secs_f64();
                if seconds > 0.0 {
                    let cores = ticks.saturating_sub(*before) as f64 / ticks_per_s / seconds;
                    used.insert(pid, cores);
                }
            }
            next.insert(pid, (ticks, now));
        }
        self.last = next;
        used
    }
}

impl Sampler {
    /// The node's statistics now; `vms` is the agent's count of VMs,
    /// `vmm_pids` the VMMs of those running.
    pub fn sample(&mut self, disk_of: &Path, vms: u32, vmm_pids: &[i32]) -> NodeStats {
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
        let vms_cpu: f64 = self.vmms.read(vmm_pids).values().sum();
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
            vms_running: vmm_pids.len() as u32,
            vms_cpu: (vms_cpu * 100.0).round() / 100.0,
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
    fn a_busy_process_counts_about_one_core_and_an_unknown_pid_none() {
        let mut meter = CpuMeter::default();
        let me = std::process::id() as i32;
        assert!(
            meter.read(&[me, -1]).is_empty(),
            "no figure on the first reading"
        );
        let until = Instant::now() + std::time::Duration::from_millis(300);
        let mut spins = 0u64;
        while Instant::now() < until {
            spins = std::hint::black_box(spins + 1);
        }
        let used = meter.read(&[me, -1]);
        assert!(!used.contains_key(&-1));
        // One thread spun the whole time (other tests' threads may add to it).
        assert!(used[&me] > 0.3, "{used:?}");
    }

    #[test]
    fn meminfo_available() {
        let m = "MemTotal: 100 kB\nMemAvailable:  40 kB\n";
        assert_eq!(meminfo_kib(m, "MemAvailable:"), Some(40));
    }
}
