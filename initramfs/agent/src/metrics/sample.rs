//! Raw counters read from /proc and /sys, for the node and for one VMM
//! process. The parsers take the files' text so they are tested on fixed
//! samples; `node_counters` and `vm_counters` do the reading.

use std::fs;
use std::path::Path;

/// The node's cumulative counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NodeCounters {
    /// Jiffies not idle or waiting for I/O, and all jiffies, summed over CPUs.
    pub cpu_busy: u64,
    pub cpu_total: u64,
    pub mem_total: u64,
    pub mem_available: u64,
    pub disk_read: u64,
    pub disk_written: u64,
    pub net_rx: u64,
    pub net_tx: u64,
}

/// One VM's cumulative counters (its VMM process and its taps).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VmCounters {
    /// User and system clock ticks of the VMM process.
    pub cpu_ticks: u64,
    pub rss: u64,
    pub disk_read: u64,
    pub disk_written: u64,
    /// From the guest's side: what it received (the tap sent) and sent.
    pub net_rx: u64,
    pub net_tx: u64,
}

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

pub fn node_counters() -> NodeCounters {
    let (cpu_busy, cpu_total) = cpu_jiffies(&read("/proc/stat")).unwrap_or((0, 0));
    let meminfo = read("/proc/meminfo");
    let disks: Vec<String> = fs::read_dir("/sys/block")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| !n.starts_with("loop") && !n.starts_with("ram"))
                .collect()
        })
        .unwrap_or_default();
    let (disk_read, disk_written) = disk_bytes(&read("/proc/diskstats"), &disks);
    let physical = |name: &str| {
        Path::new("/sys/class/net")
            .join(name)
            .join("device")
            .exists()
    };
    let (net_rx, net_tx) = net_bytes(&read("/proc/net/dev"), physical);
    NodeCounters {
        cpu_busy,
        cpu_total,
        mem_total: meminfo_kib(&meminfo, "MemTotal:").unwrap_or(0) * 1024,
        mem_available: meminfo_kib(&meminfo, "MemAvailable:").unwrap_or(0) * 1024,
        disk_read,
        disk_written,
        net_rx,
        net_tx,
    }
}

/// The VMM `pid`'s counters, its taps' traffic added; None once it is gone.
pub fn vm_counters(pid: i32, taps: &[String]) -> Option<VmCounters> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = read(format!("/proc/{pid}/status"));
    let io = read(format!("/proc/{pid}/io"));
    let (mut net_rx, mut net_tx) = (0, 0);
    for tap in taps {
        let stat = |f: &str| {
            read(format!("/sys/class/net/{tap}/statistics/{f}"))
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
        };
        // The tap's transmit is the guest's receive.
        net_rx += stat("tx_bytes");
        net_tx += stat("rx_bytes");
    }
    Some(VmCounters {
        cpu_ticks: process_ticks(&stat)?,
        rss: meminfo_kib(&status, "VmRSS:").unwrap_or(0) * 1024,
        disk_read: io_field(&io, "read_bytes:").unwrap_or(0),
        disk_written: io_field(&io, "write_bytes:").unwrap_or(0),
        net_rx,
        net_tx,
    })
}

/// The first line of /proc/stat → (busy, total) jiffies.
pub fn cpu_jiffies(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// `Key:   123 kB` in /proc/meminfo or /proc/PID/status → 123.
pub fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// `key: N` in /proc/PID/io.
pub fn io_field(text: &str, key: &str) -> Option<u64> {
    meminfo_kib(text, key)
}

/// utime + stime from /proc/PID/stat (after the parenthesised command name,
/// which may hold spaces).
pub fn process_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Bytes read and written by the named whole disks (512-byte sectors).
pub fn disk_bytes(diskstats: &str, disks: &[String]) -> (u64, u64) {
    let (mut read, mut written) = (0, 0);
    for line in diskstats.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || !disks.iter().any(|d| d == f[2]) {
            continue;
        }
        read += f[5].parse::<u64>().unwrap_or(0) * 512;
        written += f[9].parse::<u64>().unwrap_or(0) * 512;
    }
    (read, written)
}

/// Bytes received and sent by the physical NICs in /proc/net/dev, or by
/// every interface but `lo` where none is physical (a VM, a container).
pub fn net_bytes(dev: &str, physical: impl Fn(&str) -> bool) -> (u64, u64) {
    let rows: Vec<(&str, u64, u64)> = dev
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            Some((name.trim(), *f.first()?, *f.get(8)?))
        })
        .filter(|(name, _, _)| *name != "lo")
        .collect();
    let any_physical = rows.iter().any(|(n, _, _)| physical(n));
    rows.iter()
        .filter(|(n, _, _)| !any_physical || physical(n))
        .fold((0, 0), |(r, t), (_, rx, tx)| (r + rx, t + tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_line() {
        let stat = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(cpu_jiffies(stat), Some((161, 981)));
        assert_eq!(cpu_jiffies("intr 1 2"), None);
    }

    #[test]
    fn memory_and_io() {
        let meminfo = "MemTotal:       16384 kB\nMemAvailable:    4096 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemTotal:"), Some(16384));
        assert_eq!(meminfo_kib(meminfo, "MemAvailable:"), Some(4096));
        assert_eq!(
            io_field("rchar: 9\nread_bytes: 4096\n", "read_bytes:"),
            Some(4096)
        );
    }

    #[test]
    fn process_stat_with_spaces_in_name() {
        let stat = "42 (vireo vmm) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(process_ticks(stat), Some(325));
        assert_eq!(process_ticks("garbage"), None);
    }

    #[test]
    fn disks_and_nics() {
        let diskstats = "   8       0 sda 10 0 100 0 20 0 200 0 0 0 0\n   8       1 sda1 10 0 100 0 20 0 200 0 0\n";
        assert_eq!(disk_bytes(diskstats, &["sda".into()]), (51200, 102400));
        let dev = "Inter-|\n face |bytes\n    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n  eth0: 1000 1 0 0 0 0 0 0 2000 1 0 0 0 0 0 0\n  tap0: 7 1 0 0 0 0 0 0 9 1 0 0 0 0 0 0\n";
        assert_eq!(net_bytes(dev, |n| n == "eth0"), (1000, 2000));
        assert_eq!(net_bytes(dev, |_| false), (1007, 2009));
    }
}
