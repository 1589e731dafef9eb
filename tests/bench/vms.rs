//! The agent's overhead on starting VMs: from the start request to the
//! guest's first serial byte through the agent (POST /vms/NAME/start; the
//! byte is seen when the agent's console log for the VM grows), against
//! vireo-vmm spawned directly (first byte on its stdout pipe); then 50 VMs
//! at once both ways, and the agent's RSS with the 50 running. Then the
//! same single start through an agent that jails its VMMs (`--jail on`)
//! against this unjailed one, alternating.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::measure::median;
use crate::{print_row, Failures};

const RUNS: usize = 10;
const MANY: usize = 50;
/// Rounds of 50 at once, each way, alternating.
const MANY_ROUNDS: usize = 5;
const MEMORY: &str = "32";
const LIMIT: Duration = Duration::from_secs(60);

pub fn bench_vms(failures: &mut Failures) {
    if let Err(e) = run() {
        println!("agent: could not measure: {e}");
        failures.add("agent VM start", &e);
    }
}

fn run() -> Result<(), String> {
    let agent_bin = std::env::var_os("VIREO_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| vireo_tests::repo_root().join("target/release/vireo-agent"));
    if !agent_bin.exists() {
        return Err(format!(
            "no agent at {} (cargo build --release -p vireo-agent)",
            agent_bin.display()
        ));
    }
    let probe = vireo_tests::probe_elf();
    let vmm = vireo_tests::vmm_binary();
    let dir = std::env::temp_dir().join(format!("vireo-bench-vms-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let agent = Agent::start(&agent_bin, &vmm, &dir, "off")?;
    let result = measure(&agent, &vmm, &probe).and_then(|()| {
        let jailed = Agent::start(&agent_bin, &vmm, &dir.join("jailed"), "on")?;
        let result = jailed_start(&agent, &jailed, &probe);
        jailed.destroy_all();
        result
    });
    agent.destroy_all();
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(agent: &Agent, vmm: &Path, probe: &Path) -> Result<(), String> {
    let mut vms = Vec::new();
    for i in 0..MANY {
        let name = format!("b{i:02}");
        let uuid = agent.define(&name, probe)?;
        vms.push((name, uuid));
    }
    let (mut via_agent, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        via_agent.push(agent.first_byte_ms(&vms[..1])?);
        direct.push(direct_first_byte_ms(vmm, probe, 1)?);
    }
    let (mut many_agent, mut many_direct, mut rss) = (Vec::new(), Vec::new(), 0);
    for _ in 0..MANY_ROUNDS {
        many_agent.push(agent.started_ms(&vms)?);
        rss = rss.max(rss_kib(agent.child.id()));
        agent.destroy_all();
        many_direct.push(direct_first_byte_ms(vmm, probe, MANY)?);
    }
    println!(
        "50 VMs at once, each round (agent / direct, ms): {}",
        many_agent
            .iter()
            .zip(&many_direct)
            .map(|(a, d)| format!("{a:.0}/{d:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (many_agent, many_direct) = (median(many_agent), median(many_direct));
    println!(
        "\n{:<36} {:>15} {:>15} {:>8}",
        "VM start (probe, 32 MiB), agent", "via the agent", "vmm directly", "ratio"
    );
    let (one_a, one_d) = (median(via_agent), median(direct));
    print_row("request -> first serial byte, 1 VM", "ms", one_a, one_d);
    print_row(
        "50 VMs at once -> every first byte",
        "ms",
        many_agent,
        many_direct,
    );
    println!(
        "agent overhead: {:.2} ms for one VM, {:.2} ms per VM with 50 at once (goal <= 10 ms); \
         agent RSS with 50 VMs running: {:.1} MiB",
        one_a - one_d,
        (many_agent - many_direct) / MANY as f64,
        rss as f64 / 1024.0
    );
    Ok(())
}

/// One VM's start through a jailing agent against an unjailed one.
fn jailed_start(unjailed: &Agent, jailed: &Agent, probe: &Path) -> Result<(), String> {
    let vm = [("b00".to_string(), jailed.define("b00", probe)?)];
    let uuid = unjailed.uuid_of_vm("b00")?;
    let plain = [("b00".to_string(), uuid)];
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        with.push(jailed.first_byte_ms(&vm)?);
        without.push(unjailed.first_byte_ms(&plain)?);
    }
    println!(
        "\n{:<36} {:>15} {:>15} {:>8}",
        "VM start through the agent", "jailed", "unjailed", "ratio"
    );
    let (j, u) = (median(with), median(without));
    print_row("request -> first serial byte, 1 VM", "ms", j, u);
    println!("jail cost: {:.2} ms per start (goal: a few ms)", j - u);
    Ok(())
}

/// Spawns `n` VMMs at once and waits for each one's first byte on stdout.
fn direct_first_byte_ms(vmm: &Path, probe: &Path, n: usize) -> Result<f64, String> {
    let start = Instant::now();
    let mut children: Vec<Child> = (0..n)
        .map(|_| {
            Command::new(vmm)
                .args(["--kernel"])
                .arg(probe)
                .args(["--memory", &format!("{MEMORY}M"), "--cmdline", "probe.hold"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("{}: {e}", vmm.display()))
        })
        .collect::<Result<_, _>>()?;
    let mut outs: Vec<_> = children
        .iter_mut()
        .map(|c| c.stdout.take().unwrap())
        .collect();
    let readers: Vec<_> = outs
        .drain(..)
        .map(|mut out| std::thread::spawn(move || out.read_exact(&mut [0u8; 1]).is_ok()))
        .collect();
    let ok = readers.into_iter().all(|r| r.join().unwrap_or(false));
    let elapsed = start.elapsed().as_secs_f64() * 1e3;
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    match ok {
        true => Ok(elapsed),
        false => Err("a VMM printed nothing".into()),
    }
}

struct Agent {
    child: Child,
    addr: String,
    run: PathBuf,
}

/// The admin token the bench's agent accepts (`--admin-token-file`).
const TOKEN: &str = "vireo-bench-token";

impl Agent {
    /// An agent on `dir`; `jail` is its `--jail` (on, off).
    fn start(bin: &Path, vmm: &Path, dir: &Path, jail: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let log = dir.join("agent.log");
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let token = dir.join("admin-token");
        std::fs::write(&token, format!("{TOKEN}\n")).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("--admin-token-file")
            .arg(&token)
            .args(["--listen", "127.0.0.1:0", "--vmm"])
            .arg(vmm)
            .arg("--run-dir")
            .arg(dir.join("run"))
            .args(["--jail", jail])
            .env("VIREO_STATE_DIR", dir.join("state"))
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let deadline = Instant::now() + LIMIT;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            // Only a whole address: the log may be read while the agent
            // is still writing the line ("127.0.0.1:" without its port).
            let whole = text
                .split("listening on http://")
                .nth(1)
                .and_then(|rest| rest.split_once([',', ' ', '\n']));
            if let Some((addr, _)) = whole {
                let addr = addr.to_string();
                return Ok(Agent {
                    child,
                    addr,
                    run: dir.join("run"),
                });
            }
            if Instant::now() > deadline {
                return Err(format!("the agent did not start: {text}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn call(&self, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
        let mut s = TcpStream::connect(&self.addr).map_err(|e| e.to_string())?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((
            status,
            out.split_once("\r\n\r\n")
                .map_or("", |(_, b)| b)
                .to_string(),
        ))
    }

    fn uuid_of_vm(&self, name: &str) -> Result<String, String> {
        match self.call("GET", &format!("/vms/{name}"), "")? {
            (200, b) => Ok(uuid_of(&b)),
            (s, b) => Err(format!("GET /vms/{name}: {s} {b}")),
        }
    }

    /// Defines a probe VM; returns its UUID.
    fn define(&self, name: &str, probe: &Path) -> Result<String, String> {
        let body = format!(
            r#"{{"name":"{name}","memory_mib":{MEMORY},"boot":{{"kind":"kernel","kernel":"{}","cmdline":"probe.hold"}}}}"#,
            probe.display()
        );
        match self.call("POST", "/vms", &body)? {
            (201, b) => Ok(uuid_of(&b)),
            (s, b) => Err(format!("define {name}: {s} {b}")),
        }
    }

    /// Starts every VM at once; ms until each one's console log has grown.
    fn first_byte_ms(&self, vms: &[(String, String)]) -> Result<f64, String> {
        let ms = self.started_ms(vms)?;
        self.destroy_all();
        Ok(ms)
    }

    /// `first_byte_ms`, the VMs left running.
    fn started_ms(&self, vms: &[(String, String)]) -> Result<f64, String> {
        let log_len = |uuid: &str| {
            let log = self.run.join("vms").join(uuid).join("console.log");
            std::fs::metadata(log).map_or(0, |m| m.len())
        };
        let before: Vec<u64> = vms.iter().map(|(_, u)| log_len(u)).collect();
        let start = Instant::now();
        std::thread::scope(|s| {
            let handles: Vec<_> = vms
                .iter()
                .map(|(n, _)| s.spawn(move || self.call("POST", &format!("/vms/{n}/start"), "")))
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(Ok((200, _))) => Ok(()),
                    Ok(Ok((s, b))) => Err(format!("start: {s} {b}")),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err("a starter panicked".into()),
                })
                .collect::<Result<Vec<()>, String>>()
        })?;
        let mut pending: Vec<usize> = (0..vms.len()).collect();
        while !pending.is_empty() {
            pending.retain(|&i| log_len(&vms[i].1) <= before[i]);
            if start.elapsed() > LIMIT {
                return Err(format!("{} VMs printed nothing", pending.len()));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(start.elapsed().as_secs_f64() * 1e3)
    }

    fn destroy_all(&self) {
        std::thread::scope(|s| {
            for i in 0..MANY {
                s.spawn(move || self.call("POST", &format!("/vms/b{i:02}/destroy"), ""));
            }
        });
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uuid_of(body: &str) -> String {
    body.split("\"uuid\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
        .to_string()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
