//! DHCP lease time: busybox `udhcpc` in a stand-in guest namespace, from
//! its start to its exit with a lease bound (DISCOVER, OFFER, REQUEST,
//! ACK; a fresh MAC each run, so each is a new lease), against the agent's
//! server on an isolated network and against busybox `udhcpd` (the peer,
//! without its ARP check of offered addresses, `-a 0`, which the agent does
//! not do either), run alternately. Both sides include the same process
//! start of udhcpc.
//!
//! The agent runs in a node namespace of its own with the network already
//! in its state directory, as after a reboot: it makes the bridge and
//! starts its DHCP server by itself, so no API call is needed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::measure::median;
use crate::net::netlab::{run, Netns};
use crate::{print_row, Failures};

const RUNS: usize = 20;
const READY: Duration = Duration::from_secs(60);

pub fn bench_dhcp(failures: &mut Failures) {
    if let Err(e) = measure() {
        println!("DHCP lease: could not measure: {e}");
        failures.add("DHCP lease", &e);
    }
}

/// A process killed (and reaped) when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn measure() -> Result<(), String> {
    let agent_bin = std::env::var_os("VIREO_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| vireo_tests::repo_root().join("target/release/vireo-agent"));
    if !agent_bin.exists() {
        return Err(format!("no agent at {}", agent_bin.display()));
    }
    let dir = std::env::temp_dir().join(format!("vireo-bench-dhcp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = with_dir(&agent_bin, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn with_dir(agent_bin: &Path, dir: &Path) -> Result<(), String> {
    let node = Netns::new("dhcp-n");
    let (_agent, agent_guest) = agent_side(agent_bin, dir, &node)?;
    let peer = Netns::new("dhcp-p");
    let (_udhcpd, peer_guest) = peer_side(dir, &peer)?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        // Alternating which goes first, so contention falls on both.
        let order = [(&agent_guest, &mut ours), (&peer_guest, &mut theirs)];
        let order = if i % 2 == 0 {
            order
        } else {
            let [a, b] = order;
            [b, a]
        };
        for (guest, out) in order {
            out.push(lease_ms(guest, i)?);
        }
    }
    println!(
        "\n{:<36} {:>15} {:>15} {:>8}",
        "DHCP lease (udhcpc, new MAC)", "vireo-agent", "busybox udhcpd", "ratio"
    );
    print_row(
        "start -> lease bound (median)",
        "ms",
        median(ours),
        median(theirs),
    );
    Ok(())
}

/// The agent in `node` with an isolated network `b` (10.88.0.0/24) in its
/// state, once its bridge has the gateway address; and a guest on it.
fn agent_side(bin: &Path, dir: &Path, node: &Netns) -> Result<(Reaped, Netns), String> {
    let state = dir.join("state");
    std::fs::create_dir_all(state.join("networks")).map_err(|e| e.to_string())?;
    let spec = r#"{"name": "b", "kind": "isolated", "subnet": "10.88.0.0/24"}"#;
    std::fs::write(state.join("networks/b.json"), spec).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("agent.log")).map_err(|e| e.to_string())?;
    node.ip("link set lo up");
    let child = Command::new("ip")
        .args(["netns", "exec", &node.name])
        .arg(bin)
        .args(["--listen", "127.0.0.1:0", "--run-dir"])
        .arg(dir.join("run"))
        .env("VIREO_STATE_DIR", &state)
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let agent = Reaped(child);
    let deadline = Instant::now() + READY;
    while !has_address(&node.name, "vr-b", "10.88.0.1") {
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
            return Err(format!("the agent made no vr-b with 10.88.0.1: {text}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((agent, guest_on(node, "vr-b", "dhcp-ga")))
}

/// busybox udhcpd on bridge `pbr` (10.89.0.1/24) in `peer`; a guest on it.
fn peer_side(dir: &Path, peer: &Netns) -> Result<(Reaped, Netns), String> {
    peer.ip("link set lo up");
    peer.ip("link add pbr type bridge");
    peer.ip("addr add 10.89.0.1/24 dev pbr");
    peer.ip("link set pbr up");
    let conf = dir.join("udhcpd.conf");
    let leases = dir.join("udhcpd.leases");
    std::fs::write(&leases, "").map_err(|e| e.to_string())?;
    let text = format!(
        "start 10.89.0.2\nend 10.89.0.254\ninterface pbr\nmax_leases 253\nlease_file {}\n\
         option subnet 255.255.255.0\noption lease 3600\n",
        leases.display()
    );
    std::fs::write(&conf, text).map_err(|e| e.to_string())?;
    let guest = guest_on(peer, "pbr", "dhcp-gp");
    let child = Command::new("ip")
        .args([
            "netns", "exec", &peer.name, "busybox", "udhcpd", "-f", "-a", "0",
        ])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("busybox udhcpd: {e}"))?;
    // udhcpd binds its socket at once; give it a moment to do so.
    std::thread::sleep(Duration::from_millis(500));
    Ok((Reaped(child), guest))
}

/// A guest namespace with `g0`, whose peer is a port of `bridge` in `host`.
fn guest_on(host: &Netns, bridge: &str, tag: &str) -> Netns {
    let guest = Netns::new(tag);
    let port = format!("p{}", &tag[tag.len() - 2..]);
    host.ip(&format!(
        "link add {port} type veth peer name g0 netns {}",
        guest.name
    ));
    host.ip(&format!("link set {port} master {bridge} up"));
    guest.ip("link set lo up");
    guest
}

fn has_address(ns: &str, link: &str, addr: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "-4", "addr", "show", "dev", link])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(addr))
}

/// One lease with a fresh MAC: ms from udhcpc's start to its exit bound.
fn lease_ms(guest: &Netns, run_no: usize) -> Result<f64, String> {
    guest.ip("link set g0 down");
    guest.ip(&format!(
        "link set g0 address 02:b0:00:00:{:02x}:{:02x}",
        run_no / 256,
        run_no % 256
    ));
    guest.ip("link set g0 up");
    let start = Instant::now();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &guest.name,
            "busybox",
            "udhcpc",
            "-i",
            "g0",
        ])
        .args(["-f", "-q", "-n", "-t", "5", "-T", "1", "-s", "/bin/true"])
        .output()
        .map_err(|e| format!("udhcpc: {e}"))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let said = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !said.contains("obtained") {
        return Err(format!("no lease in {}: {said}", guest.name));
    }
    run("ip", &["-n", &guest.name, "addr", "flush", "dev", "g0"]);
    Ok(ms)
}
