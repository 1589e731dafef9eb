//! The web UI in a real browser (Debian's headless Chromium through
//! chromedriver) against the agent as a process with probe VMs: log in,
//! create a VM from a template, start it and read the probe on its console,
//! shut it down, snapshot and revert, back up and restore (each judged by
//! the probe reading its disk back), the graphs' data points, and every
//! page at 1280×800 and at phone width, screenshots kept in
//! target/test-logs/ui/. `vm_list_page_load` (ignored; `make bench-ui`)
//! times the VM list with 200 VMs.

mod net_common;
mod vm_common;
mod webdriver;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use net_common::Lab;
use serde_json::{json, Value};
use vm_common::{Agent, Node};
use webdriver::Browser;

const LONG: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;
const ADMIN_PASSWORD: &str = "correct horse battery";

fn shots_dir() -> PathBuf {
    // CARGO_MANIFEST_DIR is initramfs/agent; the artifacts sit with the tiers' logs.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-logs/ui")
}

/// The console output of the VM's newest run (after its last "PROBE start").
fn last_run(agent: &Agent, vm: &str) -> String {
    let log = agent.log(vm);
    log.rfind("PROBE start")
        .map_or(log.clone(), |i| log[i..].to_string())
}

/// Boots `vm` once with `cmdline` (the probe ends and the VM stops) and
/// returns that run's console output.
fn boot_once(agent: &Agent, vm: &str, cmdline: &str) -> String {
    let mut spec = agent.vm(vm);
    for k in [
        "uuid",
        "state",
        "pid",
        "started_at",
        "restarts",
        "last_exit",
    ] {
        spec.as_object_mut().unwrap().remove(k);
    }
    spec["boot"]["cmdline"] = json!(cmdline);
    agent.ok("PUT", &format!("/vms/{vm}"), Some(spec), 200);
    let before = agent.vm(vm)["last_exit"]["at"].clone();
    agent.ok("POST", &format!("/vms/{vm}/start"), None, 200);
    agent.wait_vm(vm, LONG, "stopped after one run", |v| {
        v["state"] == "stopped" && v["last_exit"]["at"] != before
    });
    agent.wait_log(vm, "PROBE done", LONG);
    last_run(agent, vm)
}

/// Boots `vm` reading its disk back: it must hold the template's pattern 41.
fn reads_pattern_41(agent: &Agent, vm: &str, when: &str) {
    let run = boot_once(agent, vm, "probe.blk=read:41:4");
    assert!(
        run.contains("blk read") && run.contains("PROBE done ok"),
        "{when}:\n{run}"
    );
}

/// A template the UI clones: the probe writing pattern 41 on its disk, then
/// ticking until Ctrl-Alt-Del; a reset stops it.
fn make_template(agent: &Agent, node: &Node) {
    agent.ok(
        "POST",
        "/pools/local/volumes",
        Some(json!({"name": "tpl.qcow2", "format": "qcow2", "size": 8 * MIB})),
        201,
    );
    agent.ok("POST", "/vms", Some(json!({
        "name": "tpl", "memory_mib": 64, "on_reboot": "stop",
        "boot": {"kind": "kernel", "kernel": node.probe, "cmdline": "probe.blk=write:41:4 probe.tick probe.cad"},
        "disks": [{"volume": "local/tpl.qcow2"}],
    })), 201);
    agent.ok("POST", "/templates", Some(json!({"vm": "tpl"})), 200);
}

/// The agent with a known admin password (the browser logs in with it).
fn agent_with_password(node: &Node, extra: &[&str]) -> Agent {
    let file = node.dir.join("admin-password");
    std::fs::write(&file, format!("{ADMIN_PASSWORD}\n")).unwrap();
    let mut args = vec!["--admin-password-file", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    node.agent(&args)
}

/// Logs in through the login page; waits for the VM list.
fn log_in(browser: &Browser, agent: &Agent, user: &str, password: &str) {
    browser.goto(&format!("{}/ui/login", agent.base));
    browser.js("localStorage.clear()", json!([]));
    browser.type_into("input[name=user]", user);
    browser.type_into("input[name=password]", password);
    browser.click("form.login button[type=submit]");
    browser.wait(
        "the VM list after login",
        "location.pathname === '/ui/vms' && document.querySelector('[data-testid=vm-table]')",
        LONG,
    );
}

/// Types each (field label, text) into the form `data-testid=FORM`.
fn fill_in(browser: &Browser, form: &str, fields: &[(&str, &str)]) {
    for (label, text) in fields {
        browser.type_into(
            &format!("[data-testid={form}] input[aria-label='{label}']"),
            text,
        );
    }
}

/// The VMs listed (rows with `data-vm`) under `scope`, sorted.
fn vm_rows(browser: &Browser, scope: &str) -> Value {
    browser.js(
        "return [...document.querySelectorAll(arguments[0] + ' tr[data-vm]')].map(r => r.dataset.vm).sort()",
        json!([scope]),
    )
}

/// The guest's view of a disk image, as qemu-img converts it to raw.
fn qemu_img_raw(image: &Path, scratch: &Path) -> Vec<u8> {
    let out = scratch.join("qemu-img.raw");
    let status = std::process::Command::new("qemu-img")
        .args(["convert", "-U", "-O", "raw"])
        .arg(image)
        .arg(&out)
        .status()
        .expect("qemu-img runs");
    assert!(status.success());
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_file(out).unwrap();
    bytes
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn action_done(browser: &Browser, label: &str) {
    browser.action_done(label, LONG);
}

#[test]
fn the_ui_drives_a_vm_through_its_life() {
    let node = Node::new("ui");
    let agent = agent_with_password(&node, &["--metrics-interval", "1"]);
    make_template(&agent, &node);
    agent.ok(
        "POST",
        "/pools/local/volumes",
        Some(json!({"name": "extra.qcow2", "format": "qcow2", "size": MIB})),
        201,
    );
    let browser = Browser::start(1280, 800, &shots_dir());
    let ui = |path: &str| format!("{}{path}", agent.base);

    // Any page sends a stranger to the login page; a wrong password is refused there.
    browser.goto(&ui("/ui/vms"));
    browser.find("form.login");
    browser.type_into("input[name=user]", "admin");
    browser.type_into("input[name=password]", "wrong");
    browser.click("form.login button[type=submit]");
    browser.wait("the refusal", "document.querySelector('form.login .error-text').textContent.includes('Wrong user name or password')", LONG);
    browser.screenshot("login-1280");
    browser.type_into("input[name=password]", ADMIN_PASSWORD);
    browser.click("form.login button[type=submit]");
    browser.wait(
        "the VM list",
        "document.querySelector('tr[data-vm=tpl]')",
        LONG,
    );
    assert!(browser.text("tr[data-vm=tpl]").contains("template"));
    assert_eq!(
        browser.js("return location.pathname", json!([])),
        "/ui/vms",
        "back to the page asked for"
    );

    // A VM from the template.
    browser.type_into("[data-testid=create-vm] input[name=name]", "web");
    browser.click("[data-testid=create-vm] button[type=submit]");
    browser.wait("the new VM's page", "location.pathname === '/ui/vms/web' && document.querySelector('[data-testid=vm-actions] button')", LONG);
    let web = agent.vm("web");
    assert_eq!(web["state"], "stopped");
    assert_ne!(web["disks"][0]["volume"], "local/tpl.qcow2", "{web}");

    // Started from the page: the console shows the probe's lines as they come.
    browser.click_text("[data-testid=vm-actions]", "Start");
    let console = browser.wait("the probe on the console",
        "(t => t.includes('PROBE tick') && t)(document.querySelector('[data-testid=console]').textContent)", LONG);
    let console = console.as_str().unwrap();
    assert!(
        console.contains("PROBE start") && console.contains("blk write"),
        "{console}"
    );
    assert_eq!(agent.vm("web")["state"], "running");
    // A fresh page replays the log and attaches in one step: the boot's
    // lines are there once, and the ticks keep coming after them.
    browser.goto(&ui("/ui/vms/web"));
    let replayed = browser.wait("the replayed console",
        "(t => t.includes('blk write') && t)(document.querySelector('[data-testid=console]').textContent)", LONG);
    let replayed = replayed.as_str().unwrap();
    assert_eq!(replayed.matches("PROBE start").count(), 1, "{replayed}");
    let ticks = replayed.matches("PROBE tick").count();
    browser.wait("live ticks after the replay",
        &format!("document.querySelector('[data-testid=console]').textContent.split('PROBE tick').length - 1 > {ticks}"), LONG);
    browser.wait("a VM graph with points", "document.querySelector('figure.chart[data-points]') && +document.querySelector('figure.chart').dataset.points >= 2", LONG);
    browser.screenshot("vm-running-1280");

    // Shut down: the probe answers Ctrl-Alt-Del and the VM stops.
    browser.click_text("[data-testid=vm-actions]", "Shut down");
    action_done(&browser, "Shutdown");
    let stopped = agent.wait_vm("web", LONG, "stopped", |v| v["state"] == "stopped");
    assert_eq!(stopped["last_exit"]["outcome"], "guest_reset", "{stopped}");
    assert!(agent.log("web").contains("PROBE ctrl-alt-del"));
    browser.wait(
        "the page shows it stopped",
        "document.querySelector('.page-head .badge').textContent === 'stopped'",
        LONG,
    );

    // Snapshot, a later write, revert: the disk reads pattern 41 again.
    browser.click_text(".actions", "Take snapshot");
    action_done(&browser, "Snapshot");
    let volume = web["disks"][0]["volume"].as_str().unwrap().to_string();
    let vol_path = format!("/pools/local/volumes/{}", volume.split('/').nth(1).unwrap());
    let vol = agent.ok("GET", &vol_path, None, 200);
    assert_eq!(vol["snapshots"].as_array().unwrap().len(), 1, "{vol}");
    assert!(boot_once(&agent, "web", "probe.blk=write:42:4").contains("PROBE done ok"));
    browser.goto(&ui("/ui/vms/web"));
    browser.click_text(".actions", "Revert to newest snapshot");
    browser.click_text(".actions", "Really revert to newest snapshot?");
    action_done(&browser, "Revert");
    reads_pattern_41(&agent, "web", "after revert");

    // Back up, a later write, restore: pattern 41 again.
    browser.goto(&ui("/ui/vms/web"));
    browser.click_text("[data-testid=vm-actions]", "Back up");
    action_done(&browser, "Back up to local");
    let backups = agent.ok("GET", "/pools/local/backups?vm=web", None, 200);
    assert_eq!(backups.as_array().unwrap().len(), 1, "{backups}");
    assert!(boot_once(&agent, "web", "probe.blk=write:43:4").contains("PROBE done ok"));
    browser.goto(&ui("/ui/vms/web"));
    browser.wait(
        "the backup listed",
        "document.querySelector('[data-testid=vm-backups] button')",
        LONG,
    );
    browser.screenshot("vm-1280");
    browser.click_text("[data-testid=vm-backups]", "Restore");
    browser.click_text("[data-testid=vm-backups]", "Really restore?");
    action_done(&browser, "Restore");
    reads_pattern_41(&agent, "web", "after restore");

    // Edit the stopped VM; clone it by copying its disk: the copy reads pattern 41.
    browser.goto(&ui("/ui/vms/web"));
    browser.type_into("[data-testid=edit-vm] input[aria-label='memory MiB']", "96");
    browser.click_text("[data-testid=edit-vm]", "Add disk");
    browser.type_into(
        "[data-testid=edit-disks] > div:nth-child(2) input[aria-label='disk volume']",
        "local/extra.qcow2",
    );
    browser.click("[data-testid=save-vm]");
    action_done(&browser, "Edit");
    let edited = agent.vm("web");
    assert_eq!(edited["memory_mib"], 96);
    assert_eq!(
        edited["disks"][1]["volume"], "local/extra.qcow2",
        "{edited}"
    );
    browser.goto(&ui("/ui/vms/web"));
    browser.find("[data-testid=edit-disks] > div:nth-child(2) button.danger");
    browser.screenshot("vm-edit-1280");
    browser.click("[data-testid=edit-disks] > div:nth-child(2) button.danger");
    browser.click("[data-testid=save-vm]");
    action_done(&browser, "Edit");
    assert_eq!(agent.vm("web")["disks"].as_array().unwrap().len(), 1);

    // Its disk downloaded from the page, streamed by Chromium into its
    // download directory: the guest's view, 8 MiB, the very bytes qemu-img
    // reads from the volume (the template's pattern, not all zeros).
    browser.click_text("[data-testid=disks]", "Download");
    action_done(&browser, "Download");
    let got = browser.downloaded("web-disk0.qcow2.raw", LONG);
    assert_eq!(got.len() as u64, 8 * MIB);
    assert!(got.iter().any(|&b| b != 0), "the download is all zeros");
    let volume = node.local_pool().join("web-disk0.qcow2");
    assert_eq!(sha256(&got), sha256(&qemu_img_raw(&volume, &node.dir)));
    browser.type_into("input[aria-label='clone name']", "web2");
    browser.click_text(".actions", "Clone");
    browser.wait("the clone's page", "location.pathname === '/ui/vms/web2' && document.querySelector('[data-testid=vm-actions] button')", LONG);
    let web2 = agent.vm("web2");
    assert_eq!(
        web2["disks"][0]["volume"], "local/web2-web-disk0.qcow2",
        "{web2}"
    );
    reads_pattern_41(&agent, "web2", "the clone");

    // An image uploaded from the storage page, its progress shown: the
    // pool holds the very bytes.
    let image: Vec<u8> = (0..3 * MIB as usize).map(|i| (i * 7 % 251) as u8).collect();
    let image_path = node.dir.join("upload.img");
    std::fs::write(&image_path, &image).unwrap();
    browser.goto(&ui("/ui/storage"));
    browser.choose_file("[data-testid=upload-local] input[type=file]", &image_path);
    browser.type_into(
        "[data-testid=upload-local] input[aria-label='upload as']",
        "up.raw",
    );
    browser.click_text("[data-testid=upload-local]", "Upload");
    action_done(&browser, "Upload up.raw");
    let bar = browser.js("const b = document.querySelector('[data-testid=upload-progress]'); b.scrollIntoView(); return [b.hidden, b.value]", json!([]));
    assert_eq!(bar, json!([false, 100]), "the progress bar at the end");
    browser.screenshot("storage-upload-1280");
    assert_eq!(
        std::fs::read(node.local_pool().join("up.raw")).unwrap(),
        image
    );
    let up = agent.ok("GET", "/pools/local/volumes/up.raw", None, 200);
    assert_eq!(up["virtual_size"], 3 * MIB, "{up}");
    browser.find("[data-testid=volumes-local] tr td");
    assert!(browser
        .text("[data-testid=volumes-local]")
        .contains("up.raw"));

    // The overview's node table: this node alone, with its disk and VMs;
    // its page lists its VMs, and draining needs another node.
    browser.goto(&ui("/ui/"));
    browser.wait(
        "one node",
        "document.querySelectorAll('[data-testid=nodes] tr[data-node]').length === 1",
        LONG,
    );
    let row = browser.text("[data-testid=nodes] tr[data-node]");
    assert!(
        row.contains("online") && row.contains("running /") && row.matches(" of ").count() >= 2,
        "{row}"
    );
    browser.click("[data-testid=nodes] tr[data-node] a");
    browser.wait("the node's page", "location.pathname.startsWith('/ui/nodes/') && document.querySelector('[data-testid=node-vms] tr[data-vm=web2]')", LONG);
    assert_eq!(
        vm_rows(&browser, "[data-testid=node-vms]"),
        json!(["tpl", "web", "web2"])
    );
    assert_eq!(
        browser.js(
            "return document.querySelector('[data-testid=node-actions] button').disabled",
            json!([])
        ),
        json!(true)
    );
    let node_page = browser.js("return location.pathname", json!([]));
    let node_page = node_page.as_str().unwrap().to_string();

    // The node's graphs have points; every page at both widths.
    browser.goto(&ui("/ui/"));
    let points = browser.wait("node graphs with points",
        "(n => n >= 3 && n)(Math.min(...[...document.querySelectorAll('figure.chart')].map(f => +f.dataset.points)))", LONG);
    assert!(points.as_u64().unwrap() >= 3);
    let lines = browser.js(
        "return document.querySelectorAll('figure.chart polyline').length",
        json!([]),
    );
    assert!(lines.as_u64().unwrap() >= 6, "{lines}");
    let pages = [
        ("overview", "/ui/", "[data-testid=nodes]"),
        ("vms", "/ui/vms", "[data-testid=vm-table]"),
        ("vm", "/ui/vms/web", "[data-testid=console]"),
        ("node", node_page.as_str(), "[data-testid=node-vms]"),
        ("storage", "/ui/storage", "[data-testid=pools]"),
        ("networks", "/ui/networks", "[data-testid=networks]"),
        ("backups", "/ui/backups", "[data-testid=backups] tr"),
        ("tasks", "/ui/tasks", "[data-testid=tasks]"),
    ];
    for (width, height, label) in [(1280, 800, "1280"), (390, 844, "phone")] {
        browser.resize(width, height);
        for (name, path, ready) in pages {
            browser.goto(&ui(path));
            browser.find(ready);
            std::thread::sleep(Duration::from_millis(300));
            browser.screenshot(&format!("{name}-{label}"));
        }
    }
    let tasks = browser.text("[data-testid=tasks]");
    assert!(
        tasks.contains("backup") && tasks.contains("done"),
        "{tasks}"
    );

    // A path that is no page gets the error page.
    browser.goto(&ui("/ui/no/such/page"));
    browser.find("[data-testid=error-page]");
    browser.goto(&ui("/ui/vms/nobody"));
    browser.wait(
        "the error page of a VM that is not there",
        "(e => e && e.innerText.includes(\"no VM named 'nobody'\"))(document.querySelector('[data-testid=error-page]'))",
        LONG,
    );
}

/// A tenant's login lists only its VMs; another tenant's VM page is an
/// error page; the admin sees every VM.
#[test]
fn a_tenant_sees_only_its_vms() {
    let node = Node::new("ui-tenant");
    let agent = agent_with_password(&node, &[]);
    for (vm, tenant) in [
        ("acme-web", "acme"),
        ("acme-db", "acme"),
        ("globex-web", "globex"),
    ] {
        agent.ok(
            "POST",
            "/vms",
            Some(json!({
                "name": vm, "memory_mib": 64, "tags": {"tenant": tenant},
                "boot": {"kind": "kernel", "kernel": node.probe},
            })),
            201,
        );
    }
    agent.ok("POST", "/auth/users", Some(json!({"name": "alice", "password": "alice's secret", "role": "tenant", "tenant": "acme"})), 201);
    let browser = Browser::start(1280, 800, &shots_dir());
    log_in(&browser, &agent, "alice", "alice's secret");
    browser.wait(
        "acme's VMs",
        "document.querySelectorAll('tr[data-vm]').length === 2",
        LONG,
    );
    assert_eq!(vm_rows(&browser, "main"), json!(["acme-db", "acme-web"]));
    assert!(browser.text("[data-testid=user]").contains("acme"));
    browser.screenshot("tenant-vms-1280");
    browser.goto(&format!("{}/ui/vms/globex-web", agent.base));
    browser.find("[data-testid=error-page]");
    let error = browser.text("[data-testid=error-page]");
    assert!(
        error.contains("Not allowed") && error.contains("HTTP 403"),
        "{error}"
    );
    browser.screenshot("tenant-error-1280");
    // No download ticket for a volume that is not hers: refused when asked.
    agent.ok(
        "POST",
        "/pools/local/volumes",
        Some(json!({"name": "ops.raw", "format": "raw", "size": MIB})),
        201,
    );
    let status = browser.js(
        "return fetch('/auth/download-ticket', {method: 'POST', headers: {Authorization: 'Bearer ' + \
         localStorage.getItem('vireo.token'), 'content-type': 'application/json'}, \
         body: JSON.stringify({path: '/pools/local/volumes/ops.raw/data'})}).then(r => r.status);",
        json!([]),
    );
    assert_eq!(status, 403);
    browser.goto(&format!("{}/ui/vms/acme-web", agent.base));
    browser.find("[data-testid=console]");
    // The overview and the node's page count and list her VMs only.
    browser.goto(&format!("{}/ui/", agent.base));
    browser.find("[data-testid=nodes] tr[data-node]");
    let row = browser.text("[data-testid=nodes] tr[data-node]");
    assert!(row.contains("0 running / 2"), "{row}");
    browser.click("[data-testid=nodes] tr[data-node] a");
    browser.wait(
        "her VMs on the node's page",
        "document.querySelectorAll('[data-testid=node-vms] tr[data-vm]').length === 2",
        LONG,
    );
    assert_eq!(
        vm_rows(&browser, "[data-testid=node-vms]"),
        json!(["acme-db", "acme-web"])
    );
    browser.screenshot("tenant-node-1280");
    log_in(&browser, &agent, "admin", ADMIN_PASSWORD);
    browser.wait(
        "every VM for the admin",
        "document.querySelectorAll('tr[data-vm]').length === 3",
        LONG,
    );
    a_script_that_fails_to_load_is_said(&browser, &agent);
}

/// One of the UI's scripts blocked in the browser (as a dropped connection
/// would lose it): the page reloads once by itself, then says it did not
/// load; "Try again" with the script back brings the page.
fn a_script_that_fails_to_load_is_said(browser: &Browser, agent: &Agent) {
    browser.cdp("Network.enable", json!({}));
    browser.cdp(
        "Network.setBlockedURLs",
        json!({"urls": ["*/ui/js/dom.js"]}),
    );
    browser.goto(&format!("{}/ui/vms", agent.base));
    browser.find("[data-testid=load-error]");
    let said = browser.text("[data-testid=load-error]");
    assert!(said.contains("did not load"), "{said}");
    let reloads = browser.js(
        "return performance.getEntriesByType('navigation')[0].type",
        json!([]),
    );
    assert_eq!(reloads, "reload", "the page reloads once before it says so");
    browser.cdp("Network.setBlockedURLs", json!({"urls": []}));
    browser.click_text("[data-testid=load-error]", "Try again");
    browser.find("[data-testid=vm-table]");
}

/// The networks page in a node namespace of its own: a nat network made
/// in the page, a port forward added there; a tenant's login lists its own
/// forward only and changes nothing; the forward and the network deleted.
#[test]
fn networks_page_and_a_tenants_forwards() {
    let lab = Lab::new("uin");
    lab.enter_node();
    let node = Node::new("ui-net");
    let agent = agent_with_password(&node, &[]);
    agent.ok("POST", "/auth/users", Some(json!({"name": "alice", "password": "alice's secret", "role": "tenant", "tenant": "acme"})), 201);
    let browser = Browser::start(1280, 800, &shots_dir());
    log_in(&browser, &agent, "admin", ADMIN_PASSWORD);
    browser.goto(&format!("{}/ui/networks", agent.base));
    fill_in(
        &browser,
        "create-network",
        &[
            ("network name", "lab"),
            ("subnet", "10.78.0.0/24"),
            ("uplink", "up0"),
        ],
    );
    browser.click_text("[data-testid=create-network]", "Create");
    action_done(&browser, "Create lab");
    let lab_net = agent.ok("GET", "/networks/lab", None, 200);
    assert_eq!(lab_net["active"], true, "{lab_net}");
    assert_eq!(lab_net["spec"]["kind"], "nat", "{lab_net}");
    nic_added_and_removed_in_the_edit_form(&browser, &agent, &node);
    browser.goto(&format!("{}/ui/networks", agent.base));

    fill_in(
        &browser,
        "add-forward-lab",
        &[
            ("node port", "18080"),
            ("forward to", "10.78.0.50:80"),
            ("forward tenant", "acme"),
        ],
    );
    browser.click_text("[data-testid=add-forward-lab]", "Add forward");
    action_done(&browser, "Forward 18080");
    agent.ok(
        "POST",
        "/networks/lab/forwards",
        Some(json!({"tenant": "globex", "node_port": 18081, "to": "10.78.0.51:80"})),
        201,
    );
    let forwards = agent.ok("GET", "/networks/lab/forwards?tenant=acme", None, 200);
    assert_eq!(forwards[0]["to"], "10.78.0.50:80", "{forwards}");
    browser.goto(&format!("{}/ui/networks", agent.base));
    browser.wait(
        "both forwards",
        "document.querySelectorAll('[data-testid=forwards-lab] tr[data-forward]').length === 2",
        LONG,
    );
    browser.screenshot("networks-lab-1280");

    log_in(&browser, &agent, "alice", "alice's secret");
    browser.goto(&format!("{}/ui/networks", agent.base));
    browser.wait(
        "acme's forward only",
        "document.querySelectorAll('[data-testid=forwards-lab] tr[data-forward]').length === 1",
        LONG,
    );
    let seen = browser.js("return [...document.querySelectorAll('[data-testid=forwards-lab] tr[data-forward]')].map(r => r.dataset.forward)", json!([]));
    assert_eq!(seen, json!(["18080"]));
    let page = browser.js("return document.querySelector('main').innerText", json!([]));
    let page = page.as_str().unwrap();
    for hidden in ["18081", "Delete", "New network", "DHCP leases"] {
        assert!(!page.contains(hidden), "{hidden}: {page}");
    }
    browser.screenshot("tenant-networks-1280");

    log_in(&browser, &agent, "admin", ADMIN_PASSWORD);
    browser.goto(&format!("{}/ui/networks", agent.base));
    browser.click_text(
        "[data-testid=forwards-lab] tr[data-forward=\"18080\"]",
        "Delete",
    );
    browser.click_text(
        "[data-testid=forwards-lab] tr[data-forward=\"18080\"]",
        "Really delete?",
    );
    action_done(&browser, "Delete forward 18080");
    let left = agent.ok("GET", "/networks/lab/forwards", None, 200);
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    agent.ok("DELETE", "/networks/lab/forwards/18081", None, 204);
    browser.goto(&format!("{}/ui/networks", agent.base));
    browser.click_text("[data-testid=networks] tr[data-network=lab]", "Delete");
    browser.click_text(
        "[data-testid=networks] tr[data-network=lab]",
        "Really delete?",
    );
    action_done(&browser, "Delete lab");
    assert_eq!(agent.call("GET", "/networks/lab", None).0, 404);
}

/// A stopped VM's edit form: a NIC on network `lab` added (the definition
/// then has it; the agent derives its MAC when the VM starts), then removed.
fn nic_added_and_removed_in_the_edit_form(browser: &Browser, agent: &Agent, node: &Node) {
    agent.define_probe(node, "wired", "probe.tick", 64);
    browser.goto(&format!("{}/ui/vms/wired", agent.base));
    browser.click_text("[data-testid=edit-vm]", "Add NIC");
    browser.type_into(
        "[data-testid=edit-nics] input[aria-label='NIC network']",
        "lab",
    );
    browser.click("[data-testid=save-vm]");
    action_done(browser, "Edit");
    let nics = agent.vm("wired")["nics"].clone();
    assert_eq!(nics.as_array().map(Vec::len), Some(1), "{nics}");
    assert_eq!(nics[0]["network"], "lab", "{nics}");
    browser.goto(&format!("{}/ui/vms/wired", agent.base));
    browser.wait(
        "the NIC in the form",
        "document.querySelector('[data-testid=edit-nics] input[aria-label=\"NIC network\"]').value === 'lab'",
        LONG,
    );
    browser.screenshot("vm-edit-nic-1280");
    browser.click("[data-testid=edit-nics] > div button.danger");
    browser.click("[data-testid=save-vm]");
    action_done(browser, "Edit");
    let nics = agent.vm("wired")["nics"].clone();
    assert!(nics.as_array().is_none_or(Vec::is_empty), "{nics}");
    agent.ok("DELETE", "/vms/wired", None, 204);
}

/// A backup of a VM with a large (sparse) disk, cancelled from the task
/// list while it copies: the task ends `cancelled`, the pool keeps no
/// backup and no half-written one, and the disk is free for the next job.
#[test]
fn a_long_backup_cancelled_from_the_task_list() {
    let node = Node::new("ui-cancel");
    let agent = agent_with_password(&node, &[]);
    agent.ok(
        "POST",
        "/pools/local/volumes",
        Some(json!({"name": "big.raw", "format": "raw", "size": 256u64 << 30})),
        201,
    );
    agent.ok(
        "POST",
        "/vms",
        Some(json!({
            "name": "big", "memory_mib": 64,
            "boot": {"kind": "kernel", "kernel": node.probe},
            "disks": [{"volume": "local/big.raw"}],
        })),
        201,
    );
    let browser = Browser::start(1280, 800, &shots_dir());
    log_in(&browser, &agent, "admin", ADMIN_PASSWORD);
    browser.goto(&format!("{}/ui/vms/big", agent.base));
    browser.click_text("[data-testid=vm-actions]", "Back up");
    let deadline = Instant::now() + LONG;
    let id = loop {
        let tasks = agent.ok("GET", "/tasks", None, 200);
        let copying = tasks.as_array().unwrap().iter().find(|t| {
            t["kind"] == "backup" && t["state"] == "running" && t["done"].as_u64() > Some(0)
        });
        if let Some(t) = copying {
            break t["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no backup copying: {tasks}");
        std::thread::sleep(Duration::from_millis(100));
    };
    browser.goto(&format!("{}/ui/tasks", agent.base));
    let row = format!("[data-testid=tasks] tr[data-task={id:?}]");
    browser.find(&format!("{row} progress"));
    browser.screenshot("tasks-running-1280");
    browser.click_text(&row, "Cancel");
    browser.wait(
        "the task cancelled in the list",
        &format!("document.querySelector('{row} .badge').textContent === 'cancelled'"),
        LONG,
    );
    browser.screenshot("tasks-cancelled-1280");
    let task = agent.ok("GET", &format!("/tasks/{id}"), None, 200);
    assert_eq!(task["state"], "cancelled", "{task}");
    assert!(task["done"].as_u64() < Some(256 << 30), "{task}");
    let backups = agent.ok("GET", "/pools/local/backups?vm=big", None, 200);
    assert_eq!(backups, json!([]));
    let left: Vec<_> = std::fs::read_dir(node.local_pool().join(".backups"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the backups directory: {left:?}");
    // The disk is not held by the cancelled job: the next backup may start.
    let next = agent.ok(
        "POST",
        "/backups",
        Some(json!({"vm": "big", "storage": "local"})),
        202,
    );
    agent.ok(
        "DELETE",
        &format!("/tasks/{}", next["id"].as_str().unwrap()),
        None,
        202,
    );
}

/// Metrics: the Prometheus text and the history routes answer with the
/// running VM's numbers.
#[test]
fn metrics_and_history_follow_a_running_vm() {
    let node = Node::new("ui-metrics");
    let agent = node.agent(&["--metrics-interval", "0.5"]);
    agent.define_probe(&node, "m", "probe.tick", 64);
    agent.ok("POST", "/vms/m/start", None, 200);
    let deadline = Instant::now() + LONG;
    let history = loop {
        let h = agent.ok("GET", "/vms/m/history", None, 200);
        if h["points"].as_array().unwrap().len() >= 2 {
            break h;
        }
        assert!(Instant::now() < deadline, "no VM history: {h}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(history["mem_total_bytes"], 64 * MIB);
    let p = &history["points"][1];
    assert!(p["mem_bytes"].as_u64().unwrap() > MIB, "the VMM's RSS: {p}");
    let node_h = agent.ok("GET", "/node/history", None, 200);
    assert!(node_h["points"].as_array().unwrap().len() >= 2, "{node_h}");
    let (status, text) = agent.call_raw("GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        text.contains("vireo_vm_state{vm=\"m\",state=\"running\"} 1"),
        "{text}"
    );
    let rss_line = text
        .lines()
        .find(|l| l.starts_with("vireo_vm_memory_rss_bytes{vm=\"m\"}"))
        .expect(&text);
    let rss: f64 = rss_line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(rss > MIB as f64, "{rss_line}");
    assert_eq!(agent.call("GET", "/vms/nope/history", None).0, 404);
}

/// Bench row: the VM list with 200 VMs, from navigation to the drawn table.
#[test]
#[ignore = "a benchmark: make bench-ui"]
fn vm_list_page_load() {
    let node = Node::new("ui-bench");
    let agent = agent_with_password(&node, &[]);
    for i in 0..200 {
        let tenant = ["acme", "globex", "initech"][i % 3];
        agent.ok(
            "POST",
            "/vms",
            Some(json!({
                "name": format!("vm-{i:03}"), "memory_mib": 64, "tags": {"tenant": tenant},
                "boot": {"kind": "kernel", "kernel": node.probe},
            })),
            201,
        );
    }
    let browser = Browser::start(1280, 800, &shots_dir());
    log_in(&browser, &agent, "admin", ADMIN_PASSWORD);
    let mut times = Vec::new();
    for _ in 0..5 {
        browser.goto(&format!("{}/ui/vms", agent.base));
        let ms = browser.wait("200 rows",
            "document.querySelectorAll('tr[data-vm]').length === 200 && +document.querySelector('[data-testid=vm-table]').dataset.renderedMs",
            LONG);
        times.push(ms.as_f64().unwrap());
    }
    browser.screenshot("bench-vms-200-1280");
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!("BENCH ui vm-list-200: median {median:.0} ms from navigation to the drawn table (goal <= 500 ms); runs {times:?}");
    let _: Value = json!(median);
}
