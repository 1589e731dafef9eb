//! The node's facts, read from /proc and /sys. The parsers take the files'
//! text, so they are tested on fixed samples; `collect` does the reading.

use std::fs;
use std::path::Path;

use crate::types::{Kvm, KvmKind, Load, NodeInfo};

/// Reads everything GET /node reports. Missing files give zeros rather than
/// an error: a partial answer is more useful to an operator than none.
pub fn collect() -> NodeInfo {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    NodeInfo {
        name: read("/proc/sys/kernel/hostname").trim().to_string(),
        arch: std::env::consts::ARCH.to_string(),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cpus: count_cpus(&read("/sys/devices/system/cpu/online"))
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32)),
        memory_bytes: mem_total(&read("/proc/meminfo")).unwrap_or(0),
        uptime_s: uptime(&read("/proc/uptime")).unwrap_or(0.0),
        load: loadavg(&read("/proc/loadavg")).unwrap_or(Load {
            m1: 0.0,
            m5: 0.0,
            m15: 0.0,
        }),
        kvm: {
            let available = Path::new("/dev/kvm").exists();
            Kvm {
                available,
                kind: kvm_kind(std::env::consts::ARCH, available, |m| {
                    Path::new("/sys/module").join(m).exists()
                }),
            }
        },
    }
}

/// "0-3,6,8-9" (a sysfs CPU list) → 7.
pub fn count_cpus(list: &str) -> Option<u32> {
    let list = list.trim();
    if list.is_empty() {
        return None;
    }
    let mut n = 0;
    for part in list.split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u32>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => part.parse::<u32>().map(|_| 1).ok()?,
        };
    }
    Some(n)
}

/// MemTotal from /proc/meminfo, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The first field of /proc/uptime.
pub fn uptime(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The first three fields of /proc/loadavg.
pub fn loadavg(text: &str) -> Option<Load> {
    let mut f = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some(Load {
        m1: f.next()??,
        m5: f.next()??,
        m15: f.next()??,
    })
}

/// Which KVM backs /dev/kvm. On x86_64 it is the vendor module that is
/// loaded (`loaded("kvm_amd")` → /sys/module/kvm_amd). arm64 has one KVM,
/// built into Debian's kernel, that creates /dev/kvm only when the CPU
/// entered the kernel at EL2 (the hypervisor level); so there /dev/kvm is
/// the whole answer.
pub fn kvm_kind(arch: &str, dev_kvm: bool, loaded: impl Fn(&str) -> bool) -> KvmKind {
    let vendor = [
        ("kvm_intel", KvmKind::KvmIntel),
        ("kvm_amd", KvmKind::KvmAmd),
        ("kvm_pvm", KvmKind::Pvm),
    ]
    .into_iter()
    .find(|(m, _)| loaded(m));
    match vendor {
        Some((_, kind)) => kind,
        None if arch == "aarch64" && dev_kvm => KvmKind::KvmArm64,
        None => KvmKind::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpus("0\n"), Some(1));
        assert_eq!(count_cpus("0-3"), Some(4));
        assert_eq!(count_cpus("0-3,6,8-9"), Some(7));
        assert_eq!(count_cpus(""), None);
        assert_eq!(count_cpus("3-1"), None);
        assert_eq!(count_cpus("x"), None);
    }

    #[test]
    fn proc_files() {
        let meminfo = "MemTotal:        1012836 kB\nMemFree:          912340 kB\n";
        assert_eq!(mem_total(meminfo), Some(1012836 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB"), None);
        assert_eq!(uptime("12.34 20.00\n"), Some(12.34));
        let load = loadavg("0.50 0.25 0.10 1/80 123\n").unwrap();
        assert_eq!((load.m1, load.m5, load.m15), (0.5, 0.25, 0.1));
        assert!(loadavg("0.5 x").is_none());
    }

    #[test]
    fn kvm_kinds() {
        let x86 = |loaded: &'static str| kvm_kind("x86_64", true, move |m| m == loaded);
        assert_eq!(x86("kvm_amd"), KvmKind::KvmAmd);
        assert_eq!(x86("kvm_intel"), KvmKind::KvmIntel);
        assert_eq!(x86("kvm_pvm"), KvmKind::Pvm);
        assert_eq!(x86("nothing"), KvmKind::None);
        // arm64: built in, so no module to see; /dev/kvm decides.
        assert_eq!(kvm_kind("aarch64", true, |_| false), KvmKind::KvmArm64);
        assert_eq!(kvm_kind("aarch64", false, |_| false), KvmKind::None);
        // /dev/kvm alone says nothing on x86_64 (no vendor module: none).
        assert_eq!(kvm_kind("x86_64", true, |_| false), KvmKind::None);
    }

    #[test]
    fn collect_reads_this_machine() {
        let info = collect();
        assert!(!info.name.is_empty() && !info.kernel.is_empty());
        assert!(info.cpus >= 1 && info.memory_bytes > 0 && info.uptime_s > 0.0);
        assert_eq!(info.arch, std::env::consts::ARCH);
    }
}
