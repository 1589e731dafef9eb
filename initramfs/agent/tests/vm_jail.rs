//! VMs the agent starts jailed (`--jail on`, vireo-jailer beside the VMM),
//! checked from the host: each VMM runs as its own uid, sees only its own
//! PID namespace and only its jail's files, cannot write outside it, and
//! its cgroup's memory limit stops a guest that allocates past it; the
//! console, the API socket, stops and re-adoption by a new agent work.

#[path = "vm_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Node;
use serde_json::{json, Value};
use vireo_tests::{api_call_with, first_child, proc_status_field};

const LONG: Duration = Duration::from_secs(60);
/// Dirtying guest memory under PVM on a loaded host can take minutes.
const DIRTYING: Duration = Duration::from_secs(300);

/// The VMM: the jailer's (the VM's `pid`) only child.
fn vmm_pid(vm: &Value) -> u32 {
    first_child(vm["pid"].as_u64().unwrap() as u32, LONG)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

/// `PUT path` on the VMM's own API socket: the status code.
fn vmm_put(socket: &Path, path: &str, body: &str) -> u16 {
    api_call_with(socket, "PUT", path, body).0
}

fn run_dir(node: &Node, vm: &Value) -> PathBuf {
    node.run().join("vms").join(vm["uuid"].as_str().unwrap())
}

#[test]
fn jailed_vms_are_confined_and_still_managed() {
    let node = Node::new("jail");
    let agent = node.agent(&["--jail", "on"]);
    assert!(agent.agent_log().contains("VMMs run jailed"));
    agent.define_probe(&node, "ja", "probe.hold", 64);
    // jb's NIC: a tap the agent opens and hands to the jailed VMM as an fd.
    let tap = format!("vjt{}", std::process::id() % 100_000);
    let spec = json!({"name": "jb", "memory_mib": 64, "nics": [{"tap": tap}],
        "boot": {"kind": "kernel", "kernel": node.probe, "cmdline": "probe.hold"}});
    agent.ok("POST", "/vms", Some(spec), 201);
    let a = agent.ok("POST", "/vms/ja/start", None, 200);
    let b = agent.ok("POST", "/vms/jb/start", None, 200);
    // The console reaches the agent through the jail's socket.
    agent.wait_log("ja", "PROBE done ok", LONG);
    agent.wait_log("jb", "PROBE done ok", LONG);
    let (pa, pb) = (vmm_pid(&a), vmm_pid(&b));
    // The tap lives while the VMM holds the descriptor the agent passed it.
    assert!(Path::new(&format!("/sys/class/net/{tap}")).exists());
    let fds = std::fs::read_dir(format!("/proc/{pb}/fd")).unwrap();
    let tun = fds
        .filter_map(|f| std::fs::read_link(f.ok()?.path()).ok())
        .any(|l| l == Path::new("/dev/net/tun"));
    assert!(tun, "jb's VMM holds no tap");

    // Each its own uid and gid, none of them root's, no capabilities.
    let uid_a = proc_status_field(pa, "Uid");
    let uid_b = proc_status_field(pb, "Uid");
    let first = |s: &str| s.split(' ').next().unwrap().parse::<u32>().unwrap();
    assert!(first(&uid_a) >= 1_000_000, "{uid_a}");
    assert_ne!(first(&uid_a), first(&uid_b));
    assert_eq!(proc_status_field(pa, "Gid"), uid_a);
    assert_eq!(proc_status_field(pa, "CapEff"), "0000000000000000");
    assert_eq!(proc_status_field(pa, "NoNewPrivs"), "1");

    // PID 1 of its own namespace: the other VM's VMM is not to be seen.
    assert_eq!(proc_status_field(pa, "NSpid"), format!("{pa} 1"));
    let root = PathBuf::from(format!("/proc/{pa}/root"));
    assert_eq!(
        names(&root.join("proc"))
            .iter()
            .filter(|n| n.parse::<u32>().is_ok())
            .count(),
        1
    );
    assert!(!root.join(format!("proc/{pb}")).exists());

    // Its root is the jail: the VMM, its kernel, its run files, no host files.
    assert!(!root.join("etc").exists());
    assert!(names(&root.join("vm")).contains(&"vmm".to_string()));
    // Asked through its API to write a snapshot to a host directory, it cannot.
    let outside = node.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let socket = run_dir(&node, &a).join("vmm/api.sock");
    assert_eq!(vmm_put(&socket, "/vm/pause", ""), 204);
    let body = json!({"dir": outside.join("snap")}).to_string();
    assert!(vmm_put(&socket, "/vm/snapshot", &body) >= 400);
    assert!(!outside.join("snap").exists());
    assert_eq!(vmm_put(&socket, "/vm/resume", ""), 204);

    // The agent stops them (re-adoption by a restarted agent: below).
    let vm = agent.ok("POST", "/vms/ja/destroy", None, 200);
    assert_eq!(vm["state"], "stopped", "{vm}");
    assert!(!Path::new(&format!("/proc/{pa}")).exists());
    agent.ok("POST", "/vms/jb/destroy", None, 200);
    assert!(!Path::new(&format!("/sys/class/net/{tap}")).exists());
    // The jailer removed the jails and the cgroups.
    assert!(names(&node.run().join("jail")).is_empty());
}

/// A restarted agent re-adopts a jailed VM and stops it in order. The
/// first agent's kill -9 ends the console connection it handed the VMM at
/// spawn; the new agent's console client then got that connection's fd
/// number. This once hung the VMM's event loop in a read (the jailer kept a
/// copy of the old connection, so epoll kept reporting it), the API
/// answered "the VMM did not answer in time" and the stop fell back to
/// SIGKILL, leaving the jail behind.
#[test]
fn a_restarted_agent_stops_a_jailed_vm_in_order() {
    let node = Node::new("jail-adopt");
    let mut agent = node.agent(&["--jail", "on"]);
    agent.define_probe(&node, "ja", "probe.hold", 64);
    let a = agent.ok("POST", "/vms/ja/start", None, 200);
    agent.wait_log("ja", "PROBE done ok", LONG);
    let pa = vmm_pid(&a);
    agent.kill9();
    let agent = node.agent(&["--jail", "on"]);
    let a2 = agent.wait_vm("ja", LONG, "re-adopted", |v| v["state"] == "running");
    assert_eq!(a2["pid"], a["pid"]);
    let vm = agent.ok("POST", "/vms/ja/destroy", None, 200);
    // An orderly stop leaves the VMM's exit record; a SIGKILL does not.
    assert_ne!(vm["last_exit"]["outcome"], "killed", "{vm}");
    assert!(!Path::new(&format!("/proc/{pa}")).exists());
    assert!(names(&node.run().join("jail")).is_empty());
}

#[test]
fn the_cgroup_memory_limit_stops_a_jailed_vm() {
    let node = Node::new("jail-oom");
    let agent = node.agent(&["--jail", "on"]);
    let spec = json!({
        "name": "big",
        "memory_mib": 256,
        "boot": {"kind": "kernel", "kernel": node.probe, "cmdline": "probe.dirty=200"},
        "limits": {"memory_max_mib": 96},
    });
    let vm = agent.ok("POST", "/vms", Some(spec), 201);
    assert_eq!(vm["limits"]["memory_max_mib"], 96);
    agent.ok("POST", "/vms/big/start", None, 200);
    let vm = agent.wait_vm("big", DIRTYING, "crashed", |v| v["state"] == "crashed");
    assert_eq!(vm["last_exit"]["exit_code"], 128 + 9, "{vm}");
    let log = std::fs::read_to_string(run_dir(&node, &vm).join("vmm.log")).unwrap();
    assert!(
        log.contains("the VMM was stopped by its cgroup's memory limit"),
        "{log}"
    );
    // The same guest under the default limit (guest memory + 128 MiB)
    // dirties all of its 150 MiB, past the 96 that stopped it.
    let spec = json!({
        "name": "big",
        "memory_mib": 256,
        "boot": {"kind": "kernel", "kernel": node.probe, "cmdline": "probe.dirty=150"},
    });
    agent.ok("PUT", "/vms/big", Some(spec), 200);
    agent.ok("POST", "/vms/big/start", None, 200);
    agent.wait_log("big", "PROBE dirty gen=1 ok", DIRTYING);
    agent.ok("POST", "/vms/big/destroy", None, 200);
}
