//! vireo-agent on cluster nodes: one agent per node namespace beside its
//! vireo-membershipd, on the node's address; HTTP to it from the test
//! process (a thread that enters the namespace), and a relay that lets a
//! browser on this host reach an agent in its namespace; the test watchdog's
//! supervisor, which kills every process of a node whose agent stopped
//! feeding it; and the scan that finds which node runs a VMM for a VM.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::net::{kill_processes_in, node_addr};
use crate::node::{workspace_binary, Node};

pub const API_PORT: u16 = 8006;

/// Fencing settings the test agents run with (ms).
#[derive(Clone, Copy, Debug)]
pub struct Fencing {
    pub watchdog_timeout_ms: u64,
    pub margin_ms: u64,
}

/// The agent binary (`VIREO_AGENT`, else the newer workspace build).
pub fn agent_binary() -> Result<PathBuf, String> {
    workspace_binary("vireo-agent", "VIREO_AGENT")
        .ok_or_else(|| "vireo-agent is not built: cargo build -p vireo-agent".to_string())
}

pub struct Agent {
    pub index: usize,
    pub namespace: String,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    child: Option<Child>,
    pub watchdog: WatchdogSupervisor,
    /// HTTPS, trusting the cluster CA (a user's client: no certificate),
    /// when the agent serves its cluster certificate.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The admin token every test agent accepts (`--admin-token-file`), the
/// node-to-node credential of a cluster until mutual TLS, and what the tests'
/// requests and `vireo` runs (`VIREO_TOKEN`) present.
pub const ADMIN_TOKEN: &str = "vireo-cluster-test-admin-token";

impl Agent {
    /// Starts node `index`'s agent, plain HTTP (`--plain-http`) though its
    /// node has a cluster certificate: see [`Agent::start_with`].
    pub fn start(index: usize, node: &Node, vmm: &Path, f: Fencing) -> Result<Agent, String> {
        Agent::start_with(index, node, vmm, f, false)
    }

    /// Starts node `index`'s agent: state and run directories under the
    /// node's directory, its cluster directory the node's, the file
    /// watchdog; with `tls`, serving (mutual) TLS with the node's cluster
    /// certificate, as a node in a cluster does by default.
    pub fn start_with(
        index: usize,
        node: &Node,
        vmm: &Path,
        f: Fencing,
        tls: bool,
    ) -> Result<Agent, String> {
        let dir = node.dir.join("agent");
        std::fs::create_dir_all(dir.join("state")).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir.join("run")).map_err(|e| e.to_string())?;
        let addr = SocketAddr::new(node_addr(index).into(), API_PORT);
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))
            .map_err(|e| e.to_string())?;
        let token = dir.join("admin-token");
        std::fs::write(&token, ADMIN_TOKEN).map_err(|e| e.to_string())?;
        let wd = dir.join("watchdog");
        let _ = std::fs::remove_file(&wd);
        let client = match tls {
            true => Some(client_config(&node.dir.join("tls/ca.crt"), None)?),
            false => None,
        };
        let child = in_namespace(&node.namespace, tls)
            .arg(agent_binary()?)
            .args((!tls).then_some("--plain-http"))
            .args(["--listen", &addr.to_string(), "--vmm"])
            .arg(vmm)
            .arg("--run-dir")
            .arg(dir.join("run"))
            .arg("--admin-token-file")
            .arg(&token)
            .arg(format!("--watchdog=file:{}", wd.display()))
            .arg(format!("--watchdog-timeout-ms={}", f.watchdog_timeout_ms))
            .arg(format!("--fence-margin-ms={}", f.margin_ms))
            .env("VIREO_STATE_DIR", dir.join("state"))
            .env("VIREO_CLUSTER_DIR", &node.dir)
            .env("VIREO_MEMBERSHIP_GROUP_SOCKET", node.group_socket_path())
            .env("VIREO_VM_MEMORY_MIB", "2048")
            // The TLS lab's VMMs run jailed, as on a cluster node; the other
            // labs' unjailed (jailed VMs on one node: agent's vm_jail.rs).
            .env("VIREO_JAIL", if tls { "on" } else { "off" })
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("vireo-agent: {e}"))?;
        let watchdog = WatchdogSupervisor::start(node.namespace.clone(), wd);
        Ok(Agent {
            index,
            namespace: node.namespace.clone(),
            dir,
            addr,
            child: Some(child),
            watchdog,
            tls: client,
        })
    }

    /// METHOD path with an optional JSON body: (status, body).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        self.call_as(ADMIN_TOKEN, method, path, body, &[])
    }

    /// `call` with `token` as the credential and `extra` headers.
    pub fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<(u16, String), String> {
        let request = request_as(token, self.addr, method, path, body, extra);
        let raw = exchange(&self.namespace, self.addr, request, self.tls.clone())?;
        parse_response(&raw)
    }

    /// The answer's JSON when the status is `want`.
    pub fn ok(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        want: u16,
    ) -> Result<serde_json::Value, String> {
        let (status, text) = self.call(method, path, body)?;
        if status != want {
            return Err(format!(
                "{method} {path} on {}: {status} {text}",
                self.namespace
            ));
        }
        serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}: {text}"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// The console log of the VM with `uuid` on this node.
    pub fn console_log(&self, uuid: &str) -> PathBuf {
        self.dir.join("run/vms").join(uuid).join("console.log")
    }

    /// Reaps the agent's `ip netns exec` child once something killed it.
    pub fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.watchdog.stop();
        kill_processes_in(&self.namespace);
        self.reap();
    }
}

/// An HTTP/1.1 request with the admin token and `extra` headers.
pub fn request_text(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra: &[(&str, &str)],
) -> String {
    request_as(ADMIN_TOKEN, addr, method, path, body, extra)
}

/// `request_text` with `token` as the caller's credential.
pub fn request_as(
    token: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra: &[(&str, &str)],
) -> String {
    let extra: String = extra.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.map_or(0, str::len),
        body.unwrap_or("")
    )
}

/// `request` sent over a TCP connection made from inside network namespace
/// `ns` (TLS over it with `tls`); everything answered until the close.
pub fn exchange(
    ns: &str,
    addr: SocketAddr,
    request: String,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Vec<u8>, String> {
    let ns = ns.to_string();
    std::thread::spawn(move || -> Result<Vec<u8>, String> {
        enter_namespace(&ns)?;
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("{addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        let read = match tls {
            Some(config) => {
                let name = rustls::pki_types::ServerName::from(addr.ip());
                let conn =
                    rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
                let mut stream = rustls::StreamOwned::new(conn, s);
                stream
                    .write_all(request.as_bytes())
                    .map_err(|e| e.to_string())?;
                stream.read_to_end(&mut raw)
            }
            None => {
                let mut s = s;
                s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
                s.read_to_end(&mut raw)
            }
        };
        read.map_err(|e| format!("{addr}: {e}"))?;
        Ok(raw)
    })
    .join()
    .map_err(|_| "the HTTP thread panicked".to_string())?
}

/// A TCP relay from `127.0.0.1:PORT` on this host to `to` inside namespace
/// `ns`, for a program that runs outside the lab (a browser): each
/// connection is made by a thread that entered the namespace (a socket stays
/// in the namespace it was made in), then copied both ways. It serves until
/// the test process ends.
pub fn relay(ns: &str, to: SocketAddr) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let at = listener.local_addr().map_err(|e| e.to_string())?;
    let ns = ns.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let ns = ns.clone();
            std::thread::spawn(move || {
                let upstream = enter_namespace(&ns).and_then(|()| {
                    TcpStream::connect_timeout(&to, Duration::from_secs(5))
                        .map_err(|e| format!("{to}: {e}"))
                });
                match upstream {
                    Ok(upstream) => pipe(client, upstream),
                    Err(e) => eprintln!("relay to {to} in {ns}: {e}"),
                }
            });
        }
    });
    Ok(at)
}

/// Copies `a` to `b` and `b` to `a` until both ends have closed.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(mut a_in), Ok(mut b_out)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let there = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a_in, &mut b_out);
        let _ = b_out.shutdown(Shutdown::Write);
    });
    let (mut b_in, mut a_out) = (b, a);
    let _ = std::io::copy(&mut b_in, &mut a_out);
    let _ = a_out.shutdown(Shutdown::Write);
    let _ = there.join();
}

/// A TLS client trusting only the CA in `ca_file`, presenting `client`
/// (certificate chain and key) when given.
pub fn client_config(
    ca_file: &Path,
    client: Option<(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    // ring, as the agent: aws-lc-rs needs cmake and a C build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn enter_namespace(ns: &str) -> Result<(), String> {
    let f = File::open(format!("/run/netns/{ns}")).map_err(|e| format!("{ns}: {e}"))?;
    // SAFETY: setns on an open namespace fd; it changes only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    match rc {
        0 => Ok(()),
        _ => Err(format!("setns {ns}: {}", std::io::Error::last_os_error())),
    }
}

/// Status and body of a `Connection: close` answer (chunked bodies joined).
pub fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP head")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            unchunk(body)
        } else {
            body.to_string()
        },
    ))
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Watches a node's file watchdog (`armed TIMEOUT_MS`, mtime = last feed):
/// once it is older than its timeout, every process of the node's namespace
/// gets SIGKILL, as a reset would end them, and the time is recorded.
pub struct WatchdogSupervisor {
    expired: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl WatchdogSupervisor {
    fn start(ns: String, file: PathBuf) -> WatchdogSupervisor {
        let expired = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s) = (expired.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if overdue(&file) {
                    kill_processes_in(&ns);
                    *e.lock().unwrap() = Some(Instant::now());
                    eprintln!("watchdog of {ns} expired: node's processes killed");
                    return;
                }
            }
        });
        WatchdogSupervisor { expired, stop }
    }

    pub fn expired(&self) -> Option<Instant> {
        *self.expired.lock().unwrap()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn overdue(file: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    let Some(ms) = text
        .strip_prefix("armed ")
        .and_then(|t| t.trim().parse().ok())
    else {
        return false;
    };
    let Ok(fed) = std::fs::metadata(file).and_then(|m| m.modified()) else {
        return false;
    };
    let age = SystemTime::now().duration_since(fed).unwrap_or_default();
    age > Duration::from_millis(ms)
}

/// A command that runs in node namespace `ns`. `ip netns exec` mounts a
/// fresh /sys, without the host's cgroup hierarchies a jailed VMM's group
/// is made in; an agent that jails joins only the network namespace.
fn in_namespace(ns: &str, jailed: bool) -> Command {
    if jailed {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{ns}"));
        return cmd;
    }
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]);
    cmd
}

/// Indices (into `namespaces`) of the nodes where a VMM of `uuid` runs
/// ([`vmm_processes`]): each process's network namespace compared with
/// the nodes'.
pub fn vmm_copies(namespaces: &[String], uuid: &str) -> Vec<usize> {
    let inodes: Vec<Option<u64>> = namespaces
        .iter()
        .map(|ns| {
            std::fs::metadata(format!("/run/netns/{ns}"))
                .ok()
                .map(|m| m.ino())
        })
        .collect();
    let mut found = Vec::new();
    for path in vmm_processes(uuid) {
        let Ok(ns) = std::fs::metadata(path.join("ns/net")) else {
            continue;
        };
        if let Some(i) = inodes.iter().position(|&ino| ino == Some(ns.ino())) {
            found.push(i);
        }
    }
    found
}

/// The /proc directories of the vireo-vmm processes running `uuid`'s
/// guest: an unjailed one's command line names the VM; a jailed one's
/// (`/vireo-vmm`, paths rewritten to the jail's) does not, its parent's,
/// the jailer's `--id=UUID`, does. Reapers are left out.
pub fn vmm_processes(uuid: &str) -> Vec<PathBuf> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let cmdline = |dir: &Path| {
        std::fs::read(dir.join("cmdline")).map(|c| String::from_utf8_lossy(&c).into_owned())
    };
    let jailer_id = format!("--id={uuid}\0");
    procs
        .flatten()
        .map(|p| p.path())
        .filter(|path| {
            let Ok(line) = cmdline(path) else {
                return false;
            };
            let argv0 = line.split('\0').next().unwrap_or("");
            if !argv0.ends_with("vireo-vmm") || is_reaper(path) {
                return false;
            }
            line.contains(uuid)
                || parent_dir(path)
                    .and_then(|p| cmdline(&p).ok())
                    .is_some_and(|p| p.contains(&jailer_id))
        })
        .collect()
}

fn parent_dir(proc_dir: &Path) -> Option<PathBuf> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    Some(Path::new("/proc").join(parent_pid(&stat)?.to_string()))
}

/// A VMM's reaper (vmm/src/reaper.rs) runs no guest: it only holds the
/// VM's KVM file while the VMM exits. It is `vireo-vmm --reaper-of PID`,
/// whose command line names no VM, and it calls itself `vireo-reaper`;
/// but between its fork and its execve (a loaded host may not schedule it
/// for a while) it is a copy of the VMM, told apart by its parent: a
/// process with its own command line.
fn is_reaper(proc_dir: &std::path::Path) -> bool {
    if std::fs::read_to_string(proc_dir.join("comm")).is_ok_and(|c| c.trim() == "vireo-reaper") {
        return true;
    }
    let cmdline = |dir: &Path| std::fs::read(dir.join("cmdline")).ok();
    match parent_dir(proc_dir) {
        Some(parent) => cmdline(proc_dir).is_some() && cmdline(proc_dir) == cmdline(&parent),
        None => false,
    }
}

/// The parent's PID from /proc/PID/stat (the field after the command
/// name, which is in parentheses and may itself hold spaces).
fn parent_pid(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_skips_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (vireo vmm) (x)) S 17 4242 4242 0 -1";
        assert_eq!(parent_pid(stat), Some(17));
        assert_eq!(parent_pid("garbage"), None);
    }

    #[test]
    fn responses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]";
        assert_eq!(parse_response(plain).unwrap(), (200, "[]".into()));
        let chunked = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (404, "abcde".into()));
    }
}
