//! Block rows: the probe's `probe.blk=bench` workload (sequential 64 KiB
//! writes + FLUSH, sequential reads, 4096 random 4 KiB reads, 4096 random
//! 4 KiB writes + FLUSH) on a fresh raw file and a fresh qcow2 image, under
//! vireo-vmm and QEMU microvm alternately. The host times the serial line
//! the probe prints after each phase.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::measure::{median, Vmm};
use crate::print_row;

const MIB: u64 = 64;
const RANDOM_OPS: f64 = 4096.0;
const RUNS: usize = 3;
const PHASES: [&str; 4] = ["seqwrite", "seqread", "randread", "randwrite"];

/// Seconds each phase took in one run.
fn run_once(vmm: &Vmm, image: &Path, format: &str) -> [f64; 4] {
    let (extra, announce) = vmm.disk_args(image, format);
    let cmdline = format!("probe.blk=bench:5:{MIB} {announce}");
    let start = Instant::now();
    let mut child = vmm.spawn_with(&cmdline, &extra);
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut times = [0.0; 4];
    let mut last = start;
    let mut seen = 0;
    for line in out.lines().map_while(Result::ok) {
        // The clock starts once the guest has found the disk (boot excluded).
        if line.starts_with("PROBE virtio dev=") && line.contains("id=2") {
            last = Instant::now();
        }
        let Some(phase) = line.strip_prefix("PROBE blk bench ") else {
            assert!(!line.contains("fail"), "{}: {line}", vmm.name);
            continue;
        };
        if let Some(i) = PHASES.iter().position(|p| *p == phase.trim()) {
            let now = Instant::now();
            times[i] = (now - last).as_secs_f64();
            last = now;
            seen += 1;
        }
        if seen == PHASES.len() || start.elapsed() > Duration::from_secs(300) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        seen,
        PHASES.len(),
        "{}: the bench workload did not finish",
        vmm.name
    );
    times
}

fn fresh_image(dir: &Path, format: &str) -> std::path::PathBuf {
    let path = dir.join(format!("bench.{format}"));
    let _ = std::fs::remove_file(&path);
    vireo_tests::qemu_img::create(format, &path, &[], Some(&format!("{MIB}M")));
    path
}

pub fn bench_block(contenders: &[Vmm]) {
    let dir = vireo_tests::scratch_dir("bench-blk");
    for format in ["raw", "qcow2"] {
        let mut samples: Vec<Vec<[f64; 4]>> = vec![Vec::new(); contenders.len()];
        for _ in 0..RUNS {
            for (i, vmm) in contenders.iter().enumerate() {
                let image = fresh_image(&dir, format);
                samples[i].push(run_once(vmm, &image, format));
            }
        }
        let med = |i: usize, phase: usize| median(samples[i].iter().map(|t| t[phase]).collect());
        println!(
            "\n{:<36} {:>15} {:>15} {:>8}",
            format!("virtio-blk {format}, median of {RUNS}"),
            contenders[0].name,
            contenders[1].name,
            "ratio"
        );
        let mib = MIB as f64;
        // Per phase of run_once: the row's name, unit and the work its time is divided into.
        let phases = [
            ("sequential write 64K (+flush)", "MB/s", mib),
            ("sequential read 64K", "MB/s", mib),
            ("random read 4K", "IOPS", RANDOM_OPS),
            ("random write 4K (+flush)", "IOPS", RANDOM_OPS),
        ];
        for (phase, (name, unit, work)) in phases.into_iter().enumerate() {
            print_row(name, unit, work / med(0, phase), work / med(1, phase));
        }
    }
    println!("goal: every block ratio >= 1.0 (higher is better)");
    let _ = std::fs::remove_dir_all(dir);
}
