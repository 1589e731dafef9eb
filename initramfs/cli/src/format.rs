//! Human-readable output.

use std::fmt::Write;

use vireo_agent::types::{NodeInfo, VmmSelftest};
use vireo_agent::vm_types::{Boot, VmInfo};

pub fn node_info(i: &NodeInfo) -> String {
    let kvm = match i.kvm.available {
        true => format!("{} (/dev/kvm available)", i.kvm.kind.as_str()),
        false => format!("{} (no /dev/kvm)", i.kvm.kind.as_str()),
    };
    let rows = [
        ("name", i.name.clone()),
        ("arch", i.arch.clone()),
        ("kernel", i.kernel.clone()),
        ("cpus", i.cpus.to_string()),
        ("memory", bytes(i.memory_bytes)),
        ("uptime", duration(i.uptime_s)),
        (
            "load",
            format!("{:.2} {:.2} {:.2}", i.load.m1, i.load.m5, i.load.m15),
        ),
        ("kvm", kvm),
    ];
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{:<8}{v}", format!("{k}:"));
    }
    out
}

/// The probe's serial report, the VMM's messages, then one verdict line.
pub fn selftest(r: &VmmSelftest) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "$ {}", r.command.join(" "));
    out.push_str(&r.serial);
    for line in r.stderr.lines() {
        let _ = writeln!(out, "vmm: {line}");
    }
    let how = match (r.timed_out, r.exit_status) {
        (true, _) => "stopped at the time limit".to_string(),
        (false, Some(code)) => format!("exit status {code}"),
        (false, None) => "killed by a signal".to_string(),
    };
    let verdict = if r.ok { "ok" } else { "FAILED" };
    let secs = r.duration_ms as f64 / 1000.0;
    let _ = writeln!(out, "selftest: {verdict} ({how}, {secs:.2} s)");
    out
}

/// `vireo vm list`: one line per VM.
pub fn vm_table(vms: &[VmInfo]) -> String {
    let width = vms
        .iter()
        .map(|v| v.spec.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:<13}  {:>5}  {:>9}  AUTOSTART\n",
        "NAME", "STATE", "VCPUS", "MEMORY"
    );
    for v in vms {
        let _ = writeln!(
            out,
            "{:<width$}  {:<13}  {:>5}  {:>9}  {}",
            v.spec.name,
            v.state.as_str(),
            v.spec.vcpus,
            bytes(v.spec.memory_mib << 20),
            if v.spec.autostart { "yes" } else { "no" }
        );
    }
    out
}

/// `vireo vm show`.
pub fn vm_details(v: &VmInfo) -> String {
    let s = &v.spec;
    let boot = match &s.boot {
        Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } => format!(
            "kernel {kernel}{}{}",
            initrd
                .as_ref()
                .map_or(String::new(), |i| format!(", initrd {i}")),
            cmdline
                .as_ref()
                .map_or(String::new(), |c| format!(", cmdline \"{c}\""))
        ),
        Boot::Disk { disk, cmdline } => format!(
            "from disk {disk}{}",
            cmdline
                .as_ref()
                .map_or(String::new(), |c| format!(", cmdline +\"{c}\""))
        ),
    };
    let mut rows = vec![
        ("name", s.name.clone()),
        ("uuid", v.uuid.clone()),
        ("state", v.state.as_str().to_string()),
        ("vcpus", s.vcpus.to_string()),
        ("memory", bytes(s.memory_mib << 20)),
        ("boot", boot),
        (
            "autostart",
            if s.autostart { "yes" } else { "no" }.to_string(),
        ),
    ];
    if let Some(pid) = v.pid {
        rows.push(("pid", pid.to_string()));
    }
    for (i, d) in s.disks.iter().enumerate() {
        let ro = if d.readonly { " (read-only)" } else { "" };
        rows.push((
            "disk",
            format!("vd{} {}{ro}", (b'a' + i as u8) as char, d.volume),
        ));
    }
    for n in &s.nics {
        let on = n
            .tap
            .as_ref()
            .map(|t| format!("tap {t}"))
            .or(n.macvtap.as_ref().map(|m| format!("macvtap {m}")));
        rows.push((
            "nic",
            format!(
                "{} {}",
                on.unwrap_or_default(),
                n.mac.clone().unwrap_or_default()
            ),
        ));
    }
    for (k, val) in &s.tags {
        rows.push(("tag", format!("{k}={val}")));
    }
    if let Some(e) = &v.last_exit {
        let why = e
            .message
            .as_ref()
            .map_or(String::new(), |m| format!(": {m}"));
        rows.push((
            "last exit",
            format!(
                "{}{}{why}",
                e.outcome,
                if e.requested { " (requested)" } else { "" }
            ),
        ));
    }
    let mut out = String::new();
    for (k, val) in rows {
        let _ = writeln!(out, "{:<11}{val}", format!("{k}:"));
    }
    out
}

/// 1073741824 → "1.0 GiB".
pub fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{n} B"),
        _ => format!("{v:.1} {}", units[u]),
    }
}

/// 3725.4 → "1h 2m 5s".
pub fn duration(secs: f64) -> String {
    let s = secs as u64;
    let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_agent::types::{Kvm, KvmKind, Load};

    #[test]
    fn units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1 << 30), "1.0 GiB");
        assert_eq!(bytes(1536 << 20), "1.5 GiB");
        assert_eq!(duration(5.9), "5s");
        assert_eq!(duration(3725.4), "1h 2m 5s");
        assert_eq!(duration(90061.0), "1d 1h 1m");
    }

    #[test]
    fn table() {
        let info = NodeInfo {
            name: "node1".into(),
            arch: "x86_64".into(),
            kernel: "6.1.0-56-amd64".into(),
            cpus: 2,
            memory_bytes: 1 << 30,
            uptime_s: 61.0,
            load: Load {
                m1: 0.5,
                m5: 0.25,
                m15: 0.0,
            },
            kvm: Kvm {
                available: true,
                kind: KvmKind::KvmAmd,
            },
        };
        let out = node_info(&info);
        assert!(out.starts_with("name:   node1\n"), "{out}");
        assert!(out.contains("memory: 1.0 GiB\n"));
        assert!(out.contains("uptime: 1m 1s\n"));
        assert!(out.contains("kvm:    kvm_amd (/dev/kvm available)\n"));
    }

    #[test]
    fn selftest_report() {
        let mut r = VmmSelftest {
            ok: true,
            command: vec!["vireo-vmm".into(), "--cpus".into(), "2".into()],
            exit_status: Some(0),
            serial: "PROBE start boot=pvh\nPROBE done ok\n".into(),
            stderr: "note\n".into(),
            duration_ms: 1450,
            timed_out: false,
        };
        assert_eq!(
            selftest(&r),
            "$ vireo-vmm --cpus 2\nPROBE start boot=pvh\nPROBE done ok\nvmm: note\n\
             selftest: ok (exit status 0, 1.45 s)\n"
        );
        r.ok = false;
        r.timed_out = true;
        r.exit_status = None;
        assert!(selftest(&r).ends_with("selftest: FAILED (stopped at the time limit, 1.45 s)\n"));
    }
}
