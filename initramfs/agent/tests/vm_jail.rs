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

/// The newest generation the stress probe `name` reported on its console.
fn stress_gen(agent: &common::Agent, name: &str) -> u64 {
    agent
        .log(name)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("PROBE blk stress gen="))
        .filter_map(|n| n.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

/// A task route (202) run to its end; the finished task.
fn run_task(agent: &common::Agent, path: &str, body: Value) -> Value {
    let t = agent.ok("POST", path, Some(body), 202);
    agent.wait_task(t["id"].as_str().unwrap(), DIRTYING)
}

/// A live backup of a jailed VM: its VMM makes the overlay in its staging
/// directory in the pool (bound into its jail), the backup holds one
/// instant of the guest's writes, the running disk keeps every flushed
/// write, and the restore passes its checksums.
#[test]
fn a_jailed_vm_is_backed_up_live_and_restored() {
    use vireo_tests::stress::{expected, first_stray_sector, generation_of};
    const MIB: u64 = 8;
    let seed = 4242;
    let node = Node::new("jail-backup");
    let agent = node.agent(&["--jail", "on"]);
    let disk = node.local_pool().join("jb.raw");
    std::fs::write(&disk, vec![0u8; (MIB << 20) as usize]).unwrap();
    let spec = json!({"name": "jb", "memory_mib": 64, "disks": [{"volume": "local/jb.raw"}],
        "boot": {"kind": "kernel", "kernel": node.probe,
                 "cmdline": format!("probe.blk=stress:{seed}:{MIB}")}});
    agent.ok("POST", "/vms", Some(spec), 201);
    let vm = agent.ok("POST", "/vms/jb/start", None, 200);
    agent.wait_log("jb", "PROBE blk stress gen=2", DIRTYING);
    let staging = node
        .local_pool()
        .join(format!(".jail-staging-{}", vm["uuid"].as_str().unwrap()));
    assert!(
        staging.is_dir(),
        "no staging directory {}",
        staging.display()
    );

    let before = stress_gen(&agent, "jb");
    let t = run_task(&agent, "/backups", json!({"vm": "jb", "storage": "local"}));
    assert_eq!(t["state"], "done", "{t}");
    let m = &t["result"]["backup"];
    assert_eq!(m["live"], true, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    assert!(names(&staging).is_empty(), "overlays are committed");
    assert!(!node.local_pool().join(".jb.raw.backup-overlay").exists());

    // The guest goes on writing; stopped (the stress workload ignores
    // Ctrl-Alt-Del, so at the timeout), every flushed write is on the disk.
    agent.wait_log(
        "jb",
        &format!("PROBE blk stress gen={}", before + 3),
        DIRTYING,
    );
    let t = agent.ok("POST", "/vms/jb/shutdown?timeout=3", None, 202);
    let t = agent.wait_task(t["id"].as_str().unwrap(), LONG);
    assert_eq!(t["state"], "done", "{t}");
    let last = stress_gen(&agent, "jb");
    let now = std::fs::read(&disk).unwrap();
    let (must, may) = expected(&vec![0u8; now.len()], seed, last);
    assert_eq!(
        first_stray_sector(&now, &must, &may),
        None,
        "generation {last}"
    );

    // Restored (checksums checked) into a new VM: one instant of the
    // guest's writes, no earlier than the backup's start.
    let path = format!("/pools/local/backups/{id}");
    let t = run_task(&agent, &format!("{path}/verify"), json!({}));
    assert_eq!(t["result"]["verified"], true, "{t}");
    let t = run_task(&agent, &format!("{path}/restore"), json!({"vm": "jr"}));
    assert_eq!(t["state"], "done", "{t}");
    let jr = agent.vm("jr");
    let volume = jr["disks"][0]["volume"].as_str().unwrap();
    let file = volume.strip_prefix("local/").unwrap();
    let bytes = std::fs::read(node.local_pool().join(file)).unwrap();
    let at = generation_of(&bytes, seed, before);
    assert!(
        at.is_some(),
        "the restored disk is no instant after generation {before}"
    );
    eprintln!("jailed live backup: paused {} ms, restored at generation {at:?} (backup started after {before}, VM stopped at {last})", m["pause_ms"]);
}
