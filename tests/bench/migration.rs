//! Migration rows: the probe guest moved between two VMMs of one kind on
//! this host (over a Unix socket, no bandwidth cap, the same 300 ms
//! downtime limit), vireo-vmm against QEMU (`-incoming` + QMP `migrate`),
//! for several guest sizes, idle and dirtying memory. Median of `RUNS`
//! migrations per cell.
//!
//! Downtime is what the guest sees: from the source pausing it to the
//! destination running it. For QEMU that is the destination's RESUME
//! event minus the source's STOP event (both QMP timestamps, one host
//! clock); QEMU's own `downtime` figure stops at the source's last byte,
//! before the destination has loaded anything, and is shown beside it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::measure::{median, qemu_accel, QEMU_COMMON};
use crate::{print_row, Failures};

const RUNS: usize = 3;
const DOWNTIME_LIMIT_MS: u64 = 300;

/// One cell's figures: (downtime ms, total ms, QEMU's own downtime figure
/// or vireo-vmm's breakdown of its downtime).
type Figures = (f64, f64, Vec<f64>);

/// vireo-vmm's `downtime_breakdown_ms`, in order, then `downtime_ms`
/// (to the source's receiving Running; the downtime shown is what the guest
/// saw, `guest_downtime_ms`, when the destination says when it resumed).
const PHASES: [&str; 6] = [
    "capture",
    "last pages",
    "state",
    "destination",
    "commit",
    "to Running",
];

struct Workload {
    name: &'static str,
    cmdline: &'static str,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "idle",
        cmdline: "probe.hold",
    },
    Workload {
        name: "dirty 10 MB/s",
        cmdline: "probe.dirty=64:10",
    },
    Workload {
        name: "dirty 100 MB/s",
        cmdline: "probe.dirty=64:100",
    },
];

pub fn bench_migration(failures: &mut Failures) {
    let probe = vireo_tests::probe_elf();
    let dir = std::env::temp_dir().join(format!("vireo-bench-mig-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    println!(
        "\n== live migration of the probe guest over a Unix socket, downtime limit {DOWNTIME_LIMIT_MS} ms, median of {RUNS}"
    );
    println!(
        "{:<36} {:>15} {:>15} {:>8}",
        "", "vireo-vmm", "qemu microvm", "ratio"
    );
    for mib in guest_sizes() {
        for w in &WORKLOADS {
            let row = format!("{} MiB, {}", mib, w.name);
            let ours = runs(|| vireo_once(&probe, &dir, mib, w.cmdline));
            let theirs = runs(|| qemu_once(&probe, &dir, mib, w.cmdline));
            match (ours, theirs) {
                (Ok(a), Ok(b)) => {
                    print_row(&format!("{row}: downtime"), "ms", a.0, b.0);
                    print_row(&format!("{row}: total"), "ms", a.1, b.1);
                    let phases: Vec<String> = PHASES
                        .iter()
                        .zip(&a.2)
                        .map(|(name, ms)| format!("{name} {ms:.2}"))
                        .collect();
                    println!("{:<36} vireo-vmm downtime, ms: {}", "", phases.join(", "));
                    println!(
                        "{:<36} {:>31.2} ms (QEMU's own figure: source side only)",
                        "",
                        b.2.first().copied().unwrap_or(f64::NAN)
                    );
                }
                (a, b) => {
                    let why = a.err().or(b.err()).unwrap_or_default();
                    println!("{row}: could not measure: {why}");
                    failures.add(&format!("migration {row}"), &why);
                }
            }
        }
    }
    println!("goals: downtime <= 0.5x QEMU's at the same limit, total <= 1.0x");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Guest sizes in MiB: all three, or those `VIREO_BENCH_MIGRATION_MIB`
/// lists (comma-separated), to measure one row quickly.
fn guest_sizes() -> Vec<u64> {
    match std::env::var("VIREO_BENCH_MIGRATION_MIB") {
        Ok(list) => list
            .split(',')
            .filter_map(|m| m.trim().parse().ok())
            .collect(),
        Err(_) => vec![256, 1024, 4096],
    }
}

fn runs(mut once: impl FnMut() -> Result<Figures, String>) -> Result<Figures, String> {
    let mut all = Vec::new();
    for _ in 0..RUNS {
        all.push(once()?);
    }
    let parts = all.iter().map(|f| f.2.len()).min().unwrap_or(0);
    Ok((
        median(all.iter().map(|f| f.0).collect()),
        median(all.iter().map(|f| f.1).collect()),
        (0..parts)
            .map(|i| median(all.iter().map(|f| f.2[i]).collect()))
            .collect(),
    ))
}

/// Kills its processes however the run ends.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for(path: &Path) -> Result<(), String> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("{} never appeared", path.display()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn spawn(program: &str, args: &[String]) -> Result<Child, String> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))
}

fn sockets(dir: &Path, tag: &str) -> [PathBuf; 3] {
    ["src", "dst", "mig"].map(|n| dir.join(format!("{tag}-{n}.sock")))
}

fn vireo_once(probe: &Path, dir: &Path, mib: u64, cmdline: &str) -> Result<Figures, String> {
    let vmm = vireo_tests::vmm_binary().display().to_string();
    let [src, dst, mig] = sockets(dir, "vireo");
    for s in [&src, &dst, &mig] {
        let _ = std::fs::remove_file(s);
    }
    let s = |v: &str| v.to_string();
    let src_args = vec![
        s("--kernel"),
        probe.display().to_string(),
        s("--memory"),
        format!("{mib}M"),
        s("--cmdline"),
        s(cmdline),
        s("--serial"),
        s("none"),
        s("--api-socket"),
        src.display().to_string(),
    ];
    let dst_args = vec![
        s("--incoming"),
        format!("unix:{}", mig.display()),
        s("--serial"),
        s("none"),
        s("--api-socket"),
        dst.display().to_string(),
    ];
    let _procs = Procs(vec![spawn(&vmm, &src_args)?, spawn(&vmm, &dst_args)?]);
    wait_for(&src)?;
    std::thread::sleep(Duration::from_secs(2));
    wait_for(&mig)?;
    let body = json!({
        "url": format!("unix:{}", mig.display()),
        "max_downtime_ms": DOWNTIME_LIMIT_MS,
        "exit_when_done": false,
    });
    api(&src, "PUT", "/vm/migrate", Some(body))?;
    let start = Instant::now();
    loop {
        let st = api(&src, "GET", "/vm/migration", None)?;
        match st["phase"].as_str().unwrap_or("") {
            "completed" => {
                let to_running = st["downtime_ms"].as_f64().unwrap_or(f64::NAN);
                let mut parts: Vec<f64> = st["downtime_breakdown_ms"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|v| v.as_f64().unwrap_or(f64::NAN))
                    .collect();
                parts.push(to_running);
                return Ok((
                    st["guest_downtime_ms"].as_f64().unwrap_or(to_running),
                    st["total_ms"].as_f64().unwrap_or(f64::NAN),
                    parts,
                ));
            }
            "failed" | "cancelled" | "unknown" => return Err(format!("vireo-vmm: {st}")),
            _ if start.elapsed() > Duration::from_secs(300) => {
                return Err("vireo-vmm: timed out".into())
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn api(socket: &Path, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let body = body.map(|b| b.to_string());
    vireo_vmm::ctl::request(socket, method, path, body.as_deref())
        .map_err(|e| e.to_string())?
        .ok_json()
}

fn qemu_args(probe: &Path, mib: u64, cmdline: &str, qmp: &Path) -> Vec<String> {
    let (accel, cpu) = qemu_accel(probe);
    let mut args: Vec<String> = [
        "-machine".to_string(),
        format!("microvm,accel={accel}"),
        "-cpu".into(),
        cpu.into(),
        "-smp".into(),
        "1".into(),
        "-m".into(),
        format!("{mib}M"),
    ]
    .into();
    // QEMU_COMMON ends with "-kernel": the probe follows it.
    args.extend(QEMU_COMMON.iter().map(|s| s.to_string()));
    args.push(probe.display().to_string());
    args.extend([
        "-append".into(),
        cmdline.into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qmp.display()),
    ]);
    // The probe's console would go to stdout, which is discarded.
    args
}

fn qemu_once(probe: &Path, dir: &Path, mib: u64, cmdline: &str) -> Result<Figures, String> {
    let [src, dst, mig] = sockets(dir, "qemu");
    for s in [&src, &dst, &mig] {
        let _ = std::fs::remove_file(s);
    }
    let mut dst_args = qemu_args(probe, mib, cmdline, &dst);
    dst_args.extend(["-incoming".into(), format!("unix:{}", mig.display())]);
    let _procs = Procs(vec![
        spawn("qemu-system-x86_64", &qemu_args(probe, mib, cmdline, &src))?,
        spawn("qemu-system-x86_64", &dst_args)?,
    ]);
    wait_for(&src)?;
    std::thread::sleep(Duration::from_secs(2));
    wait_for(&mig)?;
    let mut qmp = Qmp::connect(&src)?;
    let mut dst_qmp = Qmp::connect(&dst)?;
    qmp.run(
        "migrate-set-parameters",
        json!({
            "downtime-limit": DOWNTIME_LIMIT_MS,
            "max-bandwidth": 10_000_000_000u64,
        }),
    )?;
    qmp.run(
        "migrate",
        json!({ "uri": format!("unix:{}", mig.display()) }),
    )?;
    let start = Instant::now();
    loop {
        let st = qmp.run("query-migrate", json!({}))?;
        match st["status"].as_str().unwrap_or("") {
            "completed" => {
                let stop = qmp.event_time("STOP")?;
                let resume = dst_qmp.wait_event("RESUME")?;
                return Ok((
                    (resume - stop) * 1e3,
                    st["total-time"].as_f64().unwrap_or(f64::NAN),
                    vec![st["downtime"].as_f64().unwrap_or(f64::NAN)],
                ));
            }
            "failed" | "cancelled" => return Err(format!("qemu: {st}")),
            _ if start.elapsed() > Duration::from_secs(300) => return Err("qemu: timed out".into()),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A QMP connection: greeting, capabilities negotiation, then commands
/// whose answers are read past any events.
struct Qmp {
    out: UnixStream,
    inp: BufReader<UnixStream>,
    /// Events seen while waiting for answers: (name, timestamp in seconds).
    events: Vec<(String, f64)>,
}

impl Qmp {
    fn connect(path: &Path) -> Result<Self, String> {
        let s = UnixStream::connect(path).map_err(|e| format!("QMP {}: {e}", path.display()))?;
        let inp = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
        let mut q = Qmp {
            out: s,
            inp,
            events: Vec::new(),
        };
        q.line()?;
        q.run("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn line(&mut self) -> Result<Value, String> {
        let mut l = String::new();
        self.inp.read_line(&mut l).map_err(|e| e.to_string())?;
        serde_json::from_str(&l).map_err(|e| format!("QMP: {e}: {l}"))
    }

    fn run(&mut self, cmd: &str, args: Value) -> Result<Value, String> {
        let req = json!({ "execute": cmd, "arguments": args });
        writeln!(self.out, "{req}").map_err(|e| e.to_string())?;
        loop {
            let v = self.line()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(format!("QMP {cmd}: {e}"));
            }
            self.note_event(&v);
        }
    }

    fn note_event(&mut self, v: &Value) {
        if let Some(name) = v["event"].as_str() {
            let t = &v["timestamp"];
            let secs = t["seconds"].as_f64().unwrap_or(0.0)
                + t["microseconds"].as_f64().unwrap_or(0.0) / 1e6;
            self.events.push((name.to_string(), secs));
        }
    }

    /// When `name` was seen (it must have been).
    fn event_time(&self, name: &str) -> Result<f64, String> {
        self.events
            .iter()
            .find(|e| e.0 == name)
            .map(|e| e.1)
            .ok_or_else(|| format!("no QMP {name} event"))
    }

    /// Reads events until `name` arrives; returns its time.
    fn wait_event(&mut self, name: &str) -> Result<f64, String> {
        while self.event_time(name).is_err() {
            let v = self.line()?;
            self.note_event(&v);
        }
        self.event_time(name)
    }
}
