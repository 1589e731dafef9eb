//! The Linux-guest rows: vireo-vmm against QEMU microvm (the rig's reference
//! VMM) booting the same guest kernel and initramfs with the same command
//! line inside the QEMU rig (nested KVM), launch -> the guest's /init line,
//! interleaved launch by launch (tests/rig/rootfs/rig/jobs/bench-boot.sh).
//! Also the slowest launch and the time from the guest's reset to the VMM's
//! exit. `make bench` builds the rig initramfs with both VMMs first.

use std::collections::HashMap;
use std::process::Command;

use crate::Failures;

/// Launches per VMM and vCPU count (`VIREO_BENCH_RIG_RUNS` overrides).
const RUNS: u32 = 10;

/// One `RIG result` or `RIG teardown` line's figures, in ms.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    runs: u32,
    median: f64,
    max: f64,
}

/// Key: (line kind, vmm, cpus).
type Table = HashMap<(String, String, String), Figures>;

pub(crate) fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// `RIG result vmm=vireo cpus=1 failed=0 runs=10 median=.. min=.. max=..`,
/// and `RIG teardown` / `RIG exit` lines with the same fields.
fn parse(console: &str) -> Table {
    let mut table = Table::new();
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        let Some(rest) = line.split("RIG ").nth(1) else {
            continue;
        };
        let kind = rest.split_whitespace().next().unwrap_or_default();
        if !["result", "teardown", "exit"].contains(&kind) {
            continue;
        }
        let num = |k| field(rest, k).and_then(|v| v.parse::<f64>().ok());
        let (Some(vmm), Some(cpus)) = (field(rest, "vmm"), field(rest, "cpus")) else {
            continue;
        };
        let figures = Figures {
            runs: num("runs").unwrap_or(0.0) as u32,
            median: num("median").unwrap_or(f64::NAN),
            max: num("max").unwrap_or(f64::NAN),
        };
        table.insert((kind.into(), vmm.into(), cpus.into()), figures);
    }
    table
}

fn runs() -> u32 {
    std::env::var("VIREO_BENCH_RIG_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS)
}

/// Boots the rig once for `guest` on each of `cpus` and prints its rows.
fn bench_guest(failures: &mut Failures, guest: &str, cpus: &[&str], title: &str) {
    let root = vireo_tests::repo_root();
    let initramfs = root.join("target/build/rig/rig-initramfs-bench.cpio.gz");
    let runs = runs();
    println!(
        "\n== {title} in the QEMU rig: launch -> guest /init, median of {runs} launches \
         each, vireo-vmm and QEMU microvm interleaved"
    );
    let out = Command::new(root.join("tests/rig/run-rig.sh"))
        .arg("bench-boot")
        .arg(format!("rig.runs={runs}"))
        .arg(format!("rig.guest={guest}"))
        .arg(format!("rig.cpus={}", cpus.join(",")))
        .env("RIG_INITRAMFS", &initramfs)
        .current_dir(&root)
        .output()
        .expect("run tests/rig/run-rig.sh");
    let console = String::from_utf8_lossy(&out.stdout);
    let table = parse(&console);
    let get = |kind: &str, vmm: &str, cpus: &str| {
        table
            .get(&(kind.to_string(), vmm.to_string(), cpus.to_string()))
            .copied()
    };
    for n in cpus {
        let (Some(ours), Some(theirs)) = (get("result", "vireo", n), get("result", "qemu", n))
        else {
            failures.add(&format!("{title}, {n} vCPU"), "no result line");
            continue;
        };
        let vcpus = if *n == "1" { "vCPU" } else { "vCPUs" };
        crate::print_row(
            &format!("{n} {vcpus}: launch -> /init"),
            "ms",
            ours.median,
            theirs.median,
        );
        crate::print_row(
            &format!("{n} {vcpus}: slowest launch"),
            "ms",
            ours.max,
            theirs.max,
        );
        println!(
            "{:<36} {:>10.2} x    {:>10.2} x",
            format!("{n} {vcpus}: slowest / median"),
            ours.max / ours.median,
            theirs.max / theirs.median
        );
        for (kind, what) in [
            ("teardown", "guest reset -> VMM exit"),
            ("exit", "/init line -> VMM exit"),
        ] {
            if let (Some(a), Some(b)) = (get(kind, "vireo", n), get(kind, "qemu", n)) {
                crate::print_row(&format!("{n} {vcpus}: {what}"), "ms", a.median, b.median);
            }
        }
        if ours.runs < runs || theirs.runs < runs {
            failures.add(
                &format!("{title}, {n} {vcpus}"),
                &format!(
                    "only {} and {} of {runs} launches reached /init",
                    ours.runs, theirs.runs
                ),
            );
        }
    }
    if !out.status.success() {
        failures.add(title, "a launch failed or the rig did not finish");
        print_failed_launches(&console);
    }
}

/// The rig's lines about launches that failed or hung, and its last lines.
pub(crate) fn print_failed_launches(console: &str) {
    let lines: Vec<&str> = console.lines().collect();
    for l in lines.iter().filter(|l| {
        l.contains("failed:")
            || l.contains("RIG dump")
            || l.contains("hung")
            || l.contains("[run-rig]")
    }) {
        println!("  {l}");
    }
}

pub fn bench_linux_in_rig(failures: &mut Failures) {
    bench_guest(failures, "min", &["1", "4"], "Minimal Linux guest");
    bench_guest(failures, "debian", &["2"], "Debian's stock kernel");
    println!(
        "goals: launch -> /init <= 0.9x QEMU; slowest <= 1.5x median; reset -> exit <= 100 ms"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_read_through_console_noise() {
        let console = "junk\r\nRIG result vmm=vireo cpus=1 failed=0 runs=10 median=2000 min=1800 max=2600\r\n\
            [ 1.0] RIG teardown vmm=qemu cpus=4 runs=9 median=150 min=100 max=300\n";
        let t = parse(console);
        let r = t[&("result".into(), "vireo".into(), "1".into())];
        assert_eq!((r.runs, r.median, r.max), (10, 2000.0, 2600.0));
        let d = t[&("teardown".into(), "qemu".into(), "4".into())];
        assert_eq!((d.runs, d.median), (9, 150.0));
    }
}
