//! The web UI in a real browser (Debian's headless Chromium through
//! chromedriver) against the agent as a process with probe VMs: log in,
//! create a VM from a template, start it and read the probe on its console,
//! shut it down, snapshot and revert, back up and restore (each judged by
//! the probe reading its disk back), the graphs' data points, and every
//! page at 1280×800 and at phone width, screenshots kept in
//! target/test-logs/ui/. `vm_list_page_load` (ignored; `make bench-ui`)
//! times the VM list with 200 VMs.

mod vm_common;
mod webdriver;

use std::path::PathBuf;
use std::time::{Duration, Instant};

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

/// Waits for the page's status line to say `label...: done`; panics on a failure it reports.
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

fn action_done(browser: &Browser, label: &str) {
    let cond = format!(
        "(e => e && e.innerText.startsWith({label:?}) && (e.classList.contains('ok') || e.classList.contains('failed')) && e.className + ' ' + e.innerText)(document.querySelector('[data-testid=action-status]'))"
    );
    let seen = browser.wait(&format!("{label} done"), &cond, LONG);
    let seen = seen.as_str().unwrap_or("");
    assert!(seen.contains(" ok "), "{label}: {seen}");
}

#[test]
fn the_ui_drives_a_vm_through_its_life() {
    let node = Node::new("ui");
    let agent = agent_with_password(&node, &["--metrics-interval", "1"]);
    make_template(&agent, &node);
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
    browser.click("[data-testid=edit-vm] button");
    action_done(&browser, "Edit");
    assert_eq!(agent.vm("web")["memory_mib"], 96);
    browser.type_into("input[aria-label='clone name']", "web2");
    browser.click_text(".actions", "Clone");
    browser.wait("the clone's page", "location.pathname === '/ui/vms/web2' && document.querySelector('[data-testid=vm-actions] button')", LONG);
    let web2 = agent.vm("web2");
    assert_eq!(
        web2["disks"][0]["volume"], "local/web2-web-disk0.qcow2",
        "{web2}"
    );
    reads_pattern_41(&agent, "web2", "the clone");

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
        ("storage", "/ui/storage", "[data-testid=pools]"),
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
    assert!(browser
        .text("[data-testid=error-page]")
        .contains("no VM named 'nobody'"));
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
    let listed = browser.js(
        "return [...document.querySelectorAll('tr[data-vm]')].map(r => r.dataset.vm).sort()",
        json!([]),
    );
    assert_eq!(listed, json!(["acme-db", "acme-web"]));
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
    browser.goto(&format!("{}/ui/vms/acme-web", agent.base));
    browser.find("[data-testid=console]");
    log_in(&browser, &agent, "admin", ADMIN_PASSWORD);
    browser.wait(
        "every VM for the admin",
        "document.querySelectorAll('tr[data-vm]').length === 3",
        LONG,
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
