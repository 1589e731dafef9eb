//! Backups end to end: the agent's server in this process with a stand-in
//! VM manager (the `VmHost` the real one implements), vireo-vmm running
//! the probe's stress workload (generations of flushed writes). A backup
//! of the running VM must hold one instant of the guest's writes (every
//! generation up to the backup, perhaps part of the next), pause the guest
//! briefly, and leave the running disk holding every flushed write;
//! restores check every checksum; retention keeps exactly N; a corrupt
//! backup is refused with the reason and changes nothing.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};
use vireo_agent::error::ApiError;
use vireo_agent::selftest::SelftestConfig;
use vireo_agent::server::AppState;
use vireo_agent::storage::{VmDisk, VmHost, VmView};
use vireo_agent::store::Paths;
use vireo_tests::stress::StressVm;
use vireo_tests::stress::{expected, first_stray_sector, generation_of};

const MIB: u64 = 1 << 20;
const DISK_MIB: u64 = 32;

/// A `define_vm` call: name, definition, disks, replace.
type Defined = (String, Value, Vec<VmDisk>, bool);

/// The VM manager's part, as these tests need it.
#[derive(Default)]
struct Vms {
    vms: Mutex<HashMap<String, VmView>>,
    defined: Mutex<Vec<Defined>>,
}

impl VmHost for Vms {
    fn vm(&self, name: &str) -> Result<VmView, ApiError> {
        self.vms
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no VM '{name}'")))
    }
    fn define_vm(
        &self,
        name: &str,
        def: &Value,
        disks: &[VmDisk],
        replace: bool,
    ) -> Result<(), ApiError> {
        self.defined
            .lock()
            .unwrap()
            .push((name.into(), def.clone(), disks.to_vec(), replace));
        Ok(())
    }
    fn mark_template(&self, _: &str) -> Result<(), ApiError> {
        Ok(())
    }
}

impl Vms {
    fn add(&self, name: &str, volume: &str, socket: Option<PathBuf>) {
        let view = VmView {
            definition: json!({"name": name, "memory": "64M", "disks": [{"id": "disk0", "volume": volume}]}),
            disks: vec![VmDisk {
                id: "disk0".into(),
                volume: volume.parse().unwrap(),
            }],
            api_socket: socket,
            jail_staging: None,
            template: false,
        };
        self.vms.lock().unwrap().insert(name.into(), view);
    }
}

fn admin() -> vireo_agent::auth::Caller {
    vireo_agent::auth::Caller {
        user: "test".into(),
        role: vireo_agent::auth::Role::Admin,
        tenant: None,
    }
}

/// The agent's server on a thread of its own, on `dir`.
fn serve(dir: &Path, vms: Arc<Vms>) -> SocketAddr {
    let paths = Paths::new(dir.join("state"), dir.join("run")).unwrap();
    let state = AppState::new(SelftestConfig::default(), paths).unwrap();
    state.storage.set_vm_host(vms);
    state.auth.add_static_token(TOKEN, admin());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            vireo_agent::server::serve(listener, state, std::future::pending())
                .await
                .unwrap();
        });
    });
    rx.recv().unwrap()
}

/// Shuts the stress VM down through its API; the last generation it
/// reported.
fn stop(mut vm: StressVm) -> u64 {
    let sock = vm.socket.clone();
    let _ = std::process::Command::new("curl")
        .args([
            "-s",
            "--unix-socket",
            sock.to_str().unwrap(),
            "-X",
            "PUT",
            "http://localhost/vm/shutdown",
        ])
        .output();
    assert!(vm.child.wait().unwrap().success());
    vm.drain()
}

fn raw_of(img: &Path, scratch: &Path) -> Vec<u8> {
    let _ = std::fs::remove_file(scratch);
    qemu_img::qemu_img(&[
        "convert",
        "-U",
        "-O",
        "raw",
        qemu_img::arg(img),
        qemu_img::arg(scratch),
    ]);
    std::fs::read(scratch).unwrap()
}

fn backups(addr: SocketAddr) -> Vec<Value> {
    get(addr, "/pools/local/backups?vm=vm1")
        .json()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_running_vm_is_backed_up_at_one_instant_and_restored_with_checksums() {
    let dir = scratch_dir("backup-live");
    let vms = Arc::new(Vms::default());
    let addr = serve(&dir, vms.clone());
    let local = dir.join("state/pools/local");
    let v = post(
        addr,
        "/pools/local/volumes",
        &json!({"name": "vm1-disk0.qcow2", "format": "qcow2", "size": DISK_MIB * MIB}),
    );
    assert_eq!(v.status, 201, "{}", v.text());
    let img = local.join("vm1-disk0.qcow2");
    let socket = dir.join("vm1.sock");
    let seed = 777;
    let mut vm = StressVm::start(&img, &socket, seed, DISK_MIB, &[]);
    vms.add("vm1", "local/vm1-disk0.qcow2", Some(socket.clone()));

    let mut taken = Vec::new();
    for round in 0..3 {
        // Generations queue up while a backup runs: start from the newest.
        vm.drain();
        let before = vm.until_gen(vm.last + 2);
        let r = task_ok(
            addr,
            "POST",
            "/backups",
            &json!({"vm": "vm1", "storage": "local", "max_backups": 2}),
        );
        let m = &r["backup"];
        eprintln!(
            "backup {round}: paused {:.1} ms, {:.0} MB/s, {} bytes stored, removed {}",
            m["pause_ms"].as_f64().unwrap(),
            r["bytes_per_second"].as_f64().unwrap() / 1e6,
            m["disks"][0]["stored_bytes"],
            r["removed"]
        );
        assert_eq!(
            (m["live"].as_bool(), m["compress"].as_str()),
            (Some(true), Some("zstd"))
        );
        assert!(m["pause_ms"].as_f64().unwrap() <= 100.0, "{m}");
        assert_eq!(m["definition"]["name"], "vm1");
        assert_eq!(m["disks"][0]["sha256"].as_str().unwrap().len(), 64);
        taken.push((m["id"].as_str().unwrap().to_string(), before));
        assert_eq!(backups(addr).len(), (round + 1).min(2), "retention keeps 2");
    }
    let kept: Vec<String> = backups(addr)
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kept,
        [taken[1].0.clone(), taken[2].0.clone()],
        "the oldest went"
    );
    assert!(
        !local.join(".vm1-disk0.qcow2.backup-overlay").exists(),
        "overlays are committed"
    );

    // The running disk kept every flushed write through three overlays.
    let last = stop(vm);
    check(&img);
    let now = raw_of(&img, &dir.join("final.raw"));
    let (must, may) = expected(&vec![0u8; now.len()], seed, last);
    assert_eq!(
        first_stray_sector(&now, &must, &may),
        None,
        "generation {last}"
    );

    // Restore the newest into a new VM: one instant, no earlier than the backup.
    let (id, before) = &taken[2];
    let path = format!("/pools/local/backups/{id}");
    let v = task_ok(addr, "POST", &format!("{path}/verify"), &json!({}));
    assert_eq!(v["verified"], true);
    let r = task_ok(
        addr,
        "POST",
        &format!("{path}/restore"),
        &json!({"vm": "vm2"}),
    );
    eprintln!(
        "restore: {:.0} MB/s",
        r["bytes_per_second"].as_f64().unwrap() / 1e6
    );
    let restored = local.join("vm2-disk0.qcow2");
    check(&restored);
    let bytes = raw_of(&restored, &dir.join("restored.raw"));
    let at = generation_of(&bytes, seed, *before);
    assert!(
        at.is_some(),
        "the restored disk is one instant of the guest's writes after generation {before}"
    );
    let defined = vms.defined.lock().unwrap().clone();
    assert_eq!(defined.len(), 1);
    assert_eq!(
        (
            defined[0].0.as_str(),
            defined[0].2[0].volume.to_string().as_str()
        ),
        ("vm2", "local/vm2-disk0.qcow2")
    );
    assert_eq!(
        defined[0].1["name"], "vm1",
        "the definition is the backed-up one"
    );

    // A corrupt disk file: refused with the reason, nothing made.
    let zst = local.join(format!(".backups/{id}/disk0.raw.zst"));
    let mut raw = std::fs::read(&zst).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x55;
    std::fs::write(&zst, raw).unwrap();
    for (verb, body) in [("restore", json!({"vm": "vm3"})), ("verify", json!({}))] {
        let t = run_task(addr, "POST", &format!("{path}/{verb}"), &body);
        assert_eq!(t["state"], "failed", "{verb}: {t}");
        assert!(
            t["error"].as_str().unwrap().contains("corrupt"),
            "{verb}: {t}"
        );
    }
    assert!(!local.join("vm3-disk0.qcow2").exists());
    assert!(!std::fs::read_dir(&local).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("restore")));
    assert_eq!(vms.defined.lock().unwrap().len(), 1, "no VM defined");

    // A corrupt manifest: refused at once.
    let other = &taken[1].0;
    std::fs::write(
        local.join(format!(".backups/{other}/manifest.json")),
        b"{\"id\": 3",
    )
    .unwrap();
    let a = post(
        addr,
        &format!("/pools/local/backups/{other}/restore"),
        &json!({"vm": "vm4"}),
    );
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.error().contains("manifest"), "{}", a.text());
    let listed = get(addr, "/pools/local/backups").json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["error"].is_string()),
        "{listed}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_stopped_vm_is_backed_up_sparse_and_restored_in_place() {
    let dir = scratch_dir("backup-stopped");
    let vms = Arc::new(Vms::default());
    let addr = serve(&dir, vms.clone());
    let local = dir.join("state/pools/local");
    let v = post(
        addr,
        "/pools/local/volumes",
        &json!({"name": "d.raw", "format": "raw", "size": DISK_MIB * MIB}),
    );
    assert_eq!(v.status, 201);
    let img = local.join("d.raw");
    probe(&img, "raw", "probe.blk=write:41:8");
    vms.add("vm1", "local/d.raw", None);
    let bad = post(addr, "/backups", &json!({"vm": "nope", "storage": "local"}));
    assert_eq!(bad.status, 404, "{}", bad.text());
    let bad = post(
        addr,
        "/backups",
        &json!({"vm": "vm1", "storage": "local", "compress": "gzip"}),
    );
    assert_eq!(bad.status, 400, "{}", bad.text());

    let r = task_ok(
        addr,
        "POST",
        "/backups",
        &json!({"vm": "vm1", "storage": "local", "compress": "none"}),
    );
    let m = &r["backup"];
    assert_eq!(
        (m["live"].as_bool(), m["pause_ms"].is_null()),
        (Some(false), true)
    );
    let id = m["id"].as_str().unwrap();
    let file = local.join(format!(".backups/{id}/disk0.raw"));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.len(), DISK_MIB * MIB);
    assert!(
        meta.blocks() * 512 < 12 * MIB,
        "zeros are holes: {} bytes allocated",
        meta.blocks() * 512
    );

    probe(&img, "raw", "probe.blk=write:42:8");
    // In place: the VM must be stopped.
    vms.add("vm1", "local/d.raw", Some(dir.join("not-there.sock")));
    let busy = post(
        addr,
        &format!("/pools/local/backups/{id}/restore"),
        &json!({}),
    );
    assert_eq!(busy.status, 409, "{}", busy.text());
    vms.add("vm1", "local/d.raw", None);
    task_ok(
        addr,
        "POST",
        &format!("/pools/local/backups/{id}/restore"),
        &json!({}),
    );
    probe(&img, "raw", "probe.blk=read:41:8");
    let defined = vms.defined.lock().unwrap().clone();
    assert_eq!((defined[0].0.as_str(), defined[0].3), ("vm1", true));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_overlay_of_a_backup_whose_vmm_died_is_committed_before_the_volume_is_used() {
    let dir = scratch_dir("backup-dead-vmm");
    let paths = Paths::new(dir.join("state"), dir.join("run")).unwrap();
    let state = AppState::new(SelftestConfig::default(), paths).unwrap();
    let local = dir.join("state/pools/local");
    let req = vireo_agent::storage_api::CreateVolume {
        name: "v.qcow2".into(),
        format: vireo_agent::storage_api::VolumeFormat::Qcow2,
        size: DISK_MIB * MIB,
        tenant: None,
    };
    state.storage.create_volume("local", req).unwrap();
    let img = local.join("v.qcow2");
    probe(&img, "qcow2", "probe.blk=write:51:8");
    // What a VMM killed during a backup leaves: an overlay holding the
    // guest's newer writes.
    let overlay = local.join(".v.qcow2.backup-overlay");
    qemu_img::qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "v.qcow2",
        "-F",
        "qcow2",
        qemu_img::arg(&overlay),
    ]);
    probe(&overlay, "qcow2", "probe.blk=write:52:4");
    let resolved = state
        .storage
        .resolve(&"local/v.qcow2".parse().unwrap())
        .unwrap();
    assert_eq!(resolved.path, img);
    assert!(!overlay.exists());
    check(&img);
    let bytes = raw_of(&img, &dir.join("v.raw"));
    let newer = vireo_tests::probe_disk_pattern(52, 4);
    let older = vireo_tests::probe_disk_pattern(51, 8);
    assert!(bytes[..4 << 20] == newer[..] && bytes[4 << 20..8 << 20] == older[4 << 20..]);

    // A jailed VMM's overlay: in its staging directory, its base recorded
    // as the path inside the jail (which the host does not have).
    let staging = local.join(".jail-staging-0b5e");
    std::fs::create_dir(&staging).unwrap();
    let written = local.join("newest.qcow2");
    let create = [
        "create", "-q", "-f", "qcow2", "-b", "v.qcow2", "-F", "qcow2",
    ];
    qemu_img::qemu_img(&[&create[..], &[qemu_img::arg(&written)]].concat());
    probe(&written, "qcow2", "probe.blk=write:53:2");
    let rebase = ["rebase", "-u", "-b", "/vm/v.qcow2", "-F", "qcow2"];
    qemu_img::qemu_img(&[&rebase[..], &[qemu_img::arg(&written)]].concat());
    let overlay = staging.join(".v.qcow2.backup-overlay");
    std::fs::rename(&written, &overlay).unwrap();
    state
        .storage
        .resolve(&"local/v.qcow2".parse().unwrap())
        .unwrap();
    assert!(!overlay.exists());
    check(&img);
    let bytes = raw_of(&img, &dir.join("v.raw"));
    let newest = vireo_tests::probe_disk_pattern(53, 2);
    assert!(bytes[..2 << 20] == newest[..] && bytes[2 << 20..4 << 20] == newer[2 << 20..]);
    std::fs::remove_dir_all(dir).unwrap();
}
