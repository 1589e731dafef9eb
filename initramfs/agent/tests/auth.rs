//! Who may call the agent (docs/security.md): the agent as a process, raw
//! HTTP so headers and bodies can be anything. No token → 401; login; the
//! admin-only routes; a tenant sees and touches only objects tagged with
//! its tenant (one test per route family); oversized bodies and slow
//! clients are cut off; plain HTTP is refused on a TLS port.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// One request with `token` (or none); `body` as JSON.
fn call(addr: SocketAddr, token: Option<&str>, method: &str, path: &str, body: &Value) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    Answer {
        status,
        headers: Vec::new(),
        body: raw[split + 4..].to_vec(),
    }
}

/// An agent whose admin password is `admin-pw-123`.
fn agent(name: &str) -> Agent {
    let dir = scratch_dir(&format!("auth-pw-{name}"));
    let pw = dir.join("pw");
    std::fs::write(&pw, "admin-pw-123\n").unwrap();
    Agent::start_with(name, &["--admin-password-file", pw.to_str().unwrap()])
}

fn login(addr: SocketAddr, user: &str, password: &str) -> Answer {
    call(
        addr,
        None,
        "POST",
        "/auth/login",
        &json!({"user": user, "password": password}),
    )
}

/// A token for a new API token of `role` (and `tenant`).
fn token(a: &Agent, role: &str, tenant: Option<&str>) -> String {
    let req = json!({"role": role, "tenant": tenant, "comment": "test"});
    let t = call(a.addr, Some(TOKEN), "POST", "/auth/tokens", &req);
    assert_eq!(t.status, 201, "{}", t.text());
    t.json()["token"].as_str().unwrap().to_string()
}

/// Defines VM `name` tagged with `tenant` (as admin).
fn vm(a: &Agent, name: &str, tenant: Option<&str>) {
    let tags = tenant.map_or(json!({}), |t| json!({"tenant": t}));
    let spec = json!({"name": name, "boot": {"kind": "kernel", "kernel": "/bin/sh"}, "tags": tags});
    let r = call(a.addr, Some(TOKEN), "POST", "/vms", &spec);
    assert_eq!(r.status, 201, "{}", r.text());
}

fn names(list: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.pointer(key).and_then(Value::as_str).unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn no_token_is_401_and_a_login_gives_a_session() {
    let a = agent("login");
    for path in ["/vms", "/auth/whoami", "/pools", "/tasks", "/no-such-route"] {
        let r = call(a.addr, None, "GET", path, &Value::Null);
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert!(r.error().contains("Bearer"), "{}", r.text());
        let bad = call(a.addr, Some("not-a-token"), "GET", path, &Value::Null);
        assert_eq!(bad.status, 401, "{path}");
    }
    // The UI's paths are public (`/` sends the browser on to the UI, which
    // then logs in), and so are the liveness and node facts.
    assert_eq!(call(a.addr, None, "GET", "/", &Value::Null).status, 303);
    assert_eq!(call(a.addr, None, "GET", "/ui/", &Value::Null).status, 200);
    assert_eq!(
        call(a.addr, None, "GET", "/health", &Value::Null).status,
        200
    );
    assert_eq!(call(a.addr, None, "GET", "/node", &Value::Null).status, 200);
    assert_eq!(login(a.addr, "admin", "wrong-password").status, 401);
    assert_eq!(login(a.addr, "nobody", "admin-pw-123").status, 401);
    let ok = login(a.addr, "admin", "admin-pw-123");
    assert_eq!(ok.status, 200, "{}", ok.text());
    let session = ok.json();
    assert_eq!(
        (session["user"].as_str(), session["role"].as_str()),
        (Some("admin"), Some("admin"))
    );
    assert!(session["tenant"].is_null());
    let me = call(
        a.addr,
        session["token"].as_str(),
        "GET",
        "/auth/whoami",
        &Value::Null,
    );
    assert_eq!(
        me.json(),
        json!({"user": "admin", "role": "admin", "tenant": null})
    );
    // A password given on the command line: no random one written.
    assert!(!a.dir.join("state/initial-admin-password").exists());
}

#[test]
fn a_first_start_writes_a_random_admin_password_0600() {
    use std::os::unix::fs::PermissionsExt;
    let a = Agent::start("first-admin");
    let file = a.dir.join("state/initial-admin-password");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let password = std::fs::read_to_string(&file).unwrap();
    assert_eq!(login(a.addr, "admin", password.trim()).status, 200);
    let users = std::fs::read_to_string(a.dir.join("state/auth/users.json")).unwrap();
    assert!(
        users.contains("$argon2id$") && !users.contains(password.trim()),
        "{users}"
    );
}

#[test]
fn users_tokens_and_the_selftest_are_the_admins() {
    let a = agent("roles");
    let (addr, admin) = (a.addr, Some(TOKEN));
    let user = json!({"name": "olga", "password": "operator-pw", "role": "operator"});
    assert_eq!(call(addr, admin, "POST", "/auth/users", &user).status, 201);
    let tenant =
        json!({"name": "tim", "password": "tenant-pw-1", "role": "tenant", "tenant": "acme"});
    assert_eq!(
        call(addr, admin, "POST", "/auth/users", &tenant).status,
        201
    );
    let bad = json!({"name": "x", "password": "tenant-pw-1", "role": "tenant"});
    assert_eq!(call(addr, admin, "POST", "/auth/users", &bad).status, 400);
    let op = login(addr, "olga", "operator-pw").json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let tim = login(addr, "tim", "tenant-pw-1").json();
    assert_eq!(tim["tenant"], "acme");
    let tim = tim["token"].as_str().unwrap().to_string();
    for who in [&op, &tim] {
        for (m, p) in [
            ("GET", "/auth/users"),
            ("GET", "/auth/tokens"),
            ("POST", "/selftest/vmm"),
        ] {
            let r = call(addr, Some(who), m, p, &Value::Null);
            assert_eq!(r.status, 403, "{m} {p}: {}", r.text());
        }
    }
    // An operator works on VMs; the tenant's list is empty.
    assert_eq!(
        call(addr, Some(&op), "GET", "/vms", &Value::Null).status,
        200
    );
    assert_eq!(
        call(addr, Some(&tim), "GET", "/vms", &Value::Null).json(),
        json!([])
    );
    // API tokens: the secret shown once, stored hashed, revocable.
    let made = call(
        addr,
        admin,
        "POST",
        "/auth/tokens",
        &json!({"role": "operator"}),
    )
    .json();
    let secret = made["token"].as_str().unwrap();
    assert_eq!(
        call(addr, Some(secret), "GET", "/vms", &Value::Null).status,
        200
    );
    let listed = call(addr, admin, "GET", "/auth/tokens", &Value::Null).text();
    let stored = std::fs::read_to_string(a.dir.join("state/auth/tokens.json")).unwrap();
    assert!(
        !listed.contains(secret) && !stored.contains(secret),
        "{stored}"
    );
    let id = made["id"].as_str().unwrap();
    assert_eq!(
        call(
            addr,
            admin,
            "DELETE",
            &format!("/auth/tokens/{id}"),
            &Value::Null
        )
        .status,
        204
    );
    assert_eq!(
        call(addr, Some(secret), "GET", "/vms", &Value::Null).status,
        401
    );
    // Deleting a user ends its sessions.
    assert_eq!(
        call(addr, admin, "DELETE", "/auth/users/olga", &Value::Null).status,
        204
    );
    assert_eq!(
        call(addr, Some(&op), "GET", "/vms", &Value::Null).status,
        401
    );
    assert_eq!(
        call(addr, admin, "DELETE", "/auth/users/admin", &Value::Null).status,
        409
    );
}

#[test]
fn a_tenant_sees_and_acts_on_its_own_vms_only() {
    let a = agent("tenant-vms");
    vm(&a, "acme-1", Some("acme"));
    vm(&a, "other-1", Some("other"));
    vm(&a, "untagged", None);
    let acme = token(&a, "tenant", Some("acme"));
    let t = Some(acme.as_str());
    let list = call(a.addr, t, "GET", "/vms", &Value::Null).json();
    assert_eq!(names(&list, "/name"), ["acme-1"]);
    assert_eq!(
        call(a.addr, t, "GET", "/vms/acme-1", &Value::Null).status,
        200
    );
    for (m, p) in [
        ("GET", "/vms/other-1"),
        ("GET", "/vms/untagged"),
        ("POST", "/vms/other-1/start"),
        ("GET", "/vms/other-1/log"),
        ("DELETE", "/vms/other-1"),
        ("GET", "/vms/no-such-vm"),
    ] {
        let r = call(a.addr, t, m, p, &Value::Null);
        assert_eq!(r.status, 403, "{m} {p}: {}", r.text());
    }
    assert_eq!(
        call(a.addr, Some(TOKEN), "GET", "/vms/other-1", &Value::Null).status,
        200
    );
    // Definitions: its own tag only, and no node paths as kernels.
    let theirs = json!({"name": "x", "boot": {"kind": "disk"}, "tags": {"tenant": "other"}});
    assert_eq!(call(a.addr, t, "POST", "/vms", &theirs).status, 403);
    let node_file = json!({"name": "y", "boot": {"kind": "kernel", "kernel": "/etc/shadow"}});
    assert_eq!(call(a.addr, t, "POST", "/vms", &node_file).status, 403);
    let list = call(a.addr, Some(TOKEN), "GET", "/vms", &Value::Null).json();
    assert_eq!(names(&list, "/name"), ["acme-1", "other-1", "untagged"]);
}

fn volume(a: &Agent, name: &str, tenant: Option<&str>) {
    let req = json!({"name": name, "format": "raw", "size": 1 << 20, "tenant": tenant});
    let r = call(a.addr, Some(TOKEN), "POST", "/pools/local/volumes", &req);
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn a_tenant_sees_and_acts_on_its_own_volumes_only() {
    let a = agent("tenant-volumes");
    volume(&a, "acme.raw", Some("acme"));
    volume(&a, "other.raw", Some("other"));
    let acme = token(&a, "tenant", Some("acme"));
    let t = Some(acme.as_str());
    let list = call(a.addr, t, "GET", "/pools/local/volumes", &Value::Null).json();
    assert_eq!(names(&list, "/volume"), ["local/acme.raw"]);
    let made = json!({"name": "new.raw", "format": "raw", "size": 1 << 20});
    let r = call(a.addr, t, "POST", "/pools/local/volumes", &made);
    assert_eq!(
        (r.status, r.json()["tenant"].as_str()),
        (201, Some("acme")),
        "{}",
        r.text()
    );
    for (m, p) in [
        ("GET", "/pools/local/volumes/other.raw"),
        ("DELETE", "/pools/local/volumes/other.raw"),
        ("GET", "/pools/local/volumes/other.raw/data"),
        ("POST", "/pools/local/volumes/other.raw/resize"),
        ("POST", "/pools/local/volumes/acme.raw/clone"),
        ("DELETE", "/pools/local"),
    ] {
        let r = call(a.addr, t, m, p, &json!({"size": 4 << 20}));
        assert_eq!(r.status, 403, "{m} {p}: {}", r.text());
    }
    assert!(a.local().join("other.raw").is_file());
    let resize = call(
        a.addr,
        t,
        "POST",
        "/pools/local/volumes/acme.raw/resize",
        &json!({"size": 4 << 20}),
    );
    assert_eq!(resize.status, 200, "{}", resize.text());
    // Its VM may use its volume, not another tenant's.
    let own =
        json!({"name": "v", "boot": {"kind": "disk"}, "disks": [{"volume": "local/acme.raw"}]});
    assert_eq!(call(a.addr, t, "POST", "/vms", &own).status, 201);
    let stolen =
        json!({"name": "w", "boot": {"kind": "disk"}, "disks": [{"volume": "local/other.raw"}]});
    assert_eq!(call(a.addr, t, "POST", "/vms", &stolen).status, 403);
}

/// A backup directory with a manifest as the agent writes it.
fn fake_backup(pool: &Path, id: &str, tenant: &str) {
    let manifest = vireo_agent::storage_api::BackupManifest {
        id: id.into(),
        vm: format!("vm-{tenant}"),
        created: 1,
        compress: Default::default(),
        live: false,
        pause_ms: None,
        definition: json!({"uuid": "u", "created": 1, "spec": {"tags": {"tenant": tenant}}}),
        disks: Vec::new(),
    };
    let dir = pool.join(".backups").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_tenant_sees_and_acts_on_its_own_backups_only() {
    let a = agent("tenant-backups");
    fake_backup(&a.local(), "acme-20260101-000000", "acme");
    fake_backup(&a.local(), "other-20260101-000000", "other");
    vm(&a, "other-vm", Some("other"));
    let acme = token(&a, "tenant", Some("acme"));
    let t = Some(acme.as_str());
    let list = call(a.addr, t, "GET", "/pools/local/backups", &Value::Null).json();
    assert_eq!(names(&list, "/id"), ["acme-20260101-000000"]);
    let mine = call(
        a.addr,
        t,
        "GET",
        "/pools/local/backups/acme-20260101-000000",
        &Value::Null,
    );
    assert_eq!(mine.status, 200, "{}", mine.text());
    let other = "/pools/local/backups/other-20260101-000000";
    for (m, p) in [
        ("GET", other.to_string()),
        ("DELETE", other.to_string()),
        ("POST", format!("{other}/verify")),
        ("POST", format!("{other}/restore")),
    ] {
        let r = call(a.addr, t, m, &p, &json!({}));
        assert_eq!(r.status, 403, "{m} {p}: {}", r.text());
    }
    assert!(a
        .local()
        .join(".backups/other-20260101-000000/manifest.json")
        .is_file());
    let req = json!({"vm": "other-vm", "storage": "local"});
    assert_eq!(call(a.addr, t, "POST", "/backups", &req).status, 403);
    let all = call(
        a.addr,
        Some(TOKEN),
        "GET",
        "/pools/local/backups",
        &Value::Null,
    )
    .json();
    assert_eq!(all.as_array().unwrap().len(), 2);
}

/// A WebSocket handshake to `path`; the answer's status line.
fn ws_status(addr: SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

#[test]
fn a_tenant_reaches_its_own_consoles_only_with_a_query_token() {
    let a = agent("tenant-console");
    vm(&a, "acme-1", Some("acme"));
    vm(&a, "other-1", Some("other"));
    let acme = token(&a, "tenant", Some("acme"));
    assert_eq!(
        ws_status(a.addr, &format!("/vms/acme-1/console?token={acme}")),
        101
    );
    assert_eq!(
        ws_status(a.addr, &format!("/vms/other-1/console?token={acme}")),
        403
    );
    assert_eq!(ws_status(a.addr, "/vms/acme-1/console"), 401);
    assert_eq!(
        ws_status(a.addr, &format!("/vms/other-1/console?token={TOKEN}")),
        101
    );
}

#[test]
fn a_10_gib_body_is_refused_before_it_is_read() {
    let a = agent("big-body");
    for token in [None, Some(TOKEN)] {
        let mut s = TcpStream::connect(a.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(s, "POST /vms HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n{{").unwrap();
        let started = Instant::now();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let r = parse(&raw);
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(r.error().contains("larger than"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // Volume uploads (new volumes) stream: the limit is not theirs.
    let data = a.dir.join("data");
    std::fs::write(&data, vec![7u8; 2 << 20]).unwrap();
    let up = upload(a.addr, "/pools/local/volumes/up.raw/data", &data);
    assert!(up.status < 300, "{}", up.text());
}

#[test]
fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let a = agent_with_timeout("slowloris");
    let mut slow = TcpStream::connect(a.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let head = format!("GET /vms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nX-Slow: ");
    let mut cut_off = None;
    let mut served = 0;
    for byte in head.bytes().chain(std::iter::repeat(b'a')) {
        if slow.write_all(&[byte]).is_err() || closed(&mut slow) {
            cut_off = Some(started.elapsed());
            break;
        }
        // Meanwhile others get answers at once.
        let r = call(a.addr, Some(TOKEN), "GET", "/vms", &Value::Null);
        assert_eq!(r.status, 200);
        served += 1;
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    let cut = cut_off.expect("the slow client was never cut off");
    assert!(
        cut >= Duration::from_secs(2) && cut < Duration::from_secs(8),
        "{cut:?}"
    );
    assert!(served >= 5, "{served}");
}

/// A body that arrives after its headers, on a route that takes none
/// (GET /vms): the agent reads it before it answers, so the kept-alive
/// connection serves the next request. hyper closed it when the handler
/// answered first (a pooled client's next request was reset).
#[test]
fn a_late_body_leaves_the_connection_reusable() {
    let a = agent("late-body");
    let head = format!("GET /vms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n");
    for delay_ms in [0, 50, 300] {
        let mut s = TcpStream::connect(a.addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("{head}Content-Length: 2\r\n\r\n").as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        s.write_all(b"{}").unwrap();
        assert_eq!(read_one_answer(&mut s), 200);
        std::thread::sleep(Duration::from_millis(50));
        let again = s.write_all(format!("{head}\r\n").as_bytes());
        assert!(again.is_ok(), "body {delay_ms} ms late: closed: {again:?}");
        let status = read_one_answer(&mut s);
        assert_eq!(status, 200, "body {delay_ms} ms late: the second request");
    }
}

/// One answer (its Content-Length delimits it) off a kept-alive
/// connection; its status.
fn read_one_answer(s: &mut TcpStream) -> u16 {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            other => panic!("the connection ended before an answer: {other:?}"),
        }
    }
    let head = String::from_utf8_lossy(&raw).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).unwrap();
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

fn agent_with_timeout(name: &str) -> Agent {
    Agent::start_with(name, &["--header-timeout", "2"])
}

/// Whether the peer closed `s` (read gives EOF or an error, not a
/// timeout); an answer before the close (a 408) is read past.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => closed(s),
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn plain_http_is_refused_when_tls_is_on() {
    let a = Agent::start_with("tls", &["--tls"]);
    let plain = call(a.addr, Some(TOKEN), "GET", "/auth/whoami", &Value::Null);
    assert_eq!(plain.status, 400);
    assert!(plain.error().contains("HTTPS"), "{}", plain.text());
    let cert = std::fs::read(a.dir.join("state/tls/node.crt")).unwrap();
    let root = ureq::tls::Certificate::from_pem(&cert).unwrap().to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
            root,
        ])))
        .build();
    let http = ureq::Agent::new_with_config(ureq::Agent::config_builder().tls_config(tls).build());
    let url = format!("https://localhost:{}/auth/whoami", a.addr.port());
    let mut r = http
        .get(&url)
        .header("authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    let me: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(me["role"], "admin");
}
