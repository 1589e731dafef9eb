//! Launching a VMM on the probe guest and measuring it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub first_byte_ms: f64,
    pub done_ms: f64,
    pub peak_rss_mib: f64,
}

pub struct Vmm {
    pub name: &'static str,
    program: String,
    args: Vec<String>,
    /// Where the guest command line goes in `args`.
    cmdline_index: usize,
    memory_mib: u64,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// QEMU options both the probe check and the measured runs use: no default
/// devices, console on stdio, and the probe's exit port.
pub const QEMU_COMMON: [&str; 10] = [
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-no-reboot",
    "-device",
    "isa-debug-exit,iobase=0xf4,iosize=4",
    "-kernel",
];

/// QEMU's accelerator and CPU model for this host: KVM when QEMU can boot
/// the probe with it (a PVM /dev/kvm refuses QEMU's ARCH_CAPABILITIES MSR,
/// hence the CPU flag), else TCG, which the report then says.
pub fn qemu_accel(probe: &Path) -> (&'static str, &'static str) {
    let out = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "microvm,accel=kvm",
            "-cpu",
            "host,-arch-capabilities",
            "-m",
            "64M",
        ])
        .args(QEMU_COMMON)
        .arg(probe)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("PROBE done ok") => {
            ("kvm", "host,-arch-capabilities")
        }
        _ => ("tcg", "max"),
    }
}

impl Vmm {
    pub fn vireo(probe: &Path, memory_mib: u64) -> Self {
        let mem = format!("{memory_mib}M");
        let args = [
            "--kernel",
            probe.to_str().unwrap(),
            "--cpus",
            "1",
            "--memory",
            &mem,
            "--cmdline",
            "",
        ];
        Self {
            name: "vireo-vmm",
            program: vireo_tests::vmm_binary().display().to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            cmdline_index: args.len() - 1,
            memory_mib,
        }
    }

    /// vireo-vmm with `--seccomp MODE` (the security rows compare modes).
    pub fn vireo_seccomp(probe: &Path, memory_mib: u64, mode: &'static str) -> Self {
        let mut vmm = Self::vireo(probe, memory_mib);
        vmm.name = if mode == "kill" {
            "seccomp kill"
        } else {
            "seccomp off"
        };
        let at = vmm.cmdline_index - 1;
        vmm.args
            .splice(at..at, ["--seccomp".to_string(), mode.to_string()]);
        vmm.cmdline_index += 2;
        vmm
    }

    /// Any launcher whose last argument is the guest command line (the
    /// jailer in front of vireo-vmm).
    pub fn custom(name: &'static str, program: &str, args: Vec<String>, memory_mib: u64) -> Self {
        Self {
            name,
            program: program.into(),
            cmdline_index: args.len() - 1,
            args,
            memory_mib,
        }
    }

    pub fn qemu_microvm(probe: &Path, memory_mib: u64) -> Self {
        let (accel, cpu) = qemu_accel(probe);
        let machine = format!("microvm,accel={accel}");
        let mem = format!("{memory_mib}M");
        let mut args: Vec<String> = ["-machine", &machine, "-cpu", cpu, "-smp", "1", "-m", &mem]
            .iter()
            .chain(QEMU_COMMON.iter())
            .map(|s| s.to_string())
            .collect();
        args.extend([probe.display().to_string(), "-append".into(), String::new()]);
        Self {
            name: "qemu microvm",
            program: "qemu-system-x86_64".into(),
            cmdline_index: args.len() - 1,
            args,
            memory_mib,
        }
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.program, self.args.join(" "))
    }

    fn spawn(&self, cmdline: &str) -> Child {
        self.spawn_with(cmdline, &[])
    }

    /// The arguments that attach `path` as a virtio-blk disk, and what the
    /// guest command line needs to find it. QEMU's microvm puts the first
    /// device on its last virtio-mmio transport and does not announce it on
    /// the probe's command line, so the probe is told where it is.
    pub fn disk_args(&self, path: &Path, format: &str) -> (Vec<String>, String) {
        if self.program.contains("qemu") {
            let drive = format!("id=d0,file={},format={format},if=none", path.display());
            let args = [
                "-global",
                "virtio-mmio.force-legacy=false",
                "-drive",
                &drive,
            ];
            let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            args.extend(["-device".into(), "virtio-blk-device,drive=d0".into()]);
            (args, "virtio_mmio.device=512@0xfeb02e00:39".into())
        } else {
            let disk = format!("path={},format={format}", path.display());
            (vec!["--disk".into(), disk], String::new())
        }
    }

    /// Starts the VMM with `cmdline` for the guest and `extra` arguments.
    pub fn spawn_with(&self, cmdline: &str, extra: &[String]) -> Child {
        let mut args = self.args.clone();
        args[self.cmdline_index] = cmdline.to_string();
        args.extend_from_slice(extra);
        Command::new(&self.program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program))
    }

    /// One boot to the probe's `PROBE done` line, then to process exit.
    pub fn boot_once(&self, timeout: Duration) -> Sample {
        let start = Instant::now();
        let mut child = self.spawn("bench");
        let (first, done) = watch_serial(&mut child, start, timeout, false);
        let rss = wait_peak_rss_mib(&child);
        Sample {
            first_byte_ms: first.as_secs_f64() * 1e3,
            done_ms: done.as_secs_f64() * 1e3,
            peak_rss_mib: rss,
        }
    }

    /// Boots the probe in hold mode and measures RSS outside the guest's RAM.
    pub fn overhead_mib(&self, timeout: Duration) -> f64 {
        let start = Instant::now();
        let mut child = self.spawn("probe.hold");
        watch_serial(&mut child, start, timeout, true);
        std::thread::sleep(Duration::from_millis(200));
        let overhead = smaps_overhead_mib(child.id(), self.memory_mib);
        let _ = child.kill();
        let _ = child.wait();
        overhead
    }
}

/// Reads the guest console until `PROBE done`; returns the times of the first
/// byte and of that line. With `keep_reading` the pipe stays drained after.
fn watch_serial(
    child: &mut Child,
    start: Instant,
    timeout: Duration,
    keep_reading: bool,
) -> (Duration, Duration) {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut first = [0u8; 1];
        if out.read_exact(&mut first).is_err() {
            return;
        }
        let _ = tx.send(start.elapsed());
        let mut line = String::new();
        while out.read_line(&mut line).unwrap_or(0) > 0 {
            if line.contains("PROBE done") {
                let _ = tx.send(start.elapsed());
                if !keep_reading {
                    break;
                }
            }
            line.clear();
        }
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    });
    let first = rx
        .recv_timeout(timeout)
        .expect("no serial output from the guest");
    let done = rx
        .recv_timeout(timeout)
        .expect("the probe never reported done");
    (first, done)
}

/// Waits for the child and returns its peak resident set (wait4's maxrss).
fn wait_peak_rss_mib(child: &Child) -> f64 {
    let mut status = 0;
    // SAFETY: plain wait4 on our own child with valid out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

/// Total RSS minus the RSS of the mapping that backs guest RAM (the one
/// anonymous mapping at least as large as the guest memory).
fn smaps_overhead_mib(pid: u32, memory_mib: u64) -> f64 {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("read smaps");
    let (mut total_kb, mut guest_kb) = (0u64, 0u64);
    let mut current_is_guest = false;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let size =
                u64::from_str_radix(hi, 16).unwrap_or(0) - u64::from_str_radix(lo, 16).unwrap_or(0);
            current_is_guest = size >= memory_mib << 20;
        } else if first == "Rss:" {
            let kb: u64 = words.next().unwrap_or("0").parse().unwrap_or(0);
            total_kb += kb;
            if current_is_guest {
                guest_kb += kb;
            }
        }
    }
    (total_kb - guest_kb) as f64 / 1024.0
}
