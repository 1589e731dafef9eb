//! The network tests' lab: a node namespace the agent runs in, an
//! "internet" namespace behind the node's uplink `up0`, and stand-in
//! guests (a namespace with a veth whose peer the test puts on a network's
//! bridge). Frames are counted on AF_PACKET sockets. Every namespace (and
//! every link and nft table in it) goes when the lab drops.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[path = "../../../../tests/netlab/mod.rs"]
pub mod netlab;
pub mod resolver;

pub use netlab::Netns;

use crate::vm_common::{Agent, Node};
use serde_json::{json, Value};

/// The internet namespace's address, and the node's on the uplink.
pub const INTERNET_IP: &str = "198.51.100.2";
pub const NODE_UPLINK_IP: &str = "198.51.100.1";

/// The probe's EtherType.
pub const PROBE_ETHERTYPE: u16 = 0x88b5;

pub struct Lab {
    pub node: Netns,
    pub internet: Netns,
    tag: String,
}

impl Lab {
    /// Namespaces `node` and `internet` joined by up0 (node) — inet0.
    pub fn new(tag: &str) -> Lab {
        let node = Netns::new(&format!("{tag}-n"));
        let internet = Netns::new(&format!("{tag}-i"));
        node.ip("link set lo up");
        internet.ip("link set lo up");
        node.ip(&format!(
            "link add up0 type veth peer name inet0 netns {}",
            internet.name
        ));
        node.ip(&format!("addr add {NODE_UPLINK_IP}/24 dev up0"));
        node.ip("link set up0 up");
        internet.ip(&format!("addr add {INTERNET_IP}/24 dev inet0"));
        internet.ip("link set inet0 up");
        Lab {
            node,
            internet,
            tag: tag.into(),
        }
    }

    /// The calling thread (the test) moves into the node namespace: the
    /// agent it starts runs there, and 127.0.0.1 is the node's loopback.
    /// Like `ip netns exec`, it also mounts a sysfs of the namespace (in a
    /// mount namespace of this thread's own): /sys/class/net shows the
    /// links of the namespace that mounted sysfs, and the agent reads it.
    pub fn enter_node(&self) {
        enter_with_sysfs(&self.node.name);
    }
}

impl Lab {
    /// A stand-in guest: namespace with `g0`, whose peer `PORT` (in the
    /// node) joins `bridge`. `isolated` sets the bridge port flag, as the
    /// agent does for a VM's port on a private network.
    pub fn stand_in(&self, name: &str, bridge: &str, isolated: bool) -> StandIn {
        self.stand_in_on(&self.node, name, bridge, isolated)
    }

    /// A stand-in guest on a bridge of namespace `host` (the node, or the
    /// internet namespace when it plays a second node).
    pub fn stand_in_on(&self, host: &Netns, name: &str, bridge: &str, isolated: bool) -> StandIn {
        let ns = Netns::new(&format!("{}-{name}", self.tag));
        let port = format!("s{name}");
        host.ip(&format!(
            "link add {port} type veth peer name g0 netns {}",
            ns.name
        ));
        host.ip(&format!("link set {port} master {bridge}"));
        if isolated {
            host.ip(&format!("link set {port} type bridge_slave isolated on"));
        }
        host.ip(&format!("link set {port} up"));
        ns.ip("link set lo up");
        ns.ip("link set g0 up");
        let mac = ns.mac("g0");
        StandIn { ns, port, mac }
    }

    /// `ip -j ...` in the node namespace, parsed.
    pub fn node_json(&self, args: &str) -> serde_json::Value {
        let mut all = vec!["-n", &self.node.name, "-j"];
        all.extend(args.split_whitespace());
        let out = Command::new("ip").args(&all).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// The node's links and addresses, names and addresses only (what a
    /// rejected definition must leave as it was).
    pub fn node_networking(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(links) = self.node_json("addr show").as_array() {
            for l in links {
                let master = l["master"].as_str().unwrap_or("-");
                let mut line = format!("{} master={master}", l["ifname"].as_str().unwrap_or("?"));
                for a in l["addr_info"].as_array().into_iter().flatten() {
                    line += &format!(" {}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]);
                }
                out.push(line);
            }
        }
        out.sort();
        out
    }

    pub fn has_link(&self, name: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.node.name, "link", "show", name])
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// `nft list tables` in the node namespace.
    pub fn nft_tables(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.node.name, "nft", "list", "tables"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

pub struct StandIn {
    pub ns: Netns,
    /// Its port on the bridge, in the node namespace.
    pub port: String,
    pub mac: String,
}

impl StandIn {
    /// Runs a command inside the stand-in; (success, stdout + stderr).
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns.name])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// A DHCP lease through busybox udhcpc (a real client on the wire); the
    /// address it was given. Its script puts the address and default
    /// route on g0.
    pub fn dhcp(&self, script: &std::path::Path) -> Option<String> {
        let s = script.to_str().unwrap();
        let (ok, text) = self.exec(&[
            "busybox", "udhcpc", "-i", "g0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", s,
        ]);
        if !ok {
            eprintln!("udhcpc: {text}");
            return None;
        }
        let (_, addr) = self.exec(&["ip", "-4", "-o", "addr", "show", "g0"]);
        addr.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .map(|a| a.split('/').next().unwrap().to_string())
    }

    /// Pings `ip` `count` times; how many answers came.
    pub fn ping(&self, ip: &str, count: u32) -> u32 {
        ping_in(&self.ns.name, ip, count)
    }
}

/// Pings `ip` `count` times from namespace `ns` (busybox ping: the CI has
/// busybox-static, not iputils); how many answers came.
pub fn ping_in(ns: &str, ip: &str, count: u32) -> u32 {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "busybox",
            "ping",
            "-c",
            &count.to_string(),
            "-W",
            "1",
            ip,
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // "5 packets transmitted, 5 packets received, 0% packet loss"
    text.split(',')
        .find_map(|part| part.trim().strip_suffix(" packets received")?.parse().ok())
        .unwrap_or_else(|| panic!("no ping summary: {text}"))
}

/// The udhcpc script: address (with mask) and default route on the link;
/// the lease's DNS servers written to `udhcpc.dns` beside it.
pub fn udhcpc_script(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("udhcpc.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\ncase \"$1\" in\n bound|renew)\n  ip addr flush dev \"$interface\"\n  \
         ip addr add \"$ip/$mask\" dev \"$interface\"\n  \
         [ -n \"$router\" ] && ip route replace default via \"$router\" dev \"$interface\"\n  \
         echo \"$dns\" >\"${0%.sh}.dns\"\n  ;;\nesac\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// This thread into namespace `ns`, with a sysfs of its own (see
/// `Lab::enter_node`).
pub fn enter_with_sysfs(ns: &str) {
    enter(ns);
    // SAFETY: unshare and mount calls on this thread's own namespaces,
    // with NUL-terminated literals.
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_NEWNS),
            0,
            "unshare: {}",
            std::io::Error::last_os_error()
        );
        let none = std::ptr::null();
        libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        );
        libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH);
        let rc = libc::mount(
            c"sysfs".as_ptr(),
            c"/sys".as_ptr(),
            c"sysfs".as_ptr(),
            0,
            std::ptr::null(),
        );
        assert_eq!(rc, 0, "mount sysfs: {}", std::io::Error::last_os_error());
    }
}

/// This thread only: into namespace `ns`.
pub fn enter(ns: &str) {
    netlab::enter_netns(ns).unwrap_or_else(|e| panic!("setns {ns}: {e}"));
}

/// Counts the probe's frames (EtherType 0x88b5) that cross `ifname` in
/// namespace `ns`, in either direction, until stopped.
pub struct FrameCounter {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<usize>,
}

impl FrameCounter {
    pub fn start(ns: &str, ifname: &str) -> FrameCounter {
        let (ns, ifname) = (ns.to_string(), ifname.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            enter(&ns);
            // ETH_P_ALL: the only kind of packet socket that also sees
            // frames the node transmits on the link (towards a VM's tap).
            let sock = netlab::packet_socket_for(&ifname, libc::ETH_P_ALL as u16).unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = vec![0u8; 65536];
            let mut count = 0;
            while !stopped.load(Ordering::SeqCst) {
                // SAFETY: buf is writable for its length.
                let n =
                    unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n >= 14 && u16::from_be_bytes([buf[12], buf[13]]) == PROBE_ETHERTYPE {
                    count += 1;
                }
            }
            count
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        FrameCounter { stop, thread }
    }

    pub fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// Waits until `pred` holds, or panics saying `what`.
pub fn wait_until(limit: Duration, what: &str, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !pred() {
        assert!(Instant::now() < deadline, "not {what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Accepts one TCP connection on `port` in namespace `ns` (for up to 10 s):
/// the peer's address and what it sent.
pub fn tcp_accept_one(ns: &str, port: u16) -> JoinHandle<Option<(String, Vec<u8>)>> {
    let ns = ns.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        enter(&ns);
        let listener = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok((mut conn, peer)) = listener.accept() {
                use std::io::Read;
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut bytes = Vec::new();
                let _ = conn.read_to_end(&mut bytes);
                return Some((peer.ip().to_string(), bytes));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    thread
}

/// Connects from namespace `ns` to `ip:port` (2 s at most) and sends `bytes`.
pub fn tcp_send(ns: &str, ip: &str, port: u16, bytes: &[u8]) -> std::io::Result<()> {
    let (ns, bytes) = (ns.to_string(), bytes.to_vec());
    let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();
    std::thread::spawn(move || {
        enter(&ns);
        use std::io::Write;
        let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        conn.write_all(&bytes)
    })
    .join()
    .unwrap()
}

pub const BOOT: Duration = Duration::from_secs(120);

pub fn probe_vm(
    node: &Node,
    name: &str,
    cmdline: &str,
    network: &str,
    tenant: Option<&str>,
) -> Value {
    let mut spec = json!({
        "name": name,
        "memory_mib": 64,
        "boot": {"kind": "kernel", "kernel": node.probe, "cmdline": cmdline},
        "nics": [{"network": network}],
        "on_reboot": "stop",
    });
    if let Some(t) = tenant {
        spec["tags"] = json!({ "tenant": t });
    }
    spec
}

/// The guest port of `vm` on `network`: (interface, MAC).
pub fn port_of(agent: &Agent, network: &str, vm: &str) -> (String, String) {
    let net = agent.ok("GET", &format!("/networks/{network}"), None, 200);
    let port = net["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["vm"] == vm)
        .unwrap_or_else(|| panic!("no port of {vm}: {net}"));
    (
        port["ifname"].as_str().unwrap().into(),
        port["mac"].as_str().unwrap().into(),
    )
}

/// A probe VM on `network` sends `frames` probe frames through its
/// virtio-net and the agent's tap; the stand-in `echo` answers them.
/// Returns the VM's console log once it stopped, and its port's MAC.
pub fn run_echo_vm(
    (agent, node, lab): (&Agent, &Node, &Lab),
    vm: &str,
    (network, tenant): (&str, Option<&str>),
    echo: (&Netns, &str),
    frames: usize,
) -> (String, String) {
    let cmdline = format!("probe.net=echo:{frames}");
    agent.ok(
        "POST",
        "/vms",
        Some(probe_vm(node, vm, &cmdline, network, tenant)),
        201,
    );
    let echo = netlab::spawn_echo(echo.0, echo.1, frames, BOOT);
    agent.ok("POST", &format!("/vms/{vm}/start"), None, 200);
    let (tap, mac) = port_of(agent, network, vm);
    assert!(lab.has_link(&tap), "no tap {tap}");
    agent.wait_vm(vm, BOOT, "stopped", |v| v["state"] == "stopped");
    let echoed = echo.finish();
    let log = agent.log(vm);
    assert!(
        log.contains(&format!("PROBE net echo count={frames} ok")),
        "{vm}: {log}\necho: {:?}",
        echoed.error
    );
    assert_eq!(echoed.seqs.len(), frames, "frames the stand-in echoed");
    // The VM stopped: its port goes from the node and from the network.
    wait_until(Duration::from_secs(10), "the port removed", || {
        let net = agent.ok("GET", &format!("/networks/{network}"), None, 200);
        let listed = net["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["vm"] == vm);
        !listed && !lab.has_link(&tap)
    });
    (log, mac)
}
