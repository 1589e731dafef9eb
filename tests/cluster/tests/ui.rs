//! The web UI in a real browser (Debian's headless Chromium, the agent
//! tests' WebDriver client) against a real three-node cluster of agents
//! with probe VMs: the browser, on this host, reaches node 1's agent in
//! its namespace through a relay (`agents::relay`) and logs in with the
//! cluster's admin token. Every action is clicked in the page; the outcome
//! is judged by the API of the nodes and by which node runs a VMM:
//!
//! - a migration of `roamer` (node 1; its guest dirties and checks 8 MiB of
//!   its memory) to node 2 capped at 1 Mbit/s, cancelled
//!   from the task list: the task ends `cancelled`, the guest goes on at
//!   node 1, node 2 keeps neither a VMM nor a definition;
//! - the migration without cap from the VM's page: node 2 runs it (one VMM,
//!   node 2's), node 1 has nothing of it, the guest's disk-writing counter
//!   goes on from where it was; the page (still node 1's) then offers
//!   node 1 and node 3 as targets;
//! - Drain on node 2's page (node 1's UI): the node table says drained,
//!   both of its VMs (`roamer`, and `sitter` defined there) run on node 1
//!   or 3 with their guests writing, node 2 has no VM; a define there is
//!   refused; Undrain, and the table says it takes VMs again.
//!
//! - the task list of node 1 lists every node's tasks: node 2's two
//!   migrations of the drain, named as node 2's, as node 2 lists them;
//! - `keeper`, a stopped VM of node 3 whose disk is in node 3's own pool
//!   (node 1's own pool has a volume of the same name with other bytes):
//!   its page shows node 3's volume, Download saves node 3's bytes, Back up
//!   makes a backup on node 3; the storage page shows node 3's pool when
//!   node 3 is picked.
//!
//! The browser is logged in as `olga`, an operator only node 1 knows: the
//! other nodes act for her on node 1's word (mutual trust of the nodes).
//!
//! Screenshots in target/test-logs/ui/cluster-*.png. Needs root, /dev/kvm,
//! chromium and chromium-driver, VIREO_VMM and VIREO_PROBE (`make
//! test-cluster`).

#[path = "../../../initramfs/agent/tests/webdriver/mod.rs"]
mod webdriver;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use vireo_cluster_tests::agents::{relay, vmm_copies, Fencing};
use vireo_cluster_tests::formation::cli;
use vireo_cluster_tests::ha_lab::{counters, Lab, Watch};
use vireo_cluster_tests::wait_until;
use webdriver::Browser;

const FENCING: Fencing = Fencing {
    watchdog_timeout_ms: 4000,
    margin_ms: 1500,
};
const WAIT: Duration = Duration::from_secs(60);
/// A drain moves two VMs one after the other.
const DRAIN: Duration = Duration::from_secs(180);

fn shots_dir() -> PathBuf {
    // CARGO_MANIFEST_DIR is tests/cluster; the artifacts sit with the UI tier's.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-logs/ui")
}

/// The console log of `vm` on node `i`, from byte `from` on (all of it if
/// the log is shorter: a new one).
fn console(lab: &Lab, i: usize, vm: &str, from: usize) -> String {
    let uuid = lab.vms.lock().unwrap()[vm].clone();
    let log = std::fs::read(lab.agent(i).console_log(&uuid)).unwrap_or_default();
    let from = if log.len() < from { 0 } else { from };
    String::from_utf8_lossy(&log[from..]).into_owned()
}

/// What each VM's guest counts on its console: `roamer` dirties 8 MiB of
/// its memory at 4 MB/s and checks every page it wrote (so that a capped
/// migration has megabytes to send, and a torn one fails the guest);
/// `sitter` writes its disk.
const ROAMER: &str = "probe.dirty=8:4";
fn marker(vm: &str) -> &'static str {
    match vm {
        "roamer" => "dirty gen=",
        _ => "blk stress gen=",
    }
}

/// The generations after byte `from` of `vm`'s console on node `i`, once
/// there is one.
fn generations(lab: &Lab, i: usize, vm: &str, from: usize) -> (Vec<u64>, String) {
    wait_until(WAIT, "a generation on the console", || {
        let since = console(lab, i, vm, from);
        let gens = counters(&since, marker(vm));
        match gens.is_empty() {
            true => Err(format!("{vm}: no generation on node {} yet", i + 1)),
            false => Ok((gens, since)),
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()))
    .0
}

/// Where a VM's guest was before an action: the last generation on its
/// node's console, and where each node's log of it ends.
struct Mark {
    vm: &'static str,
    last: u64,
    ends: Vec<usize>,
}

fn mark(lab: &Lab, vm: &'static str, on: usize) -> Mark {
    let (gens, _) = generations(lab, on, vm, 0);
    let ends = (0..3).map(|i| console(lab, i, vm, 0).len()).collect();
    Mark {
        vm,
        last: *gens.last().unwrap(),
        ends,
    }
}

/// Node `name`'s row of node 1's node table.
fn node_row(lab: &Lab, name: &str) -> Value {
    let nodes = lab.agent(0).ok("GET", "/cluster/nodes", None, 200).unwrap();
    nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {nodes}"))
}

/// Waits until the VM runs on one of `nodes`, the only node with a VMM of
/// it and its definition, and its guest writes on there from where it was
/// (the generations after the mark go on past its last one, no new boot).
fn runs_only_on(lab: &Lab, w: &Watch, m: &Mark, nodes: &[usize]) -> usize {
    let vm = m.vm;
    wait_until(WAIT, "the VM on its node", || match w.runs_on(vm) {
        Some(n) if nodes.contains(&n) => Ok(()),
        other => Err(format!("{vm} runs on {other:?}, not one of {nodes:?}")),
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let uuid = lab.vms.lock().unwrap()[vm].clone();
    let copies = vmm_copies(&lab.namespaces(), &uuid);
    let [on] = copies[..] else {
        panic!("{vm}: VMMs on {copies:?}")
    };
    for i in 0..3 {
        assert_eq!(
            lab.local_vms(i).contains(&vm.to_string()),
            i == on,
            "{vm} defined on node {}",
            i + 1
        );
    }
    let (gens, since) = generations(lab, on, vm, m.ends[on]);
    assert!(
        gens[0] > m.last && !since.contains("PROBE start") && !since.contains(" fail"),
        "{vm} on node {}: generations {gens:?} after {} (a fresh boot?)",
        on + 1,
        m.last
    );
    on
}

/// `len` bytes of text that say which node's volume they are.
fn volume_bytes(node: &str, len: usize) -> String {
    let mut text = String::with_capacity(len + 32);
    let mut line = 0;
    while text.len() < len {
        text.push_str(&format!("{node} keep.raw line {line:08}\n"));
        line += 1;
    }
    text.truncate(len);
    text
}

/// Puts `bytes` as the raw volume `local/NAME` of node `i`'s own pool.
fn put_local_volume(lab: &Lab, i: usize, name: &str, bytes: &str) {
    let path = format!("/pools/local/volumes/{name}/data?format=raw");
    lab.agent(i).ok("PUT", &path, Some(bytes), 201).unwrap();
}

/// The operator the browser logs in as: a user of node 1 only.
const OLGA: (&str, &str) = ("olga", "olga-operates-1");

/// `keeper`, stopped, on node 3 with its disk in node 3's own pool; node 1
/// has a volume of the same name with other bytes. Returns node 3's bytes.
fn keeper_on_node_3(lab: &Lab) -> String {
    let (on3, on1) = (
        volume_bytes("node3", 1 << 20),
        volume_bytes("node1", 2 << 20),
    );
    put_local_volume(lab, 2, "keep.raw", &on3);
    put_local_volume(lab, 0, "keep.raw", &on1);
    let probe = std::env::var("VIREO_PROBE").unwrap();
    let spec = json!({"name": "keeper", "memory_mib": 32,
        "boot": {"kind": "kernel", "kernel": probe}, "disks": [{"volume": "local/keep.raw"}]});
    lab.agent(2)
        .ok("POST", "/vms", Some(&spec.to_string()), 201)
        .unwrap();
    on3
}

/// The tenant the browser logs in as last: a user of node 1 only, whose
/// one VM, `acme-vm`, is node 3's.
const TESS: (&str, &str) = ("tess", "tess-tenant-1");

fn tenant_vm_on_node_3(lab: &Lab) {
    let tess = json!({"name": TESS.0, "password": TESS.1, "role": "tenant", "tenant": "acme"});
    lab.agent(0)
        .ok("POST", "/auth/users", Some(&tess.to_string()), 201)
        .unwrap();
    let probe = std::env::var("VIREO_PROBE").unwrap();
    let spec = json!({"name": "acme-vm", "memory_mib": 32, "tags": {"tenant": "acme"},
        "boot": {"kind": "kernel", "kernel": probe}});
    lab.agent(2)
        .ok("POST", "/vms", Some(&spec.to_string()), 201)
        .unwrap();
}

/// Picks `node` in the VM page's migrate form, with a cap if given, and submits.
fn migrate_in_page(browser: &Browser, node: &str, cap: Option<&str>) {
    browser.click(&format!("[data-testid=migrate-vm] option[value={node}]"));
    if let Some(cap) = cap {
        browser.type_into(
            "[data-testid=migrate-vm] input[aria-label='bandwidth Mbit/s']",
            cap,
        );
    }
    browser.click("[data-testid=migrate-vm] button[type=submit]");
}

#[test]
fn migrate_cancel_and_drain_in_the_browser() {
    let lab = Lab::start(FENCING);
    let w = lab.watch();
    lab.define_with(0, "roamer", false, ROAMER);
    lab.define(1, "sitter", false);
    lab.agent(0)
        .ok("POST", "/vms/roamer/start", None, 200)
        .unwrap();
    lab.agent(1)
        .ok("POST", "/vms/sitter/start", None, 200)
        .unwrap();
    mark(&lab, "roamer", 0);
    lab.wait_running_on(&w, &["sitter"], &[1], "sitter runs on node 2");
    wait_until(WAIT, "both VMs in node 1's table", || {
        let vms = lab.cluster_vms(0)?;
        let running = |vm: &str| vms.get(vm).is_some_and(|v| v["state"] == "running");
        (running("roamer") && running("sitter"))
            .then_some(())
            .ok_or(format!("{vms:?}"))
    })
    .unwrap();

    let keeper_bytes = keeper_on_node_3(&lab);
    tenant_vm_on_node_3(&lab);
    let olga = json!({"name": OLGA.0, "password": OLGA.1, "role": "operator"});
    lab.agent(0)
        .ok("POST", "/auth/users", Some(&olga.to_string()), 201)
        .unwrap();

    let at = relay(&lab.agent(0).namespace, lab.agent(0).addr).unwrap();
    let ui = |path: &str| format!("http://{at}{path}");
    let browser = Browser::start(1280, 800, &shots_dir());

    // Logged in as olga, whom only node 1 knows.
    browser.goto(&ui("/ui/login"));
    browser.js("localStorage.clear()", json!([]));
    browser.type_into("input[name=user]", OLGA.0);
    browser.type_into("input[name=password]", OLGA.1);
    browser.click("form.login button[type=submit]");
    browser.wait(
        "the VM list",
        "document.querySelector('tr[data-vm=roamer]')",
        WAIT,
    );
    browser.goto(&ui("/ui/"));
    browser.wait(
        "three nodes online",
        "[...document.querySelectorAll('[data-testid=nodes] tr[data-node]')].filter(r => r.innerText.includes('online')).length === 3",
        WAIT,
    );
    browser.screenshot("cluster-overview-1280");

    // A migration capped at 1 Mbit/s, cancelled from the task list.
    browser.goto(&ui("/ui/vms/roamer"));
    migrate_in_page(&browser, "node2", Some("1"));
    let task = wait_until(WAIT, "the migration to send bytes", || {
        let tasks = lab.agent(0).ok("GET", "/tasks", None, 200)?;
        tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| {
                t["kind"] == "vm-migrate" && t["state"] == "running" && t["done"].as_u64() > Some(0)
            })
            .cloned()
            .ok_or(format!("{tasks}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()))
    .0;
    let id = task["id"].as_str().unwrap().to_string();
    let before = mark(&lab, "roamer", 0);
    browser.goto(&ui("/ui/tasks"));
    let row = format!("[data-testid=tasks] tr[data-task={id:?}]");
    browser.click_text(&row, "Cancel");
    browser.wait(
        "the task cancelled in the list",
        &format!("document.querySelector('{row} .badge').textContent === 'cancelled'"),
        WAIT,
    );
    browser.screenshot("cluster-task-cancelled-1280");
    let ended = lab
        .agent(0)
        .ok("GET", &format!("/tasks/{id}"), None, 200)
        .unwrap();
    assert_eq!(ended["state"], "cancelled", "{ended}");
    runs_only_on(&lab, &w, &before, &[0]);
    assert!(
        lab.local_vms(1) == ["sitter"],
        "node 2 keeps a half of roamer"
    );

    // The migration to node 2 from the VM's page, without cap.
    let before = mark(&lab, "roamer", 0);
    browser.goto(&ui("/ui/vms/roamer"));
    migrate_in_page(&browser, "node2", None);
    browser.action_done("Migrate to node2", WAIT);
    runs_only_on(&lab, &w, &before, &[1]);
    assert_eq!(
        lab.agent(1).ok("GET", "/vms/roamer", None, 200).unwrap()["state"],
        "running"
    );
    // Node 1's page of it (forwarded to node 2) offers the other two nodes.
    let targets = browser.wait(
        "node 1 and node 3 as targets",
        "(o => o.join() === 'node1,node3' && o)([...document.querySelectorAll('[data-testid=migrate-vm] select[aria-label=\"target node\"] option')].map(o => o.value))",
        WAIT,
    );
    assert_eq!(targets, json!(["node1", "node3"]));
    browser.screenshot("cluster-vm-migrated-1280");

    // Drain node 2 from its page: both its VMs go to node 1 or 3.
    let (roamer, sitter) = (mark(&lab, "roamer", 1), mark(&lab, "sitter", 1));
    browser.goto(&ui("/ui/nodes/node2"));
    browser.wait(
        "node 2's two VMs",
        "document.querySelectorAll('[data-testid=node-vms] tr[data-vm]').length === 2",
        WAIT,
    );
    browser.click_text("[data-testid=node-actions]", "Drain");
    browser.click_text("[data-testid=node-actions]", "Really drain?");
    browser.action_done("Drain node2", DRAIN);
    assert_eq!(node_row(&lab, "node2")["drained"], true);
    runs_only_on(&lab, &w, &roamer, &[0, 2]);
    runs_only_on(&lab, &w, &sitter, &[0, 2]);
    assert!(lab.local_vms(1).is_empty(), "node 2 keeps VMs");
    browser.wait(
        "the page says drained, no VMs",
        "document.querySelector('[data-testid=drained]') && !document.querySelector('[data-testid=node-vms]')",
        WAIT,
    );
    browser.screenshot("cluster-node-drained-1280");
    let probe = std::env::var("VIREO_PROBE").unwrap();
    let spec =
        json!({"name": "late", "memory_mib": 32, "boot": {"kind": "kernel", "kernel": probe}});
    let (status, text) = lab
        .agent(1)
        .call("POST", "/vms", Some(&spec.to_string()))
        .unwrap();
    assert!(status == 409 && text.contains("drained"), "{status} {text}");

    // Undrain: it takes VMs again.
    browser.click_text("[data-testid=node-actions]", "Undrain");
    browser.action_done("Undrain node2", WAIT);
    assert_eq!(node_row(&lab, "node2")["drained"], false);
    browser.wait(
        "no drained badge",
        "!document.querySelector('[data-testid=drained]')",
        WAIT,
    );
    browser.goto(&ui("/ui/"));
    browser.find("[data-testid=nodes] tr[data-node=node2]");
    std::thread::sleep(Duration::from_millis(300));
    browser.screenshot("cluster-overview-after-1280");

    every_nodes_tasks_in_the_list(&lab, &browser, &ui("/ui/tasks"));
    another_nodes_vm_and_storage(&lab, &browser, &ui, &keeper_bytes);
    browser.resize(390, 844);
    browser.goto(&ui("/ui/nodes/node2"));
    browser.find("[data-testid=node-actions] button");
    browser.screenshot("cluster-node-phone");
    a_tenant_sees_its_vm_on_another_node(&browser, &ui);
}

/// Node 1's task list holds node 2's migrations of the drain, named as node
/// 2's, as many as node 2 itself lists.
fn every_nodes_tasks_in_the_list(lab: &Lab, browser: &Browser, page: &str) {
    let tasks = lab.agent(1).ok("GET", "/tasks", None, 200).unwrap();
    let moved = |t: &&Value| t["kind"] == "vm-migrate" && t["state"] == "done";
    let on_node2 = tasks.as_array().unwrap().iter().filter(moved).count();
    assert!(on_node2 >= 2, "node 2's tasks: {tasks}");
    browser.goto(page);
    let listed = browser.wait(
        "node 2's migrations in node 1's list",
        &format!("(n => n === {on_node2} && n)([...document.querySelectorAll('[data-testid=tasks] tr[data-node=node2]')].filter(r => r.innerText.includes('vm-migrate') && r.querySelector('.badge').textContent === 'done').length)"),
        WAIT,
    );
    assert_eq!(listed, json!(on_node2));
    browser.screenshot("cluster-tasks-1280");
    // The CLI's view of the same: `vireo task list --all` on node 1.
    let host = format!("http://{}", lab.agent(0).addr);
    let args = ["task", "list", "--all", "--json", "--host", &host];
    let out = cli(&lab.c.nodes[0], &args).unwrap_or_else(|e| panic!("{e}"));
    let all: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let by_node2 = all["tasks"].as_array().unwrap().iter();
    let by_node2 = by_node2
        .filter(|t| t["node"] == "node2" && moved(t))
        .count();
    assert_eq!(by_node2, on_node2, "{all}");
    assert_eq!(all["unanswered"], json!([]), "{all}");
}

/// `keeper`'s page on node 1 shows node 3's volume, downloads node 3's
/// bytes and backs the VM up on node 3; the storage page shows node 3's
/// pool when node 3 is picked.
fn another_nodes_vm_and_storage(
    lab: &Lab,
    browser: &Browser,
    ui: &dyn Fn(&str) -> String,
    bytes: &str,
) {
    browser.goto(&ui("/ui/vms/keeper"));
    let size_of_keep = "(e => e && e.innerText.includes('local/keep.raw') && e.innerText.includes('1.0 MiB'))(document.querySelector('[data-testid=disks]'))";
    browser.wait("keeper's disk as node 3 has it", size_of_keep, WAIT);
    browser.click_text("[data-testid=disks]", "Download");
    browser.action_done("Download", WAIT);
    let got = browser.downloaded("keep.raw.raw", WAIT);
    assert!(
        got == bytes.as_bytes(),
        "downloaded {} bytes, not node 3's {}: {:?}…",
        got.len(),
        bytes.len(),
        String::from_utf8_lossy(&got[..got.len().min(40)])
    );
    browser.click_text("[data-testid=vm-actions]", "Back up");
    browser.action_done("Back up to", WAIT);
    let backups = ["local", "shared"].map(|pool| {
        let path = format!("/pools/{pool}/backups?vm=keeper");
        lab.agent(2).ok("GET", &path, None, 200).unwrap()
    });
    let made = backups
        .iter()
        .map(|b| b.as_array().unwrap().len())
        .sum::<usize>();
    assert_eq!(made, 1, "node 3's backups of keeper: {backups:?}");
    browser.find("[data-testid=vm-backups] tr td");
    browser.screenshot("cluster-vm-on-node3-1280");

    browser.goto(&ui("/ui/storage"));
    browser.find("[data-testid=storage-node]");
    browser.js(
        "const s = document.querySelector('[data-testid=storage-node]'); s.value = 'node3'; s.dispatchEvent(new Event('change'))",
        json!([]),
    );
    let keep_row = "[...document.querySelectorAll('[data-testid=volumes-local] tr')].find(r => r.innerText.startsWith('keep.raw'))";
    browser.wait(
        "node 3's keep.raw in the storage page",
        &format!("(r => r && r.children[2].innerText === '1.0 MiB')({keep_row})"),
        WAIT,
    );
    browser.screenshot("cluster-storage-node3-1280");
}

/// `tess`, a tenant only node 1 knows, logged in there: the VM list holds
/// her one VM, node 3's, and no other; its page shows it; another's VM
/// (`keeper`, node 3's too) is an error page saying 403, as node 3 judged.
fn a_tenant_sees_its_vm_on_another_node(browser: &Browser, ui: &dyn Fn(&str) -> String) {
    browser.resize(1280, 800);
    browser.goto(&ui("/ui/login"));
    browser.js("localStorage.clear()", json!([]));
    browser.goto(&ui("/ui/login"));
    browser.type_into("input[name=user]", TESS.0);
    browser.type_into("input[name=password]", TESS.1);
    browser.click("form.login button[type=submit]");
    let rows = browser.wait(
        "the tenant's VM list",
        "(r => r.length && r)([...document.querySelectorAll('[data-testid=vm-table] tr[data-vm]')].map(r => r.innerText.replace(/\\s+/g, ' ').trim()))",
        WAIT,
    );
    let rows: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        rows.len() == 1 && rows[0].starts_with("acme-vm ") && rows[0].ends_with("node3"),
        "{rows:?}"
    );
    browser.screenshot("cluster-tenant-vms-1280");
    browser.goto(&ui("/ui/vms/acme-vm"));
    browser.wait(
        "the tenant's VM page",
        "(e => e && e.innerText.includes('tenant=acme'))(document.querySelector('dl.details'))",
        WAIT,
    );
    browser.goto(&ui("/ui/vms/keeper"));
    let error = browser.wait(
        "another's VM refused",
        "(e => e && e.innerText.includes('HTTP 403') && e.innerText)(document.querySelector('[data-testid=error-page]'))",
        WAIT,
    );
    assert!(error.as_str().unwrap().contains("acme"), "{error}");
}
