//! Pools and volumes end to end, the agent a real process on a temporary
//! state directory: create, list, resize, convert, delete; snapshots,
//! linked and full clones judged by what the probe guest reads and by
//! `qemu-img check`/`compare`; streamed upload and download; and bad
//! input (a volume in use, a pool whose directory vanished, malformed
//! JSON) answered clearly with nothing changed.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::json;

const MIB: u64 = 1 << 20;

fn create(agent: &Agent, name: &str, format: &str, size: u64) -> serde_json::Value {
    let a = post(
        agent.addr,
        "/pools/local/volumes",
        &json!({"name": name, "format": format, "size": size}),
    );
    assert_eq!(a.status, 201, "{}", a.text());
    a.json()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn volumes_are_created_listed_resized_converted_and_deleted() {
    let agent = Agent::start("volumes");
    let v = create(&agent, "a.qcow2", "qcow2", 64 * MIB);
    assert_eq!(
        (v["format"].as_str(), v["virtual_size"].as_u64()),
        (Some("qcow2"), Some(64 * MIB))
    );
    assert!(
        v["real_size"].as_u64().unwrap() < MIB,
        "a new qcow2 image is small: {v}"
    );
    let img = agent.local().join("a.qcow2");
    qemu_img::qemu_img(&[
        "create",
        "-q",
        "-f",
        "raw",
        qemu_img::arg(&agent.dir.join("ref.raw")),
        "64M",
    ]);
    probe(&img, "qcow2", "probe.blk=write:11:8");
    probe(&agent.dir.join("ref.raw"), "raw", "probe.blk=write:11:8");
    check(&img);

    let list = get(agent.addr, "/pools/local/volumes").json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(list[0]["real_size"].as_u64().unwrap() >= 8 * MIB, "{list}");

    let r = post(
        agent.addr,
        "/pools/local/volumes/a.qcow2/resize",
        &json!({"size": 128 * MIB}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["virtual_size"], 128 * MIB);
    check(&img);
    let before = std::fs::read(&img).unwrap();
    let smaller = post(
        agent.addr,
        "/pools/local/volumes/a.qcow2/resize",
        &json!({"size": 32 * MIB}),
    );
    assert_eq!(smaller.status, 400);
    assert!(
        smaller.error().contains("only growing"),
        "{}",
        smaller.text()
    );
    assert!(
        std::fs::read(&img).unwrap() == before,
        "a refused resize changes nothing"
    );

    for (format, judge) in [("raw", "raw"), ("qcow2", "qcow2")] {
        let r = task_ok(
            agent.addr,
            "POST",
            "/pools/local/volumes/a.qcow2/convert",
            &json!({"format": format}),
        );
        eprintln!(
            "convert to {format}: {:.0} MB/s",
            r["bytes_per_second"].as_f64().unwrap() / 1e6
        );
        assert_eq!(r["volume"]["format"], format);
        let info = qemu_img::qemu_img(&["info", "--output=json", qemu_img::arg(&img)]);
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(
            (info["format"].as_str(), info["virtual-size"].as_u64()),
            (Some(judge), Some(128 * MIB))
        );
        probe(&img, format, "probe.blk=read:11:8");
        qemu_img::qemu_img(&[
            "compare",
            "-f",
            format,
            "-F",
            "raw",
            qemu_img::arg(&img),
            qemu_img::arg(&agent.dir.join("ref.raw")),
        ]);
    }
    check(&img);
    let same = post(
        agent.addr,
        "/pools/local/volumes/a.qcow2/convert",
        &json!({"format": "qcow2"}),
    );
    assert_eq!(same.status, 400, "{}", same.text());

    assert_eq!(
        http(agent.addr, "DELETE", "/pools/local/volumes/a.qcow2", b"").status,
        204
    );
    assert!(!img.exists());
    assert_eq!(get(agent.addr, "/pools/local/volumes").json(), json!([]));
    assert_eq!(get(agent.addr, "/pools/local/volumes/a.qcow2").status, 404);
}

#[test]
fn clones_see_the_base_data_and_a_reverted_snapshot_drops_later_writes() {
    let agent = Agent::start("clones");
    let dir = agent.local();
    create(&agent, "base.qcow2", "qcow2", 32 * MIB);
    probe(&dir.join("base.qcow2"), "qcow2", "probe.blk=write:21:8");
    let linked = post(
        agent.addr,
        "/pools/local/volumes/base.qcow2/clone",
        &json!({"name": "linked.qcow2", "linked": true}),
    );
    assert_eq!(
        linked.status,
        409,
        "a linked clone needs a template: {}",
        linked.text()
    );
    let t = http(
        agent.addr,
        "PUT",
        "/pools/local/volumes/base.qcow2/template",
        b"",
    );
    assert_eq!((t.status, &t.json()["template"]), (200, &json!(true)));
    let linked = post(
        agent.addr,
        "/pools/local/volumes/base.qcow2/clone",
        &json!({"name": "linked.qcow2", "linked": true}),
    );
    assert_eq!(linked.status, 201, "{}", linked.text());
    assert_eq!(linked.json()["linked_to"], "base.qcow2");
    let full = task_ok(
        agent.addr,
        "POST",
        "/pools/local/volumes/base.qcow2/clone",
        &json!({"name": "full.raw", "format": "raw"}),
    );
    eprintln!(
        "full clone: {:.0} MB/s",
        full["bytes_per_second"].as_f64().unwrap() / 1e6
    );
    probe(&dir.join("linked.qcow2"), "qcow2", "probe.blk=read:21:8");
    probe(&dir.join("full.raw"), "raw", "probe.blk=read:21:8");
    for clone in ["linked.qcow2", "full.raw"] {
        same_contents(&dir.join("base.qcow2"), &dir.join(clone));
    }
    // The clone writes; the template does not change.
    let template_bytes = std::fs::read(dir.join("base.qcow2")).unwrap();
    probe(&dir.join("linked.qcow2"), "qcow2", "probe.blk=write:22:4");
    assert!(std::fs::read(dir.join("base.qcow2")).unwrap() == template_bytes);
    for img in ["base.qcow2", "linked.qcow2"] {
        check(&dir.join(img));
    }
    let refused = http(agent.addr, "DELETE", "/pools/local/volumes/base.qcow2", b"");
    assert_eq!(refused.status, 409);
    assert!(
        refused.error().contains("linked.qcow2"),
        "{}",
        refused.text()
    );
    assert!(dir.join("base.qcow2").exists());

    // Snapshot, write, revert: the later writes are gone.
    let vol = dir.join("full.raw");
    let s = post(
        agent.addr,
        "/pools/local/volumes/full.raw/snapshots",
        &json!({"name": "s1"}),
    );
    assert_eq!(s.status, 201, "{}", s.text());
    assert_eq!(s.json()["snapshots"][0]["name"], "s1");
    probe(&vol, "qcow2", "probe.blk=write:23:8");
    let r = post(
        agent.addr,
        "/pools/local/volumes/full.raw/snapshots/s1/revert",
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    probe(&vol, "qcow2", "probe.blk=read:21:8");
    same_contents(&dir.join("base.qcow2"), &vol);
    check(&vol);

    // Two snapshots; deleting the older commits it into its base, deleting
    // the newer commits the volume's writes: the data stays.
    for (snap, seed) in [("s2", 24), ("s3", 25)] {
        assert_eq!(
            post(
                agent.addr,
                "/pools/local/volumes/full.raw/snapshots",
                &json!({"name": snap})
            )
            .status,
            201
        );
        probe(&vol, "qcow2", &format!("probe.blk=write:{seed}:8"));
    }
    let refused = post(
        agent.addr,
        "/pools/local/volumes/full.raw/snapshots/s1/revert",
        &json!({}),
    );
    assert_eq!(refused.status, 409, "{}", refused.text());
    for snap in ["s1", "s3", "s2"] {
        let done = task_ok(
            agent.addr,
            "DELETE",
            &format!("/pools/local/volumes/full.raw/snapshots/{snap}"),
            &json!({}),
        );
        eprintln!("deleted {snap}: {done}");
        probe(
            &vol,
            done["volume"]["format"].as_str().unwrap(),
            "probe.blk=read:25:8",
        );
    }
    let info = get(agent.addr, "/pools/local/volumes/full.raw").json();
    assert_eq!(info["snapshots"], json!([]), "{info}");
    let format = info["format"].as_str().unwrap();
    probe(&vol, format, "probe.blk=read:25:8");
    if format == "qcow2" {
        check(&vol);
    }
    assert!(
        !files(&dir).iter().any(|f| f.contains('@')),
        "no snapshot files left: {:?}",
        files(&dir)
    );
}

#[test]
fn a_volume_in_use_is_refused_every_change() {
    let agent = Agent::start("in-use");
    let dir = agent.local();
    create(&agent, "busy.qcow2", "qcow2", 16 * MIB);
    let mut vm = probe_command("64M", "none")
        .args(["--cmdline", "probe.hold"])
        .args([
            "--disk",
            &format!("path={},format=qcow2", dir.join("busy.qcow2").display()),
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let before = std::fs::read(dir.join("busy.qcow2")).unwrap();
    let attempts = [
        ("DELETE", "/pools/local/volumes/busy.qcow2", json!(null)),
        (
            "POST",
            "/pools/local/volumes/busy.qcow2/resize",
            json!({"size": 32 * MIB}),
        ),
        (
            "POST",
            "/pools/local/volumes/busy.qcow2/snapshots",
            json!({"name": "s"}),
        ),
        (
            "PUT",
            "/pools/local/volumes/busy.qcow2/template",
            json!(null),
        ),
    ];
    for (method, path, body) in attempts {
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let a = http(agent.addr, method, path, &body);
        assert_eq!(a.status, 409, "{method} {path}: {}", a.text());
        assert!(a.error().contains("in use"), "{}", a.text());
    }
    let t = run_task(
        agent.addr,
        "POST",
        "/pools/local/volumes/busy.qcow2/convert",
        &json!({"format": "raw"}),
    );
    assert_eq!(t["state"], "failed", "{t}");
    assert!(t["error"].as_str().unwrap().contains("in use"), "{t}");
    vm.kill().unwrap();
    vm.wait().unwrap();
    assert!(
        std::fs::read(dir.join("busy.qcow2")).unwrap() == before,
        "nothing changed"
    );
    assert_eq!(files(&dir), [".vireo", "busy.qcow2"]);
}

#[test]
fn bad_input_gets_clear_errors_and_changes_nothing() {
    let agent = Agent::start("bad-input");
    let cases: [(&str, &str, &[u8], u16, &str); 9] = [
        (
            "POST",
            "/pools/local/volumes",
            b"{\"name\":",
            400,
            "bad JSON",
        ),
        (
            "POST",
            "/pools/local/volumes",
            b"{\"name\":\"x\",\"format\":\"vmdk\",\"size\":1048576}",
            400,
            "vmdk",
        ),
        (
            "POST",
            "/pools/local/volumes",
            b"{\"name\":\"../x\",\"format\":\"raw\",\"size\":1048576}",
            400,
            "not a volume name",
        ),
        (
            "POST",
            "/pools/local/volumes",
            b"{\"name\":\"x\",\"format\":\"raw\",\"size\":1000}",
            400,
            "multiple of 512",
        ),
        (
            "POST",
            "/pools/nope/volumes",
            b"{\"name\":\"x\",\"format\":\"raw\",\"size\":1048576}",
            404,
            "no pool 'nope'",
        ),
        (
            "GET",
            "/pools/local/volumes/.vireo",
            b"",
            400,
            "POOL/VOLUME",
        ),
        (
            "POST",
            "/pools",
            b"{\"name\":\"p\",\"kind\":\"dir\",\"path\":\"relative\"}",
            400,
            "absolute",
        ),
        (
            "POST",
            "/pools",
            b"{\"name\":\"p\",\"kind\":\"dir\",\"path\":\"/nonexistent/dir\"}",
            400,
            "not a directory",
        ),
        ("DELETE", "/pools/local", b"", 400, "cannot be removed"),
    ];
    for (method, path, body, status, says) in cases {
        let a = http(agent.addr, method, path, body);
        assert_eq!(a.status, status, "{method} {path}: {}", a.text());
        assert!(a.error().contains(says), "{method} {path}: {}", a.text());
    }
    assert_eq!(files(&agent.local()), Vec::<String>::new());
    assert!(!agent.dir.join("state/pools.json").exists());

    // A dir pool whose directory vanishes.
    let pool_dir = agent.dir.join("elsewhere");
    std::fs::create_dir_all(&pool_dir).unwrap();
    let def = json!({"name": "extra", "kind": "dir", "path": pool_dir});
    assert_eq!(post(agent.addr, "/pools", &def).status, 201);
    assert_eq!(post(agent.addr, "/pools", &def).status, 409);
    let v = post(
        agent.addr,
        "/pools/extra/volumes",
        &json!({"name": "v.raw", "format": "raw", "size": MIB}),
    );
    assert_eq!(v.status, 201, "{}", v.text());
    std::fs::remove_dir_all(&pool_dir).unwrap();
    for (method, path) in [
        ("GET", "/pools/extra/volumes"),
        ("GET", "/pools/extra/volumes/v.raw"),
        ("DELETE", "/pools/extra/volumes/v.raw"),
    ] {
        let a = http(agent.addr, method, path, b"");
        assert_eq!(a.status, 503, "{method} {path}: {}", a.text());
        assert!(a.error().contains("is gone"), "{}", a.text());
    }
    let pools = get(agent.addr, "/pools").json();
    assert_eq!(pools[1]["available"], false, "{pools}");
    assert!(!pool_dir.exists(), "nothing recreated the directory");

    // An NFS pool this kernel cannot mount: the reason, and no definition.
    let nfs = json!({"name": "n", "kind": "nfs", "server": "127.0.0.1", "export": "/srv", "options": "timeo=10,retrans=1"});
    let a = post(agent.addr, "/pools", &nfs);
    if a.status != 201 {
        assert_eq!(a.status, 400, "{}", a.text());
        assert!(
            a.error().contains("mounting 127.0.0.1:/srv"),
            "{}",
            a.text()
        );
        assert_eq!(get(agent.addr, "/pools/n").status, 404);
    }
}

#[test]
fn uploads_and_downloads_stream_without_holding_the_volume_in_memory() {
    let agent = Agent::start("transfer");
    let src = agent.dir.join("upload.raw");
    qemu_img::qemu_img(&["create", "-q", "-f", "raw", qemu_img::arg(&src), "256M"]);
    probe(&src, "raw", "probe.blk=write:31:64");
    let rss_before = agent.rss();
    let up = upload(agent.addr, "/pools/local/volumes/up.raw/data", &src);
    assert_eq!(up.status, 201, "{}", up.text());
    assert_eq!(up.header("x-vireo-received-bytes"), Some("268435456"));
    let grew = agent.rss().saturating_sub(rss_before);
    eprintln!(
        "agent RSS {} MiB before, grew {} MiB over a 256 MiB upload",
        rss_before >> 20,
        grew >> 20
    );
    assert!(
        grew < 64 * MIB,
        "the agent held the upload in memory ({grew} bytes)"
    );
    same_contents(&src, &agent.local().join("up.raw"));
    let down = get(agent.addr, "/pools/local/volumes/up.raw/data");
    assert_eq!(down.status, 200);
    assert!(
        down.body == std::fs::read(&src).unwrap(),
        "the download is the volume"
    );

    // qcow2 round trip, and the guest's view of a linked clone as raw.
    let q = agent.dir.join("q.qcow2");
    qemu_img::qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        qemu_img::arg(&src),
        qemu_img::arg(&q),
    ]);
    assert_eq!(
        upload(
            agent.addr,
            "/pools/local/volumes/q.qcow2/data?format=qcow2",
            &q
        )
        .status,
        201
    );
    assert_eq!(
        http(
            agent.addr,
            "PUT",
            "/pools/local/volumes/q.qcow2/template",
            b""
        )
        .status,
        200
    );
    let c = post(
        agent.addr,
        "/pools/local/volumes/q.qcow2/clone",
        &json!({"name": "c.qcow2", "linked": true}),
    );
    assert_eq!(c.status, 201, "{}", c.text());
    let refused = get(agent.addr, "/pools/local/volumes/c.qcow2/data");
    assert_eq!(refused.status, 409, "{}", refused.text());
    let raw = get(agent.addr, "/pools/local/volumes/c.qcow2/data?format=raw");
    assert_eq!(
        (raw.status, raw.header("x-vireo-format")),
        (200, Some("raw"))
    );
    assert!(
        raw.body == std::fs::read(&src).unwrap(),
        "the clone's raw view"
    );

    // Refused uploads leave nothing behind.
    let overlay = agent.dir.join("overlay.qcow2");
    qemu_img::qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        qemu_img::arg(&q),
        "-F",
        "qcow2",
        qemu_img::arg(&overlay),
    ]);
    let a = upload(agent.addr, "/pools/local/volumes/o.qcow2/data", &overlay);
    assert_eq!(a.status, 400);
    assert!(a.error().contains("backing file"), "{}", a.text());
    let a = upload(agent.addr, "/pools/local/volumes/o.raw/data?format=raw", &q);
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(
        upload(agent.addr, "/pools/local/volumes/up.raw/data", &overlay).status,
        409
    );
    assert_eq!(
        files(&agent.local()),
        [".vireo", "c.qcow2", "q.qcow2", "up.raw"]
    );
}
