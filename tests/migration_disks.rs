//! Migration with disks: copied (no shared storage) — the probe writes its
//! qcow2 disk throughout; afterwards the destination's image is identical
//! to the source's (`qemu-img compare`), clean, and the guest's flushed
//! generations all there — and shared (one image, handed over with its
//! lock); and the channel over TLS.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vireo_tests::qemu_img::{arg, check_clean, create, qemu_img};
use vireo_tests::scratch_dir;
use vireo_tests::vmm_process::{assert_continuous, wait_exit, Vmm};

const WAIT: Duration = Duration::from_secs(120);
const STRESS: &str = "PROBE blk stress gen=";

fn wait_listen(vmm: &Vmm) {
    vireo_tests::wait_for("the destination to listen", WAIT, || {
        vmm.stderr().contains("waiting for a migration")
    });
}

/// Moves the stressing guest from `src` to a new VMM with `dst_args`;
/// returns the destination (paused: it has written nothing yet) and the
/// transcript so far.
fn migrate_once(
    dir: &Path,
    mut src: Vmm,
    body: &str,
    url: &str,
    dst_args: &[String],
) -> (Vmm, String) {
    let mut args = dst_args.to_vec();
    args.push("--paused".into());
    let dst = Vmm::incoming(None, dir, "dst", url, &args);
    wait_listen(&dst);
    src.migrate(body);
    assert_eq!(wait_exit(&mut src, WAIT), 0, "source: {}", src.stderr());
    (dst, src.serial())
}

/// Resumes a paused destination and waits for the guest to write on.
fn resume(dst: &Vmm) {
    assert_eq!(vireo_tests::api_call(&dst.api, "PUT", "/vm/resume").0, 204);
    dst.wait_counters(STRESS, 2, WAIT);
}

/// Stops the VMM through its API; it must exit 0 (disks flushed).
fn shut_down(mut vmm: Vmm) -> String {
    let (code, _) = vireo_tests::api_call(&vmm.api, "PUT", "/vm/shutdown");
    assert_eq!(code, 204);
    assert_eq!(wait_exit(&mut vmm, WAIT), 0, "{}", vmm.stderr());
    vmm.serial()
}

#[test]
fn copied_disks_arrive_identical_while_the_guest_writes() {
    let dir = scratch_dir("mig-copy");
    let (src_img, dst_img) = (dir.join("src.qcow2"), dir.join("dst.qcow2"));
    create("qcow2", &src_img, &[], Some("16M"));
    let disk = |p: &Path| {
        vec![
            "--disk".to_string(),
            format!("path={},format=qcow2", p.display()),
        ]
    };
    let src = Vmm::boot(
        None,
        &dir,
        "src",
        2,
        "256M",
        "probe.blk=stress:9:8",
        &disk(&src_img),
    );
    src.wait_counters(STRESS, 3, WAIT);
    let url = format!("unix:{}", dir.join("mig.sock").display());
    let body = format!(r#"{{"url": "{url}", "disks": "copy"}}"#);
    // The destination's image does not exist yet: it is made, 16 MiB, qcow2.
    let (dst, before) = migrate_once(&dir, src, &body, &url, &disk(&dst_img));
    // At the hand-over both images hold the same guest-visible bytes (-U:
    // the paused destination holds its image's lock).
    let out = qemu_img(&[
        "compare",
        "-U",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        arg(&src_img),
        arg(&dst_img),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Images are identical"), "{text}");
    check_clean(&src_img);
    resume(&dst);
    let after = shut_down(dst);
    assert_continuous(&(before + &after), STRESS);
    check_clean(&dst_img);
    std::fs::remove_dir_all(dir).unwrap();
}

/// With copy, the destination must be given its own image: the source's is
/// locked, and a size mismatch is refused.
#[test]
fn a_copy_into_the_wrong_image_is_refused_and_the_source_runs_on() {
    let dir = scratch_dir("mig-copy-bad");
    let src_img = dir.join("src.qcow2");
    let small = dir.join("small.qcow2");
    create("qcow2", &src_img, &[], Some("16M"));
    create("qcow2", &small, &[], Some("8M"));
    let src_disk = vec![
        "--disk".into(),
        format!("path={},format=qcow2", src_img.display()),
    ];
    let src = Vmm::boot(
        None,
        &dir,
        "src",
        1,
        "128M",
        "probe.blk=stress:3:8",
        &src_disk,
    );
    src.wait_counters(STRESS, 2, WAIT);
    let url = format!("unix:{}", dir.join("mig.sock").display());
    for (target, why) in [(&src_img, "already in use"), (&small, "migrating disk")] {
        let args = vec![
            "--disk".into(),
            format!("path={},format=qcow2", target.display()),
        ];
        let mut dst = Vmm::incoming(None, &dir, "dst", &url, &args);
        wait_listen(&dst);
        src.migrate(&format!(r#"{{"url": "{url}", "disks": "copy"}}"#));
        assert_eq!(wait_exit(&mut dst, WAIT), 1);
        assert!(dst.stderr().contains(why), "{}", dst.stderr());
        vireo_tests::wait_for("the source to fail", WAIT, || {
            src.phase().as_deref() == Some("failed")
        });
        assert!(src.migration().contains(why), "{}", src.migration());
        let n = src.counters(STRESS).len();
        src.wait_counters(STRESS, n + 2, WAIT);
    }
    shut_down(src);
    check_clean(&src_img);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_shared_image_is_handed_over_with_its_lock() {
    let dir = scratch_dir("mig-shared");
    let img = dir.join("shared.qcow2");
    create("qcow2", &img, &[], Some("16M"));
    let disk = vec![
        "--disk".into(),
        format!("path={},format=qcow2", img.display()),
    ];
    let src = Vmm::boot(None, &dir, "src", 2, "256M", "probe.blk=stress:5:8", &disk);
    src.wait_counters(STRESS, 3, WAIT);
    let url = format!("unix:{}", dir.join("mig.sock").display());
    let body = format!(r#"{{"url": "{url}"}}"#);
    // No --disk on the destination: the same path, opened after the hand-over.
    let (dst, before) = migrate_once(&dir, src, &body, &url, &[]);
    resume(&dst);
    // The image is the destination's now: a third VMM cannot take it.
    let out = Command::new(vireo_tests::vmm_binary())
        .args(["--kernel", vireo_tests::probe_elf().to_str().unwrap()])
        .args(["--disk", &format!("path={},format=qcow2", img.display())])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"));
    let after = shut_down(dst);
    assert_continuous(&(before + &after), STRESS);
    check_clean(&img);
    std::fs::remove_dir_all(dir).unwrap();
}

/// In `dir`: a CA (ca.pem) and a certificate for 127.0.0.1 it signed
/// (node.pem, node.key), made with openssl.
fn make_certs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let sh = format!(
        "cd {d} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
         -keyout ca.key -out ca.pem -days 2 -subj /CN=vireo-test-ca 2>/dev/null && \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout node.key \
         -out node.csr -subj /CN=node 2>/dev/null && \
         printf 'subjectAltName=IP:127.0.0.1\\n' > ext && \
         openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
         -out node.pem -days 2 -extfile ext 2>/dev/null",
        d = dir.display()
    );
    assert!(Command::new("sh")
        .arg("-c")
        .arg(sh)
        .status()
        .unwrap()
        .success());
}

/// --tls-cert/--tls-key/--tls-ca from `dir`.
fn tls_args(dir: &Path) -> Vec<String> {
    let mut args = Vec::new();
    for (flag, file) in [
        ("--tls-cert", "node.pem"),
        ("--tls-key", "node.key"),
        ("--tls-ca", "ca.pem"),
    ] {
        args.push(flag.to_string());
        args.push(dir.join(file).display().to_string());
    }
    args
}

/// Over TLS, with certificates of one CA on both ends, the guest moves; a
/// destination with a certificate of another CA is refused by the source,
/// which runs on.
#[test]
fn the_channel_can_be_tls_and_refuses_a_stranger() {
    let dir = scratch_dir("mig-tls");
    let (ours, theirs) = (dir.join("ours"), dir.join("theirs"));
    make_certs(&ours);
    make_certs(&theirs);
    let src = Vmm::boot(
        None,
        &dir,
        "src",
        1,
        "128M",
        "probe.dirty=4",
        &tls_args(&ours),
    );
    src.wait_counters("PROBE dirty gen=", 2, WAIT);
    let url = "tls://127.0.0.1:47901";
    let mut stranger = Vmm::incoming(None, &dir, "stranger", url, &tls_args(&theirs));
    wait_listen(&stranger);
    src.migrate(&format!(r#"{{"url": "{url}"}}"#));
    vireo_tests::wait_for("the source to refuse", WAIT, || {
        src.phase().as_deref() == Some("failed")
    });
    let why = src.migration();
    assert!(why.contains("TLS") || why.contains("certificate"), "{why}");
    assert_eq!(wait_exit(&mut stranger, WAIT), 1);
    let n = src.counters("PROBE dirty gen=").len();
    src.wait_counters("PROBE dirty gen=", n + 1, WAIT);

    let mut src = src;
    let dst = Vmm::incoming(None, &dir, "dst", url, &tls_args(&ours));
    wait_listen(&dst);
    src.migrate(&format!(r#"{{"url": "{url}"}}"#));
    assert_eq!(wait_exit(&mut src, WAIT), 0, "{}", src.stderr());
    dst.wait_counters("PROBE dirty gen=", 1, WAIT);
    assert_continuous(&(src.serial() + &dst.serial()), "PROBE dirty gen=");
    std::fs::remove_dir_all(dir).unwrap();
}
