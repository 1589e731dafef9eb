//! The lab network: one network namespace per node and one holding the switch
//! (Linux bridges), joined by veth pairs. Addresses are private to the
//! namespaces, so labs of parallel tests never see each other or the host.
//!
//! Partitions are made on the switch side, never inside a node: a node's port is
//! set down (the node is cut off), or moved onto another bridge (the nodes on
//! that bridge form their own island).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Every namespace this harness creates starts with this, followed by the pid of
/// the test process, so a later run can remove what a killed run left behind.
const PREFIX: &str = "vcl";

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

pub struct Lab {
    tag: String,
    switch: String,
    nodes: Vec<String>,
    bridges: usize,
}

/// Runs `ip ARGS`; the error carries ip's own message.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Address of node `index` (0-based) on the lab network.
pub fn node_addr(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, index as u8 + 1)
}

impl Lab {
    /// A switch namespace and `nodes` node namespaces, each with `eth0` plugged
    /// into bridge 0 and addressed [`node_addr`]`/24`.
    pub fn new(nodes: usize) -> Result<Lab, String> {
        assert!(nodes < 250, "one /24 holds the lab");
        remove_stale_namespaces();
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{PREFIX}{}x{n}", std::process::id());
        let mut lab = Lab {
            switch: format!("{tag}-sw"),
            tag,
            nodes: Vec::new(),
            bridges: 0,
        };
        ip(&["netns", "add", &lab.switch])?;
        ip(&["-n", &lab.switch, "link", "set", "lo", "up"])?;
        lab.add_bridge()?;
        for i in 0..nodes {
            lab.add_node(i)?;
        }
        Ok(lab)
    }

    /// Name of node `index`'s namespace (for `ip netns exec`).
    pub fn namespace(&self, index: usize) -> &str {
        &self.nodes[index]
    }

    fn add_bridge(&mut self) -> Result<(), String> {
        let br = format!("br{}", self.bridges);
        ip(&["-n", &self.switch, "link", "add", &br, "type", "bridge"])?;
        // No STP and no forwarding delay: a port forwards as soon as it is up.
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &br,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        ip(&["-n", &self.switch, "link", "set", &br, "up"])?;
        self.bridges += 1;
        Ok(())
    }

    fn add_node(&mut self, index: usize) -> Result<(), String> {
        let ns = format!("{}-n{index}", self.tag);
        ip(&["netns", "add", &ns])?;
        self.nodes.push(ns.clone());
        let port = port_name(index);
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.switch,
        ])?;
        let addr = format!("{}/24", node_addr(index));
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &self.switch, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", &self.switch, "link", "set", &port, "up"])
    }

    /// Splits the network: the nodes of `islands[k]` share bridge k; nodes in no
    /// island are cut off (their port is down). Nodes keep their addresses.
    pub fn partition(&mut self, islands: &[&[usize]]) -> Result<(), String> {
        while self.bridges < islands.len() {
            self.add_bridge()?;
        }
        for node in 0..self.nodes.len() {
            let port = port_name(node);
            match islands.iter().position(|island| island.contains(&node)) {
                Some(k) => {
                    let br = format!("br{k}");
                    ip(&["-n", &self.switch, "link", "set", &port, "master", &br])?;
                    ip(&["-n", &self.switch, "link", "set", &port, "up"])?;
                }
                None => ip(&["-n", &self.switch, "link", "set", &port, "down"])?,
            }
        }
        Ok(())
    }

    /// One network again: every port up on bridge 0.
    pub fn heal(&mut self) -> Result<(), String> {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.partition(&[&all])
    }
}

/// The switch-side end of node `index`'s veth pair.
fn port_name(index: usize) -> String {
    format!("p{index}")
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Whatever still runs in a namespace goes first (the cluster stops its nodes
        // itself; this is the safety net). Deleting a namespace deletes its veth ends and bridges with it.
        for ns in self.nodes.iter().chain(std::iter::once(&self.switch)) {
            kill_processes_in(ns);
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cluster lab cleanup: {e}");
            }
        }
    }
}

/// Namespaces of an earlier test process that was killed before its Drop ran.
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('x').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            kill_processes_in(&name);
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// SIGKILL to every process left in namespace `ns` (`ip netns pids`).
pub fn kill_processes_in(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            // SAFETY: kill(2) with a pid and a signal number; no memory involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
