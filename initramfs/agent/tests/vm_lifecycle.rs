//! A VM's life through the agent, with the probe guest through /dev/kvm:
//! define, start, shutdown, reboot, destroy, edit, undefine; crashes and
//! guest resets; memory accounting; bad input that must change nothing.

#[path = "vm_common/mod.rs"]
mod common;

use std::time::Duration;

use common::Node;
use serde_json::json;

const LONG: Duration = Duration::from_secs(30);

fn alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn define_start_shutdown_reboot_destroy_edit_undefine() {
    let node = Node::new("life");
    let agent = node.agent(&[]);
    let vm = agent.define_probe(&node, "p1", "probe.hold probe.cad", 64);
    assert_eq!(vm["state"], "stopped");
    let uuid = vm["uuid"].as_str().unwrap().to_string();
    let def_file = node.state().join(format!("vms/{uuid}.json"));
    assert!(def_file.exists());

    let vm = agent.ok("POST", "/vms/p1/start", None, 200);
    assert_eq!(vm["state"], "running");
    let pid = vm["pid"].as_i64().unwrap();
    assert!(alive(pid));
    // The console was attached before the guest ran: its first line is there.
    let log = agent.wait_log("p1", "PROBE done ok", LONG);
    assert!(log.starts_with("PROBE start"), "{log}");

    // Running: no second start, no edit, no undefine.
    let (status, e) = agent.call("POST", "/vms/p1/start", None);
    assert_eq!(
        (status, e["error"].as_str().unwrap()),
        (409, "VM 'p1' is already running")
    );
    let spec = json!({"name": "p1", "boot": {"kind": "kernel", "kernel": node.probe}});
    assert_eq!(agent.call("PUT", "/vms/p1", Some(spec.clone())).0, 409);
    assert_eq!(agent.call("DELETE", "/vms/p1", None).0, 409);

    // Graceful shutdown: Ctrl-Alt-Del, the probe resets, the VMM exits 0.
    let task = agent.ok("POST", "/vms/p1/shutdown?timeout=20", None, 202);
    let task = agent.wait_task(task["id"].as_str().unwrap(), LONG);
    assert_eq!(task["state"], "done", "{task}");
    let log = agent.log("p1");
    if task["result"]["forced"] == false {
        assert!(log.contains("PROBE ctrl-alt-del"), "{log}");
    } else {
        // A VMM without PUT /vm/ctrl-alt-del: stopped hard at once.
        assert!(log.contains("cannot send Ctrl-Alt-Del"), "{task} {log}");
    }
    let vm = agent.vm("p1");
    assert_eq!(vm["state"], "stopped", "{vm}");
    assert_eq!(vm["last_exit"]["requested"], true);
    assert_eq!(vm["restarts"], 0, "a requested stop is never a restart");
    assert!(!alive(pid));

    // Reboot rebuilds the VM inside the same VMM.
    let pid = agent.ok("POST", "/vms/p1/start", None, 200)["pid"]
        .as_i64()
        .unwrap();
    agent.wait_log("p1", "PROBE done ok", LONG);
    let starts_before = agent.log("p1").matches("PROBE start").count();
    agent.ok("POST", "/vms/p1/reboot", None, 200);
    let deadline = std::time::Instant::now() + LONG;
    while agent.log("p1").matches("PROBE start").count() <= starts_before {
        assert!(std::time::Instant::now() < deadline, "no second boot");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(agent.vm("p1")["pid"].as_i64(), Some(pid));

    // Destroy: stopped now, flagged as asked for.
    let vm = agent.ok("POST", "/vms/p1/destroy", None, 200);
    assert_eq!(vm["state"], "stopped", "{vm}");
    assert_eq!(vm["last_exit"]["outcome"], "api_shutdown");
    assert!(!alive(pid));
    assert_eq!(agent.call("POST", "/vms/p1/destroy", None).0, 409);

    // Edit when stopped, and rename.
    let spec = json!({"name": "p2", "memory_mib": 96, "vcpus": 2,
        "boot": {"kind": "kernel", "kernel": node.probe, "cmdline": "probe.hold"},
        "tags": {"tenant": "acme"}});
    let vm = agent.ok("PUT", "/vms/p1", Some(spec), 200);
    assert_eq!(
        (vm["memory_mib"].as_u64(), vm["uuid"].as_str()),
        (Some(96), Some(uuid.as_str()))
    );
    assert_eq!(agent.call("GET", "/vms/p1", None).0, 404);
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&def_file).unwrap()).unwrap();
    assert_eq!(stored["spec"]["tags"]["tenant"], "acme");
    let vm = agent.ok("POST", "/vms/p2/start", None, 200);
    agent.wait_log("p2", "PROBE cpus online=2", LONG);
    agent.ok("POST", "/vms/p2/destroy", None, 200);
    assert!(!alive(vm["pid"].as_i64().unwrap()));

    // Undefine: gone from the API and the state directory.
    assert_eq!(agent.call("DELETE", "/vms/p2", None).0, 204);
    assert_eq!(agent.call("GET", "/vms/p2", None).0, 404);
    assert!(!def_file.exists());
    assert_eq!(agent.ok("GET", "/vms", None, 200), json!([]));
}

#[test]
fn a_guest_that_ignores_ctrl_alt_del_is_stopped_at_the_timeout() {
    let node = Node::new("deaf");
    let agent = node.agent(&[]);
    agent.define_probe(&node, "deaf", "probe.hold", 64);
    agent.ok("POST", "/vms/deaf/start", None, 200);
    agent.wait_log("deaf", "PROBE done ok", LONG);
    let task = agent.ok("POST", "/vms/deaf/shutdown?timeout=2", None, 202);
    let id = task["id"].as_str().unwrap();
    // A second shutdown while one runs is refused.
    assert_eq!(agent.call("POST", "/vms/deaf/shutdown", None).0, 409);
    let task = agent.wait_task(id, LONG);
    assert_eq!(
        (task["state"].as_str(), &task["result"]["forced"]),
        (Some("done"), &json!(true)),
        "{task}"
    );
    assert_eq!(agent.vm("deaf")["state"], "stopped");
}

/// Cancelling a shutdown task stops the waiting; the VM keeps running.
/// (With a VMM that has no Ctrl-Alt-Del the VM is stopped hard at once and
/// there is nothing to cancel: the test then checks that instead.)
#[test]
fn a_cancelled_shutdown_leaves_the_vm_running() {
    let node = Node::new("cancel");
    let agent = node.agent(&[]);
    agent.define_probe(&node, "k", "probe.hold", 64);
    let pid = agent.ok("POST", "/vms/k/start", None, 200)["pid"]
        .as_i64()
        .unwrap();
    agent.wait_log("k", "PROBE done ok", LONG);
    let task = agent.ok("POST", "/vms/k/shutdown?timeout=60", None, 202);
    let id = task["id"].as_str().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    if agent.log("k").contains("cannot send Ctrl-Alt-Del") {
        let t = agent.wait_task(id, LONG);
        assert_eq!(t["result"]["forced"], true, "{t}");
        assert_eq!(agent.call("DELETE", &format!("/tasks/{id}"), None).0, 409);
        return;
    }
    assert_eq!(agent.vm("k")["state"], "shutting_down");
    assert_eq!(agent.call("DELETE", &format!("/tasks/{id}"), None).0, 202);
    let t = agent.wait_task(id, LONG);
    assert_eq!(t["state"], "cancelled", "{t}");
    let vm = agent.vm("k");
    assert_eq!(
        (vm["state"].as_str(), vm["pid"].as_i64()),
        (Some("running"), Some(pid)),
        "{vm}"
    );
    assert!(alive(pid));
    // It can still be stopped afterwards.
    agent.ok("POST", "/vms/k/destroy", None, 200);
}

#[test]
fn a_crash_is_reported_and_restarted_only_when_asked() {
    let node = Node::new("crash");
    let agent = node.agent(&[]);
    agent.define_probe(&node, "c1", "probe.hold", 64);
    let pid = agent.ok("POST", "/vms/c1/start", None, 200)["pid"]
        .as_i64()
        .unwrap();
    agent.wait_log("c1", "PROBE done ok", LONG);
    // SAFETY: kill(2) on the VMM this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let vm = agent.wait_vm("c1", LONG, "crashed", |v| v["state"] == "crashed");
    assert_eq!(vm["last_exit"]["outcome"], "killed", "{vm}");
    assert_eq!(vm["last_exit"]["requested"], false);
    assert!(
        vm["last_exit"]["message"]
            .as_str()
            .unwrap()
            .contains("signal 9"),
        "{vm}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let vm = agent.vm("c1");
    assert_eq!(
        (vm["state"].as_str(), vm["pid"].is_null()),
        (Some("crashed"), true),
        "not restarted: {vm}"
    );
    assert!(agent.log("c1").contains("the VMM ended (killed"));

    // on_crash: restart starts it again.
    let spec = json!({"name": "c1", "memory_mib": 64, "on_crash": "restart",
        "boot": {"kind": "kernel", "kernel": node.probe, "cmdline": "probe.hold"}});
    agent.ok("PUT", "/vms/c1", Some(spec), 200);
    let pid = agent.ok("POST", "/vms/c1/start", None, 200)["pid"]
        .as_i64()
        .unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let vm = agent.wait_vm("c1", LONG, "restarted", |v| {
        v["state"] == "running" && v["pid"].as_i64().is_some_and(|p| p != pid)
    });
    assert_eq!(vm["restarts"], 1, "{vm}");
    agent.ok("POST", "/vms/c1/destroy", None, 200);
}

#[test]
fn a_guest_reset_restarts_or_stops_as_the_vm_says() {
    let node = Node::new("reset");
    let agent = node.agent(&[]);
    // The probe resets the machine once its report is done.
    let spec = json!({"name": "r1", "memory_mib": 64, "on_reboot": "stop",
        "boot": {"kind": "kernel", "kernel": node.probe, "cmdline": "once"}});
    agent.ok("POST", "/vms", Some(spec), 201);
    agent.ok("POST", "/vms/r1/start", None, 200);
    let vm = agent.wait_vm("r1", LONG, "stopped", |v| v["state"] == "stopped");
    assert_eq!(
        (vm["last_exit"]["outcome"].as_str(), vm["restarts"].as_u64()),
        (Some("guest_reset"), Some(0))
    );

    let spec = json!({"name": "r2", "memory_mib": 64,
        "boot": {"kind": "kernel", "kernel": node.probe, "cmdline": "again"}});
    agent.ok("POST", "/vms", Some(spec), 201);
    agent.ok("POST", "/vms/r2/start", None, 200);
    agent.wait_vm("r2", LONG, "restarted twice", |v| {
        v["restarts"].as_u64() >= Some(2)
    });
    // It may be between runs: destroy until it is stopped.
    let deadline = std::time::Instant::now() + LONG;
    while agent.vm("r2")["state"] != "stopped" {
        let _ = agent.call("POST", "/vms/r2/destroy", None);
        assert!(std::time::Instant::now() < deadline);
    }
}

#[test]
fn the_node_refuses_a_vm_it_cannot_hold() {
    let node = Node::new("mem");
    let agent = node.agent(&["--vm-memory-mib", "200"]);
    agent.define_probe(&node, "a", "probe.hold", 128);
    agent.define_probe(&node, "b", "probe.hold", 128);
    agent.ok("POST", "/vms/a/start", None, 200);
    let (status, e) = agent.call("POST", "/vms/b/start", None);
    assert_eq!(status, 503, "{e}");
    let msg = e["error"].as_str().unwrap();
    for part in [
        "'b'",
        "needs 136 MiB",
        "1 running VM(s) hold 136 MiB",
        "use 200 MiB",
        "64 MiB are free",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    assert_eq!(agent.vm("b")["state"], "stopped");
    assert_eq!(node.vmm_pids().len(), 1, "no VMM for b");
    agent.ok("POST", "/vms/a/destroy", None, 200);
    agent.ok("POST", "/vms/b/start", None, 200);
    agent.ok("POST", "/vms/b/destroy", None, 200);
}

#[test]
fn the_console_fans_out_to_every_websocket_client() {
    let node = Node::new("console");
    let agent = node.agent(&[]);
    agent.define_probe(&node, "t", "probe.tick", 64);
    // Clients may attach to a stopped VM and see it boot.
    let mut first = agent.console("t");
    agent.ok("POST", "/vms/t/start", None, 200);
    first.expect("PROBE start", LONG);
    let mut second = agent.console("t");
    first.expect("PROBE tick", LONG);
    second.expect("PROBE tick", LONG);
    agent.ok("POST", "/vms/t/destroy", None, 200);
    first.expect("[vireo: the VMM ended (api_shutdown", LONG);
    let log = agent.log("t");
    assert!(
        log.starts_with("PROBE start") && log.contains("PROBE tick"),
        "{log}"
    );
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let node = Node::new("bad");
    let agent = node.agent(&[]);
    std::fs::write(node.local_pool().join("shared.raw"), vec![0u8; 1 << 20]).unwrap();
    let disk_vm = |name: &str| {
        json!({"name": name, "boot": {"kind": "kernel", "kernel": node.probe},
            "disks": [{"volume": "local/shared.raw"}]})
    };
    agent.ok("POST", "/vms", Some(disk_vm("a")), 201);
    let before = agent.ok("GET", "/vms", None, 200);
    let files = || std::fs::read_dir(node.state().join("vms")).unwrap().count();
    let files_before = files();

    let cases: Vec<(&str, &str, Option<String>, u16, &str)> = vec![
        ("GET", "/vms/nope", None, 404, "no VM named 'nope'"),
        ("POST", "/vms/nope/start", None, 404, "no VM named 'nope'"),
        ("DELETE", "/vms/nope", None, 404, "no VM named 'nope'"),
        ("POST", "/vms", Some("{\"name\": ".into()), 400, "bad JSON body"),
        ("POST", "/vms", Some("{\"name\": \"x\"}".into()), 400, "missing field `boot`"),
        ("POST", "/vms", Some(r#"{"name":"x","boot":{"kind":"kernel","kernel":"/k"},"cpus":2}"#.into()), 400, "unknown field `cpus`"),
        ("POST", "/vms", Some(disk_vm("a").to_string()), 409, "a VM named 'a' already exists"),
        ("POST", "/vms", Some(disk_vm("b").to_string()), 409, "volume 'local/shared.raw' is in use by VM 'a'"),
        ("POST", "/vms", Some(json!({"name": "../x", "boot": {"kind": "kernel", "kernel": node.probe}}).to_string()), 400, "name '../x'"),
        ("POST", "/vms", Some(json!({"name": "x", "vcpus": 0, "boot": {"kind": "kernel", "kernel": node.probe}}).to_string()), 400, "vcpus 0"),
        ("POST", "/vms", Some(json!({"name": "x", "memory_mib": 1, "boot": {"kind": "kernel", "kernel": node.probe}}).to_string()), 400, "memory_mib 1"),
        ("POST", "/vms", Some(json!({"name": "x", "boot": {"kind": "kernel", "kernel": "/no/such/kernel"}}).to_string()), 400, "boot.kernel: no file /no/such/kernel"),
        ("POST", "/vms", Some(json!({"name": "x", "boot": {"kind": "disk"}}).to_string()), 400, "boot.disk 0: the VM has 0 disk(s)"),
        ("POST", "/vms", Some(json!({"name": "x", "boot": {"kind": "kernel", "kernel": node.probe}, "disks": [{"volume": "local/none.raw"}]}).to_string()), 400, "disks[0]: no volume 'local/none.raw'"),
        ("POST", "/vms", Some(json!({"name": "x", "boot": {"kind": "kernel", "kernel": node.probe}, "nics": [{"tap": "t0", "mac": "01:00:00:00:00:01"}]}).to_string()), 400, "multicast"),
        ("POST", "/vms/a/shutdown?timeout=soon", None, 400, "bad query"),
        ("POST", "/vms/a/shutdown", None, 409, "VM 'a' is not running"),
        ("GET", "/vms/a/console", None, 400, "the console is a WebSocket"),
    ];
    for (method, path, body, status, needle) in cases {
        let (got, text) = agent.call_raw(method, path, body.clone());
        let e: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        assert_eq!(got, status, "{method} {path} {body:?}: {text}");
        assert_eq!(e["status"], status);
        assert!(
            e["error"].as_str().unwrap().contains(needle),
            "{method} {path}: want '{needle}' in {text}"
        );
    }
    assert_eq!(agent.ok("GET", "/vms", None, 200), before);
    assert_eq!(files(), files_before);
}
