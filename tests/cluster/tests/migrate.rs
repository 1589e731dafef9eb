//! Live migration between the agents of three nodes (issue 16): a probe VM
//! whose disk is in the directory every node sees runs on node 1 and is
//! moved to node 2 by `vireo vm migrate` run against node 3's agent (the
//! CLI finds the owner). Checked: the guest's disk-writing counter goes on
//! on node 2's console from where it was (no fresh boot), the store names
//! node 2 as the owner (and still does a few steps later), exactly one VMM
//! of the VM exists afterwards (node 2's), node 1 has neither its VMM nor
//! its definition (during the migration two VMMs exist by design: the
//! destination's waits for the VM, which the VMMs' protocol runs on one
//! side only). Then
//! `vireo node drain node2` moves it on to node 1 or 3, its guest going on.
//! The
//! failures first: an unknown node is a 404 with a clear message; a node
//! that cannot take the VM (a VM of its own claims the disk) fails the
//! task with its reason, and the VM runs on at the source, with nothing
//! left on the refusing node; a migration the VMMs fail (node 3's pool of
//! that name holds a disk of another size) leaves the guest writing on at
//! the source and nothing on node 3; a destination told that its source gave up
//! (`DELETE /cluster/incoming/NAME`) stops its waiting VMM and forgets the
//! VM, and the owner refuses that for the VM it runs.
//!
//! Needs root, /dev/kvm, VIREO_VMM and VIREO_PROBE (`make test-cluster`).

use std::time::Duration;

use serde_json::{json, Value};
use vireo_cluster_tests::agents::{vmm_copies, Fencing};
use vireo_cluster_tests::formation::cli;
use vireo_cluster_tests::ha_lab::{Lab, Watch};
use vireo_cluster_tests::wait_until;

const FENCING: Fencing = Fencing {
    watchdog_timeout_ms: 4000,
    margin_ms: 1500,
};
const WAIT: Duration = Duration::from_secs(60);

/// The generations `blk stress gen=N` a console log shows, in order.
fn gens(log: &str) -> Vec<u64> {
    vireo_cluster_tests::ha_lab::counters(log, "blk stress gen=")
}

/// The owner stamp beside mover's image.
fn stamp(lab: &Lab) -> Value {
    let path = lab.c.root().join("shared/.vireo/mover.raw.owner");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Polls task `id` on node `i`'s agent until it ends.
fn finished_task(lab: &Lab, i: usize, id: &str) -> Value {
    wait_until(WAIT, "the migration task to end", || {
        let t = lab.agent(i).ok("GET", &format!("/tasks/{id}"), None, 200)?;
        (t["state"] != "running")
            .then_some(t.clone())
            .ok_or(format!("{t}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()))
    .0
}

/// Migrates `mover` from node 1 to node 3 through the API; the ended task.
fn migrate_to_node3(lab: &Lab) -> Value {
    let body = Some(r#"{"node": "node3"}"#);
    let task = lab
        .agent(0)
        .ok("POST", "/vms/mover/migrate", body, 202)
        .unwrap();
    finished_task(lab, 0, task["id"].as_str().unwrap())
}

#[test]
fn a_running_vm_moves_to_another_node_and_its_guest_goes_on_then_a_drain_moves_it_again() {
    let mut lab = Lab::start(FENCING);
    let namespaces = lab.namespaces();
    let w = lab.watch();
    let uuid = lab.start_seen_by(&w, 0, "mover", 2);

    // An unknown node: refused at once, through node 3 (forwarded).
    let (status, text) = lab
        .agent(2)
        .call("POST", "/vms/mover/migrate", Some(r#"{"node": "nowhere"}"#))
        .unwrap();
    assert!(
        status == 404 && text.contains("no node named 'nowhere'"),
        "{status} {text}"
    );

    // Node 3 cannot take it: a stopped VM there claims the same disk.
    let squatter = json!({
        "name": "squatter", "memory_mib": 32,
        "boot": {"kind": "kernel", "kernel": std::env::var("VIREO_PROBE").unwrap()},
        "disks": [{"volume": "shared/mover.raw"}],
    });
    lab.agent(2)
        .ok("POST", "/vms", Some(&squatter.to_string()), 201)
        .unwrap();
    // Owner stamps: node 3 may not start it while node 1 runs that disk,
    // whatever the store says (it knows nothing of disks): refused, node 1's
    // VM named from the stamp beside the image.
    let (status, text) = lab
        .agent(2)
        .call("POST", "/vms/squatter/start", None)
        .unwrap();
    assert!(
        status == 409 && text.contains("in use by VM 'mover' on node 'node1'"),
        "{status} {text}"
    );
    assert_eq!(stamp(&lab)["node"], "node1");
    let done = migrate_to_node3(&lab);
    let error = done["error"].as_str().unwrap_or_default();
    assert!(
        done["state"] == "failed" && error.contains("node3") && error.contains("in use"),
        "{done}"
    );
    let local = lab.agent(2).ok("GET", "/vms", None, 200).unwrap();
    assert_eq!(local.as_array().map(Vec::len), Some(1), "{local}");
    let (status, text) = lab.agent(2).call("DELETE", "/vms/squatter", None).unwrap();
    assert!((200..300).contains(&status), "{status} {text}");
    let mover = lab.agent(0).ok("GET", "/vms/mover", None, 200).unwrap();
    assert_eq!(mover["state"], "running", "{mover}");
    assert_eq!(vmm_copies(&namespaces, &uuid), vec![0]);

    // A destination whose source gives up drops its half: node 3 asked to
    // take the VM (as a source would ask) runs a waiting VMM for it, and
    // after the abort has neither that VMM nor the definition.
    let mut spec = lab.agent(0).ok("GET", "/vms/mover", None, 200).unwrap();
    let fields = spec.as_object_mut().unwrap();
    let uuid_field = fields.remove("uuid").unwrap();
    for runtime in ["state", "pid", "started_at", "last_exit", "restarts"] {
        fields.remove(runtime);
    }
    let incoming = json!({"uuid": uuid_field, "spec": spec}).to_string();
    let port = lab
        .agent(2)
        .ok("POST", "/cluster/incoming", Some(&incoming), 201)
        .unwrap();
    assert!(port["port"].as_u64().is_some(), "{port}");
    let mut copies = vmm_copies(&namespaces, &uuid);
    copies.sort();
    assert_eq!(copies, vec![0, 2], "a VMM waits on node 3");
    let (status, text) = lab
        .agent(2)
        .call("DELETE", "/cluster/incoming/mover", None)
        .unwrap();
    assert_eq!(status, 204, "{text}");
    wait_until(WAIT, "node 3's waiting VMM to go", || {
        let copies = vmm_copies(&namespaces, &uuid);
        (copies == vec![0])
            .then_some(())
            .ok_or(format!("{copies:?}"))
    })
    .unwrap();
    let local = lab.agent(2).ok("GET", "/vms", None, 200).unwrap();
    assert_eq!(local.as_array().map(Vec::len), Some(0), "{local}");
    // The VM that runs on its owner is no incoming migration to abort.
    let (status, _) = lab
        .agent(0)
        .call("DELETE", "/cluster/incoming/mover", None)
        .unwrap();
    assert_eq!(status, 409);

    // The VMMs fail it: node 3's pool "shared" is another directory, whose
    // mover.raw is of another size. The source runs on, node 3 keeps nothing.
    let elsewhere = lab.c.root().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::File::create(elsewhere.join("mover.raw"))
        .and_then(|f| f.set_len(8 << 20))
        .unwrap();
    let (status, text) = lab.agent(2).call("DELETE", "/pools/shared", None).unwrap();
    assert!((200..300).contains(&status), "{status} {text}");
    let pool = json!({"name": "shared", "kind": "dir", "path": elsewhere}).to_string();
    lab.agent(2).ok("POST", "/pools", Some(&pool), 201).unwrap();
    let done = migrate_to_node3(&lab);
    eprintln!("failed migration: {}", done["error"]);
    assert_eq!(done["state"], "failed", "{done}");
    wait_until(WAIT, "node 3's half VM to go", || {
        let copies = vmm_copies(&namespaces, &uuid);
        let local = lab.agent(2).ok("GET", "/vms", None, 200)?;
        (copies == vec![0] && local.as_array().map(Vec::len) == Some(0))
            .then_some(())
            .ok_or(format!("{copies:?} {local}"))
    })
    .unwrap();
    let mover = lab.agent(0).ok("GET", "/vms/mover", None, 200).unwrap();
    assert_eq!(mover["state"], "running", "{mover}");
    let error = done["error"].as_str().unwrap_or_default();
    assert!(error.contains("runs on here"), "{error}");
    // Its guest writes on at the source.
    let log = lab.agent(0).console_log(&uuid);
    let seen = gens(&std::fs::read_to_string(&log).unwrap()).len();
    wait_until(WAIT, "the guest to write on at node 1", || {
        let now = gens(&std::fs::read_to_string(&log).unwrap_or_default()).len();
        (now > seen + 1)
            .then_some(())
            .ok_or(format!("{now} generations"))
    })
    .unwrap();
    let (status, text) = lab.agent(2).call("DELETE", "/pools/shared", None).unwrap();
    assert!((200..300).contains(&status), "{status} {text}");
    let pool = json!({"name": "shared", "kind": "dir", "path": lab.c.root().join("shared")});
    lab.agent(2)
        .ok("POST", "/pools", Some(&pool.to_string()), 201)
        .unwrap();

    // The move, by the CLI against node 3's agent.
    let before = std::fs::read_to_string(lab.agent(0).console_log(&uuid)).unwrap();
    let last_before = *gens(&before).last().expect("generations on node 1");
    let host = lab.agent(2).addr.to_string();
    let out = cli(
        &lab.c.nodes[2],
        &["vm", "migrate", "mover", "node2", "--json", "--host", &host],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let result: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    eprintln!("migration: {result}");
    assert_eq!(result["node"], "node2", "{result}");
    assert!(result["downtime_ms"].as_f64().is_some(), "{result}");

    // Node 2 runs it, and its guest goes on from where it was.
    lab.wait_running_on(&w, &["mover"], &[1], "mover runs on node 2");
    let after = std::fs::read_to_string(lab.agent(1).console_log(&uuid)).unwrap();
    let there = gens(&after);
    assert!(
        there.first().is_some_and(|&g| g > last_before),
        "node 2's console starts at {:?}, node 1's ended at {last_before}: a fresh boot?",
        there.first()
    );
    assert!(
        there.windows(2).all(|p| p[1] == p[0] + 1),
        "generations skip on node 2: {there:?}"
    );
    assert_eq!(vmm_copies(&namespaces, &uuid), vec![1]);
    let local = lab.agent(0).ok("GET", "/vms", None, 200).unwrap();
    assert_eq!(local.as_array().map(Vec::len), Some(0), "{local}");
    let moved = lab.agent(1).ok("GET", "/vms/mover", None, 200).unwrap();
    assert_eq!(moved["state"], "running", "{moved}");
    // The store names node 2 on every node, and still does a few steps on.
    for i in 0..3 {
        wait_until(WAIT, "the store to name node 2", || {
            let vms = lab.cluster_vms(i)?;
            let node = vms.get("mover").map(|v| v["node"].clone());
            (node == Some(json!("node2")))
                .then_some(())
                .ok_or(format!("{vms:?}"))
        })
        .unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    let vms = lab.cluster_vms(0).unwrap();
    assert_eq!(vms["mover"]["node"], "node2", "{vms:?}");
    assert_eq!(vmm_copies(&namespaces, &uuid), vec![1]);

    // `vireo node drain node2`: the VM goes on to another node, its guest too.
    let before = std::fs::read_to_string(lab.agent(1).console_log(&uuid)).unwrap();
    let last_before = *gens(&before).last().expect("generations on node 2");
    let host = lab.agent(0).addr.to_string();
    let out = cli(
        &lab.c.nodes[0],
        &["node", "drain", "node2", "--json", "--host", &host],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let moved: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    eprintln!("drain: {moved}");
    let to = match moved[0]["node"].as_str() {
        Some("node1") => 0,
        Some("node3") => 2,
        other => panic!("drained to {other:?}: {moved}"),
    };
    lab.wait_running_on(&w, &["mover"], &[to], "mover runs off node 2");
    let after = std::fs::read_to_string(lab.agent(to).console_log(&uuid)).unwrap();
    assert!(
        gens(&after).first().is_some_and(|&g| g > last_before),
        "after the drain: {after}"
    );
    assert_eq!(vmm_copies(&namespaces, &uuid), vec![to]);

    source_agent_killed_mid_migration(&mut lab, &w, &uuid, to);
    // A migrated guest keeps its memory, so its owner stamp (past the 4 MiB
    // it writes) stays its own: no copy, on any node, saw a second writer.
    let (second, _) = lab.second_writers();
    assert!(second.is_empty(), "second writers: {second:?}");
    let disk = std::fs::read(lab.c.root().join("shared/mover.raw")).unwrap();
    assert_eq!(&disk[4 << 20..(4 << 20) + 8], b"VIREOOWN", "no owner stamp");
}

/// The source's agent is killed (`kill -9`, its node and VMM go on) while
/// a bandwidth-capped migration runs from node `from` to the other
/// undrained node: the VMMs finish it on their own, the destination names
/// itself the owner, the source's VMM exits by itself once the VM runs
/// there, and the source's restarted agent forgets the VM. Exactly one
/// copy at the end; the guest goes on from where it was.
fn source_agent_killed_mid_migration(lab: &mut Lab, w: &Watch, uuid: &str, from: usize) {
    let namespaces = lab.namespaces();
    let dest = 2 - from;
    let body = json!({"node": format!("node{}", dest + 1), "bandwidth_mbps": 1}).to_string();
    let task = lab
        .agent(from)
        .ok("POST", "/vms/mover/migrate", Some(&body), 202)
        .unwrap();
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());
    let progress = wait_until(WAIT, "the migration to send its first bytes", || {
        let t = lab.agent(from).ok("GET", &path, None, 200)?;
        (t["state"] == "running" && t["done"].as_u64() > Some(0))
            .then_some(t.clone())
            .ok_or(format!("{t}"))
    })
    .unwrap()
    .0;
    eprintln!("killing node {}'s agent at {progress}", from + 1);
    let before = std::fs::read_to_string(lab.agent(from).console_log(uuid)).unwrap();
    lab.kill_agent(from);
    let last_before = *gens(&before).last().expect("generations at the source");
    // The VM lands; the source's VMM, VM-less, exits by itself: one copy.
    lab.wait_running_on(
        w,
        &["mover"],
        &[dest],
        "mover runs at the destination alone",
    );
    let after = std::fs::read_to_string(lab.agent(dest).console_log(uuid)).unwrap();
    assert!(
        gens(&after).first().is_some_and(|&g| g > last_before),
        "the destination's console starts at {:?}, the source's was at {last_before}",
        gens(&after).first()
    );
    let vmm_log = lab.c.nodes[from]
        .dir
        .join("agent/run/vms")
        .join(uuid)
        .join("vmm.log");
    let said = std::fs::read_to_string(&vmm_log).unwrap_or_default();
    assert!(
        said.contains("nobody stopped this VMM"),
        "the source's VMM did not leave by itself: {said}"
    );
    for i in [1, dest] {
        wait_until(WAIT, "the store to name the destination", || {
            let vms = lab.cluster_vms(i)?;
            let node = vms.get("mover").map(|v| v["node"].clone());
            (node == Some(json!(format!("node{}", dest + 1))))
                .then_some(())
                .ok_or(format!("{vms:?}"))
        })
        .unwrap();
    }
    // The source's agent comes back and adopts the outcome: the VM is not
    // its own any more.
    lab.start_agent(from);
    wait_until(WAIT, "the restarted agent to forget mover", || {
        let local = lab.agent(from).ok("GET", "/vms", None, 200)?;
        (local.as_array().map(Vec::len) == Some(0))
            .then_some(())
            .ok_or(format!("{local}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(vmm_copies(&namespaces, uuid), vec![dest]);
    let vms = lab.cluster_vms(from).unwrap();
    assert_eq!(vms["mover"]["node"], format!("node{}", dest + 1), "{vms:?}");
    assert_eq!(vms["mover"]["state"], "running", "{vms:?}");
    assert_eq!(stamp(lab)["node"], format!("node{}", dest + 1));

    // A stamp whose VMM is gone holds nothing: mover destroyed there, a VM
    // of node `from` on the same disk starts, and the stamp names it.
    let (status, text) = lab
        .agent(dest)
        .call("POST", "/vms/mover/destroy", None)
        .unwrap();
    assert_eq!(status, 200, "{text}");
    let twin = json!({
        "name": "twin", "memory_mib": 32,
        "boot": {"kind": "kernel", "kernel": std::env::var("VIREO_PROBE").unwrap()},
        "disks": [{"volume": "shared/mover.raw"}],
    });
    lab.agent(from)
        .ok("POST", "/vms", Some(&twin.to_string()), 201)
        .unwrap();
    lab.agent(from)
        .ok("POST", "/vms/twin/start", None, 200)
        .unwrap();
    let now = stamp(lab);
    assert!(
        now["node"] == format!("node{}", from + 1) && now["vm"] == "twin",
        "{now}"
    );
}
