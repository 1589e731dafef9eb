//! Helpers shared by the end-to-end tests: finding the binaries, running the
//! VMM with a deadline, and reading the probe guest's serial report.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod qemu_img;
pub mod stress;
pub mod vmm_process;

pub use vireo_cluster_tests::command::run_ok;

/// Repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn artifact(env: &str, default: &str, how: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(default));
    assert!(
        path.exists(),
        "{} not found at {} — {how}",
        env,
        path.display()
    );
    path
}

/// The vireo-vmm binary (`VIREO_VMM`, else the release build).
pub fn vmm_binary() -> PathBuf {
    artifact(
        "VIREO_VMM",
        "target/release/vireo-vmm",
        "run `make vmm` or set VIREO_VMM",
    )
}

/// The vireo-img tool (`VIREO_IMG`, else the release build beside vireo-vmm).
pub fn img_binary() -> PathBuf {
    artifact(
        "VIREO_IMG",
        "target/release/vireo-img",
        "run `make vmm` or set VIREO_IMG",
    )
}

/// The probe guest ELF with its PVH note (`VIREO_PROBE`).
pub fn probe_elf() -> PathBuf {
    artifact(
        "VIREO_PROBE",
        "target/build/probe/vireo-probe.elf",
        "run `make probe` or set VIREO_PROBE",
    )
}

/// `vireo-vmm` booting the probe with `memory` of RAM and its console on
/// `serial` (stdio, none, ...): the launch end-to-end tests add to.
pub fn probe_command(memory: &str, serial: &str) -> Command {
    let mut cmd = Command::new(vmm_binary());
    cmd.arg("--kernel")
        .arg(probe_elf())
        .args(["--memory", memory, "--serial", serial])
        .stdin(std::process::Stdio::null());
    cmd
}

/// The probe built without the PVH note, entered through the Linux 64-bit protocol.
pub fn probe_linux64_elf() -> PathBuf {
    artifact(
        "VIREO_PROBE_LINUX64",
        "target/build/probe/vireo-probe-linux64.elf",
        "run `make probe` or set VIREO_PROBE_LINUX64",
    )
}

/// A fresh, empty directory for one test's files.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vireo-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a finished VMM run left behind.
pub struct RunResult {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// The complete lines `r` yields, without their `\n`. A last line with no
/// newline is dropped: a process killed while printing it leaves half a
/// line, which must never be parsed as if it were whole.
pub fn complete_lines(r: impl Read) -> impl Iterator<Item = String> {
    let mut r = std::io::BufReader::new(r);
    std::iter::from_fn(move || {
        let mut line = Vec::new();
        match std::io::BufRead::read_until(&mut r, b'\n', &mut line) {
            Ok(_) if line.last() == Some(&b'\n') => {
                line.pop();
                Some(String::from_utf8_lossy(&line).into_owned())
            }
            _ => None,
        }
    })
}

/// One request to a VMM's API socket; returns (status code, body). Panics
/// if no answer comes within 30 s.
pub fn api_call(socket: &Path, method: &str, path: &str) -> (u16, String) {
    api_call_with(socket, method, path, "")
}

/// `api_call` with a (JSON) body.
pub fn api_call_with(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect to the API socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"));
    let status = reply.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A field of /proc/PID/status, its words joined by single spaces ("" if
/// the process or the field is gone).
pub fn proc_status_field(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The processes a /proc mount shows (a jailed VMM's own PID namespace
/// seen through /proc/PID/root/proc), as (pid, command name), by pid.
pub fn processes_in(proc_dir: &std::path::Path) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = std::fs::read_dir(proc_dir)
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                .map(|pid| {
                    let comm = std::fs::read_to_string(proc_dir.join(&pid).join("comm"));
                    (pid, comm.unwrap_or_default().trim().to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|(pid, _)| pid.parse::<u32>().unwrap_or(u32::MAX));
    found
}

/// The first child of `pid` (a jailer's VMM), waiting up to `timeout`.
pub fn first_child(pid: u32, timeout: Duration) -> u32 {
    let children = format!("/proc/{pid}/task/{pid}/children");
    let mut found = None;
    wait_for("a child process", timeout, || {
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        found = text.split_whitespace().next().and_then(|p| p.parse().ok());
        found.is_some()
    });
    found.unwrap()
}

/// Polls `ok` every 20 ms until it holds; panics after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` up to `timeout`, killing it on expiry (then panics).
pub fn wait_with_deadline(child: &mut Child, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vireo-vmm did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `vireo-vmm ARGS` with no stdin, capturing its output.
pub fn run_vmm(args: &[&str], timeout: Duration) -> RunResult {
    run_captured(Command::new(vmm_binary()).args(args), timeout)
}

/// Runs `cmd` (a vireo-vmm run, perhaps behind a wrapper such as `ip netns
/// exec`) with no stdin, capturing its output, for at most `timeout`.
pub fn run_captured(cmd: &mut Command, timeout: Duration) -> RunResult {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vireo-vmm");
    let out = read_all(child.stdout.take().unwrap());
    let err = read_all(child.stderr.take().unwrap());
    let status = wait_with_deadline(&mut child, timeout);
    RunResult {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        elapsed: start.elapsed(),
    }
}

/// The probe guest's report: every `PROBE ` line, split into words.
pub struct ProbeReport {
    pub lines: Vec<Vec<String>>,
}

impl ProbeReport {
    pub fn parse(serial: &str) -> Self {
        let lines = serial
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').strip_prefix("PROBE "))
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect();
        Self { lines }
    }

    /// All lines whose first word is `key`, without that word.
    pub fn all(&self, key: &str) -> Vec<&[String]> {
        self.lines
            .iter()
            .filter(|l| l.first().map(String::as_str) == Some(key))
            .map(|l| &l[1..])
            .collect()
    }

    /// The value of `name=` on the first line starting with `key`.
    pub fn field(&self, key: &str, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.all(key)
            .first()?
            .iter()
            .find_map(|w| w.strip_prefix(&prefix).map(str::to_string))
    }

    pub fn done_ok(&self) -> bool {
        self.all("done")
            .first()
            .is_some_and(|w| w.first().map(String::as_str) == Some("ok"))
    }
}

/// Parses `0x…` hex as the probe prints addresses.
pub fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// splitmix64's finaliser of `seed` and `n`, as the probe computes it.
pub fn probe_mix(seed: u64, n: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

/// The probe's disk pattern (firmware/probe/src/virtio.rs) for `mib` MiB
/// from the start of the disk: a template from `seed` repeating every
/// 4 KiB, with the first word of each sector stamped.
pub fn probe_disk_pattern(seed: u64, mib: usize) -> Vec<u8> {
    (0..(mib as u64) << 17)
        .map(|w| {
            if w % 64 == 0 {
                probe_mix(!seed, w / 64)
            } else {
                probe_mix(seed, w % 512)
            }
        })
        .flat_map(u64::to_le_bytes)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::complete_lines;

    #[test]
    fn a_half_written_last_line_is_not_yielded() {
        let out = b"PROBE blk stress gen=1\nPROBE blk stress gen=2\nPROBE blk stress gen=";
        let lines: Vec<String> = complete_lines(&out[..]).collect();
        assert_eq!(lines, ["PROBE blk stress gen=1", "PROBE blk stress gen=2"]);
    }
}
