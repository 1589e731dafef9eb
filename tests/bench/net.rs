//! Network frames per second: the probe's echo workload (`probe.net=echo:N`,
//! docs/probe.md) through a tap on a bridge in a throwaway namespace, a host
//! echo on the veth peer, vireo-vmm and QEMU microvm (virtio-net-device on
//! the same tap, no vhost) run alternately. The figure is echoed frames per
//! second of the exchange itself: from the probe's `net dev=` line to its
//! `net echo ... ok` line, so boot time is left out.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "../netlab/mod.rs"]
pub(crate) mod netlab;

use crate::measure::{median, qemu_accel, QEMU_COMMON};
use crate::Failures;
use netlab::{bridge_with_tap, spawn_echo, Netns};

const FRAMES: usize = 10_000;
const RUNS: usize = 5;
const MAC: &str = "02:76:69:72:65:6f";
const TIMEOUT: Duration = Duration::from_secs(300);

fn vireo_args(cmdline: &str) -> (String, Vec<String>) {
    vireo_args_seccomp(cmdline, "kill")
}

/// vireo-vmm's arguments with `--seccomp MODE`.
pub fn vireo_args_seccomp(cmdline: &str, mode: &str) -> (String, Vec<String>) {
    let probe = vireo_tests::probe_elf().display().to_string();
    let args = [
        "--kernel",
        &probe,
        "--memory",
        "64M",
        "--cmdline",
        cmdline,
        "--net",
        &format!("tap=vtap0,mac={MAC}"),
        "--seccomp",
        mode,
    ];
    let program = vireo_tests::vmm_binary().display().to_string();
    (program, args.iter().map(|s| s.to_string()).collect())
}

fn qemu_args(cmdline: &str) -> (String, Vec<String>) {
    let probe = vireo_tests::probe_elf();
    let (accel, cpu) = qemu_accel(&probe);
    // acpi=off: microvm then announces its virtio-mmio devices on the command line.
    let machine = format!("microvm,accel={accel},acpi=off");
    let nic = format!("virtio-net-device,netdev=n0,mac={MAC}");
    let mut args: Vec<String> = ["-machine", &machine, "-cpu", cpu, "-smp", "1", "-m", "64M"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(
        [
            "-netdev",
            "tap,id=n0,ifname=vtap0,script=no,downscript=no,vhost=off",
            "-device",
            &nic,
            // The probe speaks virtio-mmio version 2 only (QEMU defaults to legacy).
            "-global",
            "virtio-mmio.force-legacy=false",
        ]
        .map(String::from),
    );
    args.extend(QEMU_COMMON.map(String::from));
    args.extend([
        probe.display().to_string(),
        "-append".into(),
        cmdline.into(),
    ]);
    ("qemu-system-x86_64".into(), args)
}

/// One run inside `ns`: echoed frames per second, or why it failed.
fn run_once(ns: &Netns, program: &str, args: &[String]) -> Result<f64, String> {
    let echo = spawn_echo(ns, "veth1", FRAMES, TIMEOUT);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, program])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let (mut began, mut ended) = (None, None);
    let mut tail = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap_or_default();
        if line.contains("PROBE net dev=") {
            began = Some(Instant::now());
        }
        if line.contains("PROBE net echo count=") && line.ends_with(" ok") {
            ended = Some(Instant::now());
        }
        tail.push(line);
        if tail.len() > 5 {
            tail.remove(0);
        }
    }
    let _ = child.wait();
    let log = echo.finish();
    match (began, ended) {
        (Some(b), Some(e)) if log.seqs.len() == FRAMES => Ok(FRAMES as f64 / (e - b).as_secs_f64()),
        _ => Err(format!(
            "no complete echo (host saw {} frames; probe said: {})",
            log.seqs.len(),
            tail.join(" | ")
        )),
    }
}

pub fn bench_net(failures: &mut Failures) {
    let cmdline = format!("probe.net=echo:{FRAMES}");
    let contenders = [
        ("vireo-vmm", vireo_args(&cmdline)),
        ("qemu microvm", qemu_args(&cmdline)),
    ];
    compare_net(
        failures,
        &contenders,
        "goal: >= 1.0x QEMU (each echoed frame crosses the device twice)",
    );
}

/// The echo rate of two launchers (name, (program, args)) side by side.
pub fn compare_net(
    failures: &mut Failures,
    contenders: &[(&str, (String, Vec<String>)); 2],
    goal: &str,
) {
    println!(
        "\n== network: probe echo of {FRAMES} frames through a tap on a bridge, {RUNS} runs each"
    );
    let ns = bridge_with_tap("bench-net");
    for (name, (program, args)) in contenders {
        println!("  {name}: {program} {}", args.join(" "));
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    for _ in 0..RUNS {
        for (i, (name, (program, args))) in contenders.iter().enumerate() {
            match run_once(&ns, program, args) {
                Ok(fps) => rates[i].push(fps),
                Err(why) => println!("  {name}: {why}"),
            }
        }
    }
    println!(
        "runs (echoed frames/s): {} {:?}, {} {:?}",
        contenders[0].0, rates[0], contenders[1].0, rates[1]
    );
    for ((name, _), runs) in contenders.iter().zip(&rates) {
        if runs.is_empty() {
            failures.add("echoed frames/s", &format!("{name}: no run completed"));
        }
    }
    let (ours, theirs) = (median(rates[0].clone()), median(rates[1].clone()));
    crate::print_row("echoed frames/s (median)", "f/s", ours, theirs);
    println!("{goal}");
}
