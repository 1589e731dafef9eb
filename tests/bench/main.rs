//! `make bench`: vireo-vmm side by side with QEMU's microvm on the same probe
//! guest, run alternately in one process so both see the same machine.
//!
//! Measured per run: time from spawning the VMM to the first byte the guest
//! writes on its serial console, peak RSS (wait4), and — with the guest
//! holding after its report — the VMM's own memory: resident set minus the
//! resident part of the guest RAM mapping. Then virtio-blk throughput and
//! IOPS on raw and qcow2 images (`block.rs`).

mod appliance;
mod block;
mod cluster;
mod dhcp;
mod ha;
mod measure;
mod migration;
mod net;
mod rig;
mod rig_net;
mod scale;
mod security;
mod vms;

use std::process::ExitCode;
use std::time::Duration;

use measure::{median, Sample, Vmm};

const RUNS: usize = 10;
pub(crate) const GUEST_MEMORY_MIB: u64 = 256;

/// Picks one figure out of a sample.
type Metric = fn(&Sample) -> f64;

/// Rows that could not measure. Each is printed where it happens, with the
/// reason; the run goes on with the other rows, lists them again at the end
/// and exits 1, so `make bench` fails instead of printing "missing" and
/// passing.
#[derive(Default)]
pub(crate) struct Failures(Vec<String>);

impl Failures {
    pub(crate) fn add(&mut self, row: &str, why: &str) {
        self.0.push(format!("{row}: {why}"));
    }

    fn finish(self) -> ExitCode {
        if self.0.is_empty() {
            return ExitCode::SUCCESS;
        }
        println!(
            "
== {} row(s) could not measure:",
            self.0.len()
        );
        for f in &self.0 {
            println!("  {f}");
        }
        ExitCode::FAILURE
    }
}

pub(crate) fn print_row(name: &str, unit: &str, ours: f64, theirs: f64) {
    let ratio = if theirs > 0.0 {
        ours / theirs
    } else {
        f64::NAN
    };
    println!("{name:<36} {ours:>10.2} {unit:<4} {theirs:>10.2} {unit:<4} {ratio:>7.2}x");
}

fn bench_probe() {
    let probe = vireo_tests::probe_elf();
    compare_probe([
        Vmm::vireo(&probe, GUEST_MEMORY_MIB),
        Vmm::qemu_microvm(&probe, GUEST_MEMORY_MIB),
    ]);
    println!("goals: first byte <= 0.5x QEMU; vireo-vmm overhead <= 5 MiB");
}

/// Boot time, peak RSS and VMM overhead of two launchers on the probe.
pub(crate) fn compare_probe(contenders: [Vmm; 2]) {
    for c in &contenders {
        println!("  {}: {}", c.name, c.describe());
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); contenders.len()];
    for _ in 0..RUNS {
        for (i, c) in contenders.iter().enumerate() {
            samples[i].push(c.boot_once(Duration::from_secs(30)));
        }
    }
    let overhead: Vec<f64> = contenders
        .iter()
        .map(|c| c.overhead_mib(Duration::from_secs(30)))
        .collect();
    let med = |i: usize, f: Metric| median(samples[i].iter().map(f).collect());
    println!(
        "\n{:<36} {:>15} {:>15} {:>8}",
        "probe guest, median of 10", contenders[0].name, contenders[1].name, "ratio"
    );
    let rows: [(&str, &str, Metric); 3] = [
        ("start -> first serial byte", "ms", |s| s.first_byte_ms),
        ("start -> guest done", "ms", |s| s.done_ms),
        ("peak RSS", "MiB", |s| s.peak_rss_mib),
    ];
    for (name, unit, f) in rows {
        print_row(name, unit, med(0, f), med(1, f));
    }
    let overhead_row = "VMM overhead (RSS - guest RAM RSS)";
    print_row(overhead_row, "MiB", overhead[0], overhead[1]);
}

fn main() -> ExitCode {
    let mut failures = Failures::default();
    // `vireo-bench cluster|block|net|dhcp|rig-net|...`: only those rows (make bench-cluster).
    match std::env::args().nth(1).as_deref() {
        Some("cluster") => cluster::bench_cluster(&mut failures),
        Some("block") => bench_block(),
        Some("net") => net::bench_net(&mut failures),
        Some("dhcp") => dhcp::bench_dhcp(&mut failures),
        Some("broadcast") => cluster::bench_broadcast(&mut failures),
        Some("store") => cluster::bench_store(&mut failures),
        Some("ha") => ha::bench_ha(&mut failures),
        Some("scale") => scale::bench_scale(&mut failures),
        Some("migration") => migration::bench_migration(&mut failures),
        Some("security") => security::bench_security(&mut failures),
        Some("vms") => vms::bench_vms(&mut failures),
        Some("rig-net") => rig_net::bench_net_in_rig(&mut failures),
        Some("appliance") => appliance::bench_appliance(&mut failures),
        _ => {
            println!(
                "== vireo bench ({} runs each, guest memory {GUEST_MEMORY_MIB} MiB)",
                RUNS
            );
            bench_probe();
            bench_block();
            vms::bench_vms(&mut failures);
            net::bench_net(&mut failures);
            dhcp::bench_dhcp(&mut failures);
            migration::bench_migration(&mut failures);
            security::bench_security(&mut failures);
            rig::bench_linux_in_rig(&mut failures);
            rig_net::bench_net_in_rig(&mut failures);
            cluster::bench_cluster(&mut failures);
            appliance::bench_appliance(&mut failures);
        }
    }
    failures.finish()
}

fn bench_block() {
    let probe = vireo_tests::probe_elf();
    block::bench_block(&[
        Vmm::vireo(&probe, GUEST_MEMORY_MIB),
        Vmm::qemu_microvm(&probe, GUEST_MEMORY_MIB),
    ]);
}
