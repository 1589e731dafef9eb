//! Many VMs, agent restarts and node reboots: 50 probe VMs started and
//! stopped in parallel; the agent killed -9 and started again while VMs
//! run (every VMM re-adopted, none restarted, consoles working); a node
//! reboot (run directory emptied, state kept) starts the autostart VMs.

#[path = "vm_common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{rss_kib, Agent, Node};
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

/// Runs `f` for every name on its own thread; returns when all are done.
fn parallel(names: &[String], f: impl Fn(&str) + Sync) {
    std::thread::scope(|s| {
        for n in names {
            let f = &f;
            s.spawn(move || f(n));
        }
    });
}

fn pids(agent: &Agent, names: &[String]) -> Vec<i64> {
    names
        .iter()
        .map(|n| agent.vm(n)["pid"].as_i64().unwrap_or(-1))
        .collect()
}

#[test]
fn fifty_vms_start_and_stop_in_parallel() {
    let node = Node::new("fifty");
    let agent = node.agent(&[]);
    let names: Vec<String> = (0..50).map(|i| format!("vm{i:02}")).collect();
    for n in &names {
        agent.define_probe(&node, n, "probe.hold", 32);
    }
    let started = Instant::now();
    parallel(&names, |n| {
        agent.ok("POST", &format!("/vms/{n}/start"), None, 200);
    });
    let start_time = started.elapsed();
    for n in &names {
        agent.wait_log(n, "PROBE done ok", LONG);
    }
    let booted = started.elapsed();
    let running = agent.ok("GET", "/vms", None, 200);
    let all_running = running
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["state"] == "running");
    assert!(all_running, "{running}");
    assert_eq!(node.vmm_pids().len(), 50);
    let rss = rss_kib(agent.child.id());

    let stopping = Instant::now();
    parallel(&names, |n| {
        let vm = agent.ok("POST", &format!("/vms/{n}/destroy"), None, 200);
        assert_eq!(vm["state"], "stopped", "{vm}");
    });
    let stop_time = stopping.elapsed();
    assert!(
        node.vmm_pids().is_empty(),
        "pid files left: {:?}",
        node.vmm_pids()
    );
    eprintln!(
        "50 VMs: started (API answered) in {:.0} ms, every probe booted after {:.0} ms, \
         destroyed in {:.0} ms; agent RSS with 50 running: {} KiB",
        start_time.as_secs_f64() * 1e3,
        booted.as_secs_f64() * 1e3,
        stop_time.as_secs_f64() * 1e3,
        rss
    );
    assert!(rss < 64 * 1024, "agent RSS {rss} KiB with 50 VMs");
}

#[test]
fn an_agent_killed_while_vms_run_readopts_them_all() {
    let node = Node::new("readopt");
    let mut agent = node.agent(&[]);
    let names: Vec<String> = (0..10).map(|i| format!("vm{i}")).collect();
    for n in &names[1..] {
        agent.define_probe(&node, n, "probe.hold", 32);
    }
    agent.define_probe(&node, &names[0], "probe.tick", 32);
    parallel(&names, |n| {
        agent.ok("POST", &format!("/vms/{n}/start"), None, 200);
    });
    for n in &names {
        agent.wait_log(n, "PROBE done ok", LONG);
    }
    let before = pids(&agent, &names);
    agent.kill9();

    let agent = node.agent(&[]);
    // Re-adoption happens beside serving: wait until every VM is back.
    let deadline = Instant::now() + LONG;
    while pids(&agent, &names).contains(&-1) {
        assert!(
            Instant::now() < deadline,
            "not all re-adopted: {}",
            agent.ok("GET", "/vms", None, 200)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        pids(&agent, &names),
        before,
        "every VMM is the same process"
    );
    for n in &names {
        let vm = agent.vm(n);
        assert_eq!(
            (vm["state"].as_str(), vm["restarts"].as_u64()),
            (Some("running"), Some(0)),
            "{vm}"
        );
        // The log from before the restart is still there.
        assert!(agent.log(n).starts_with("PROBE start"));
    }
    // The console works through the new agent.
    let mut console = agent.console(&names[0]);
    console.expect("PROBE tick", LONG);

    // An adopted VMM (not the agent's child) that is killed is reported.
    // SAFETY: kill(2) on a VMM this test started.
    unsafe { libc::kill(before[1] as i32, libc::SIGKILL) };
    let vm = agent.wait_vm(&names[1], LONG, "crashed", |v| v["state"] == "crashed");
    assert_eq!(vm["last_exit"]["outcome"], "killed", "{vm}");
    // And one that is destroyed ends as asked, its exit record read.
    let vm = agent.ok("POST", &format!("/vms/{}/destroy", names[2]), None, 200);
    assert_eq!(
        (vm["state"].as_str(), vm["last_exit"]["outcome"].as_str()),
        (Some("stopped"), Some("api_shutdown"))
    );
    parallel(&names[3..], |n| {
        agent.ok("POST", &format!("/vms/{n}/destroy"), None, 200);
    });
    agent.ok("POST", &format!("/vms/{}/destroy", names[0]), None, 200);
    assert!(node.vmm_pids().is_empty());
}

#[test]
fn a_node_reboot_starts_the_autostart_vms_and_an_agent_restart_does_not() {
    let node = Node::new("autostart");
    let mut agent = node.agent(&[]);
    let spec = |name: &str, autostart: bool| {
        json!({"name": name, "memory_mib": 32, "autostart": autostart,
            "boot": {"kind": "kernel", "kernel": node.probe, "cmdline": "probe.hold"}})
    };
    agent.ok("POST", "/vms", Some(spec("auto", true)), 201);
    agent.ok("POST", "/vms", Some(spec("manual", false)), 201);
    agent.ok("POST", "/vms/manual/start", None, 200);

    // The agent restarts: nothing new starts (auto stays stopped).
    agent.kill9();
    let mut agent = node.agent(&[]);
    agent.wait_vm("manual", LONG, "re-adopted", |v| v["state"] == "running");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(agent.vm("auto")["state"], "stopped");

    // The node reboots: every process gone, the run directory (a tmpfs) empty.
    agent.kill9();
    for pid in node.vmm_pids() {
        // SAFETY: kill(2) on the VMMs of this test's node.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    std::thread::sleep(Duration::from_millis(200));
    std::fs::remove_dir_all(node.run()).unwrap();
    let agent = node.agent(&[]);
    let vm = agent.wait_vm("auto", LONG, "autostarted", |v| v["state"] == "running");
    agent.wait_log("auto", "PROBE done ok", LONG);
    assert_eq!(agent.vm("manual")["state"], "stopped");
    agent.ok("POST", "/vms/auto/destroy", None, 200);
    assert!(vm["pid"].is_i64());
}

/// Autostart runs beside the API after a node's boot. A request on a VM
/// autostart has yet to reach waits for it: the user's start finds it
/// running (409, never a second start), and a stop that follows is final
/// (autostart does not start the VM again behind the user's back).
#[test]
fn requests_during_the_autostart_wait_for_it_and_never_start_a_vm_twice() {
    let node = Node::new("autostart-race");
    let mut agent = node.agent(&[]);
    let names: Vec<String> = (0..10).map(|i| format!("auto{i}")).collect();
    for n in &names {
        let spec = json!({"name": n, "memory_mib": 32, "autostart": true,
            "boot": {"kind": "kernel", "kernel": node.probe, "cmdline": "probe.hold"}});
        agent.ok("POST", "/vms", Some(spec), 201);
    }
    // The node boots: the run directory (a tmpfs) is empty.
    agent.kill9();
    std::fs::remove_dir_all(node.run()).unwrap();
    let agent = node.agent(&[]);
    // Autostart goes in name order: the last VM is reached last.
    let last = names.last().unwrap();
    let (status, body) = agent.call("POST", &format!("/vms/{last}/start"), None);
    assert_eq!(
        (
            status,
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("already running"))
        ),
        (409, true),
        "the start raced the autostart: {body}"
    );
    let vm = agent.ok("POST", &format!("/vms/{last}/destroy"), None, 200);
    assert_eq!(vm["state"], "stopped", "{vm}");
    for n in &names[..names.len() - 1] {
        agent.wait_vm(n, LONG, "autostarted", |v| v["state"] == "running");
    }
    std::thread::sleep(Duration::from_millis(300));
    let vm = agent.vm(last);
    assert_eq!(vm["state"], "stopped", "autostart started it again: {vm}");
    assert_eq!(node.vmm_pids().len(), names.len() - 1);
    parallel(&names[..names.len() - 1], |n| {
        agent.ok("POST", &format!("/vms/{n}/destroy"), None, 200);
    });
}
