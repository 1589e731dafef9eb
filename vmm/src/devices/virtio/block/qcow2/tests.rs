//! qcow2 against QEMU's own tool: images qemu-img makes are read and
//! written here, and what is written here passes `qemu-img check` and
//! reads back identically through `qemu-img convert`.

use std::path::Path;
use std::process::Command;

use super::create::{create, CreateOptions};
use super::*;
use crate::devices::virtio::block::disk::{self, DiskFormat};
use crate::devices::virtio::block::test_dir::Dir;

const MIB: u64 = 1 << 20;

fn qemu_img(args: &[&str]) -> std::process::Output {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (package qemu-utils) is installed");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `qemu-img create -q -f qcow2 OPTS IMG [SIZE]`.
fn qemu_create(img: &Path, opts: &[&str], size: Option<&str>) {
    let mut args = vec!["create", "-q", "-f", "qcow2"];
    args.extend(opts);
    args.push(arg(img));
    args.extend(size);
    qemu_img(&args);
}

/// `qemu-img check` is clean and `qemu-img convert` reads `model` back.
fn assert_qemu_reads(img: &Path, model: &[u8], what: &str) {
    check_clean(img);
    let raw = img.with_extension("raw");
    let _ = std::fs::remove_file(&raw);
    qemu_img(&["convert", "-O", "raw", arg(img), arg(&raw)]);
    assert!(
        std::fs::read(&raw).unwrap() == model,
        "{what}: qemu-img convert sees other bytes"
    );
}

/// Flushes and closes `d`, which must leave `img` clean for `qemu-img check`.
fn close_clean(mut d: Box<dyn DiskBackend>, img: &Path) {
    d.flush().unwrap();
    drop(d);
    check_clean(img);
}

/// Scribbles on `img` (and `model`), then QEMU checks it and reads it back.
fn scribble_and_verify(img: &Path, model: &mut [u8], what: &str) {
    let mut d = open_rw(img);
    scribble(&mut *d, model);
    assert!(read_all(&mut *d) == model, "{what}: reads before flush");
    close_clean(d, img);
    assert_qemu_reads(img, model, what);
}

fn check_clean(path: &Path) {
    let out = qemu_img(&["check", "-f", "qcow2", arg(path)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No errors were found"), "{text}");
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn open_rw(path: &Path) -> Box<dyn DiskBackend> {
    let opts = OpenOptions {
        format: DiskFormat::Qcow2,
        readonly: false,
        direct: false,
        ..Default::default()
    };
    disk::open(path, opts).unwrap()
}

fn read_all(d: &mut dyn DiskBackend) -> Vec<u8> {
    let mut v = vec![0u8; d.size() as usize];
    d.read_at(&mut v, 0).unwrap();
    v
}

/// Writes scattered, unaligned pieces into `disk` and into `model`.
fn scribble(disk: &mut dyn DiskBackend, model: &mut [u8]) {
    for (i, (off, len)) in [
        (0u64, 512usize),
        (65536 - 512, 4096),
        (3 * MIB + 1024, 200_000),
        (7 * MIB, 65536),
    ]
    .into_iter()
    .enumerate()
    {
        let data = pattern(i as u8 + 1, len);
        disk.write_at(&data, off).unwrap();
        model[off as usize..off as usize + len].copy_from_slice(&data);
    }
}

#[test]
fn writes_to_a_qemu_made_image_pass_qemu_check_and_read_back() {
    let dir = Dir::new("qcow2", "qemu-made");
    let img = dir.path("a.qcow2");
    qemu_create(&img, &[], Some("8M"));
    let mut model = vec![0u8; 8 * MIB as usize];
    scribble_and_verify(&img, &mut model, "qemu-made");
}

#[test]
fn image_created_here_is_read_by_qemu() {
    let dir = Dir::new("qcow2", "created");
    let img = dir.path("v.qcow2");
    create(
        &img,
        &CreateOptions {
            size: Some(8 * MIB),
            ..Default::default()
        },
    )
    .unwrap();
    check_clean(&img);
    let mut model = vec![0u8; 8 * MIB as usize];
    scribble_and_verify(&img, &mut model, "created here");
    // Never overwrites.
    assert!(create(
        &img,
        &CreateOptions {
            size: Some(MIB),
            ..Default::default()
        }
    )
    .is_err());
}

#[test]
fn overlay_copies_partial_clusters_from_its_backing_chain() {
    let dir = Dir::new("qcow2", "chain");
    let base_raw = dir.path("base.raw");
    let mut model = pattern(0x5a, 8 * MIB as usize);
    std::fs::write(&base_raw, &model).unwrap();
    // raw <- mid.qcow2 (some writes) <- top.qcow2, names relative.
    let mid = dir.path("mid.qcow2");
    create(
        &mid,
        &CreateOptions {
            backing: Some("base.raw".into()),
            backing_format: DiskFormat::Raw,
            cluster_bits: 17,
            ..Default::default()
        },
    )
    .unwrap();
    let mut m = open_rw(&mid);
    m.write_at(&pattern(9, 1000 * 512), 5 * MIB + 512).unwrap();
    model[(5 * MIB + 512) as usize..][..1000 * 512].copy_from_slice(&pattern(9, 1000 * 512));
    close_clean(m, &mid);
    let top = dir.path("top.qcow2");
    qemu_create(&top, &["-b", "mid.qcow2", "-F", "qcow2"], None);
    let base_before = std::fs::read(&base_raw).unwrap();
    let mid_before = std::fs::read(&mid).unwrap();
    scribble_and_verify(&top, &mut model, "overlay");
    check_clean(&mid);
    assert!(
        std::fs::read(&base_raw).unwrap() == base_before,
        "backing file changed"
    );
    assert!(
        std::fs::read(&mid).unwrap() == mid_before,
        "backing file changed"
    );
}

#[test]
fn compressed_and_zero_clusters_read_and_rewrite() {
    let dir = Dir::new("qcow2", "compressed");
    let raw = dir.path("src.raw");
    let mut model = pattern(3, 4 * MIB as usize);
    model[MIB as usize..2 * MIB as usize].fill(0);
    std::fs::write(&raw, &model).unwrap();
    let img = dir.path("c.qcow2");
    qemu_img(&[
        "convert",
        "-c",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    // Explicit zero clusters over a written range.
    qemu_create(&dir.path("z.qcow2"), &[], Some("4M"));
    let mut d = open_rw(&img);
    assert!(read_all(&mut *d) == model, "compressed clusters read wrong");
    // Rewriting part of a compressed cluster copies the rest of it.
    d.write_at(&pattern(77, 512), 3 * MIB + 4096).unwrap();
    model[(3 * MIB + 4096) as usize..][..512].copy_from_slice(&pattern(77, 512));
    d.flush().unwrap();
    assert!(read_all(&mut *d) == model);
    close_clean(d, &img);

    let z = dir.path("z.qcow2");
    let mut d = open_rw(&z);
    d.write_at(&pattern(1, 2 * MIB as usize), 0).unwrap();
    d.flush().unwrap();
    drop(d);
    // qemu-io (qemu-utils) turns written clusters into v3 zero clusters.
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -z 65536 131072"])
        .arg(&z)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut d = open_rw(&z);
    let mut buf = vec![1u8; 4 * 65536];
    d.read_at(&mut buf, 0).unwrap();
    assert!(
        buf[65536..3 * 65536].iter().all(|&b| b == 0),
        "zero clusters not read as zeros"
    );
    assert!(
        buf[..65536] == pattern(1, 65536)[..]
            && buf[3 * 65536..] == pattern(1, 4 * 65536)[3 * 65536..]
    );
    // A partial write into a zero cluster keeps the rest zero.
    d.write_at(&[9u8; 512], 65536 + 512).unwrap();
    d.flush().unwrap();
    d.read_at(&mut buf, 0).unwrap();
    assert!(
        buf[65536..65536 + 512].iter().all(|&b| b == 0)
            && buf[65536 + 512..65536 + 1024].iter().all(|&b| b == 9)
    );
    assert!(buf[65536 + 1024..3 * 65536].iter().all(|&b| b == 0));
    close_clean(d, &z);
}

fn expect_open_error(path: &Path, what: &str) {
    let before = std::fs::read(path).unwrap();
    let opts = OpenOptions {
        format: DiskFormat::Qcow2,
        readonly: false,
        direct: false,
        ..Default::default()
    };
    let err = disk::open(path, opts)
        .err()
        .unwrap_or_else(|| panic!("{what}: opened"))
        .to_string();
    assert!(err.contains(what), "{err} lacks '{what}'");
    assert!(
        std::fs::read(path).unwrap() == before,
        "{what}: image changed"
    );
}

fn poke(path: &Path, at: u64, bytes: &[u8]) {
    let f = File::options().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

#[test]
fn corrupt_images_fail_at_open_unchanged() {
    let dir = Dir::new("qcow2", "corrupt");
    let fresh = |name: &str| {
        let p = dir.path(name);
        qemu_create(&p, &[], Some("8M"));
        p
    };
    let p = fresh("magic.qcow2");
    poke(&p, 0, b"QFI\0");
    expect_open_error(&p, "bad magic");
    let p = fresh("l1.qcow2");
    poke(&p, 40, &(1u64 << 40).to_be_bytes());
    expect_open_error(&p, "L1 table");
    let p = fresh("order.qcow2");
    poke(&p, 96, &7u32.to_be_bytes());
    expect_open_error(&p, "refcount_order 7");
    let p = fresh("cbits.qcow2");
    poke(&p, 20, &30u32.to_be_bytes());
    expect_open_error(&p, "cluster_bits 30");
    let p = fresh("dirty.qcow2");
    poke(&p, 79, &[1]);
    expect_open_error(&p, "dirty");
    let p = fresh("unknown.qcow2");
    poke(&p, 72, &(1u64 << 40).to_be_bytes());
    expect_open_error(&p, "unknown incompatible");
    let p = fresh("truncated.qcow2");
    File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(100)
        .unwrap();
    expect_open_error(&p, "");

    // a -> b -> a
    let (a, b) = (dir.path("a.qcow2"), dir.path("b.qcow2"));
    qemu_create(&a, &[], Some("1M"));
    qemu_create(&b, &["-b", "a.qcow2", "-F", "qcow2"], None);
    let rebase = [
        "rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2",
    ];
    qemu_img(&[&rebase[..], &[arg(&a)]].concat());
    expect_open_error(&b, "loops back");
    let m = dir.path("missing.qcow2");
    qemu_create(&m, &["-u", "-b", "gone.qcow2", "-F", "qcow2"], Some("1M"));
    expect_open_error(&m, "gone.qcow2");
}

#[test]
fn qcow2_opened_as_raw_is_refused() {
    let dir = Dir::new("qcow2", "asraw");
    let p = dir.path("x.qcow2");
    qemu_create(&p, &[], Some("1M"));
    let err = disk::open(&p, OpenOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("use format=qcow2"), "{err}");
}

#[test]
fn refcount_widths_and_small_clusters() {
    let cases = [
        "refcount_bits=1,cluster_size=512",
        "refcount_bits=8,cluster_size=4096",
        "refcount_bits=64,cluster_size=65536",
        "compat=0.10,cluster_size=65536",
    ];
    for (n, opt) in cases.into_iter().enumerate() {
        let dir = Dir::new("qcow2", &format!("rc{n}"));
        let img = dir.path("r.qcow2");
        qemu_create(&img, &["-o", opt], Some("8M"));
        let mut model = vec![0u8; 8 * MIB as usize];
        scribble_and_verify(&img, &mut model, &format!("{opt}: written"));
        // Zeroing whole clusters (v2 has no zero flag: they become unallocated).
        let mut d = open_rw(&img);
        d.write_zeroes(3 * MIB, MIB, false).unwrap();
        model[3 * MIB as usize..4 * MIB as usize].fill(0);
        close_clean(d, &img);
        assert_qemu_reads(&img, &model, opt);
    }
}

#[test]
fn write_zeroes_and_discard_free_clusters_and_stay_consistent() {
    let dir = Dir::new("qcow2", "zeroes");
    let base = dir.path("base.raw");
    std::fs::write(&base, pattern(8, 4 * MIB as usize)).unwrap();
    for backing in [false, true] {
        let img = dir.path(&format!("z{backing}.qcow2"));
        let opts: &[&str] = if backing {
            &["-b", "base.raw", "-F", "raw"]
        } else {
            &[]
        };
        qemu_create(&img, opts, Some("4M"));
        let mut model = if backing {
            pattern(8, 4 * MIB as usize)
        } else {
            vec![0u8; 4 * MIB as usize]
        };
        let mut d = open_rw(&img);
        d.write_at(&pattern(2, 3 * MIB as usize), 0).unwrap();
        model[..3 * MIB as usize].copy_from_slice(&pattern(2, 3 * MIB as usize));
        d.flush().unwrap();
        // Whole clusters plus a partial one on each side, then a discard.
        d.write_zeroes(65536 - 1024, 3 * 65536 + 2048, false)
            .unwrap();
        model[65536 - 1024..][..3 * 65536 + 2048].fill(0);
        d.discard(MIB, MIB + 512).unwrap();
        model[MIB as usize..2 * MIB as usize].fill(0);
        // Zeroing beyond what was written hides the backing file.
        d.write_zeroes(3 * MIB, 65536, true).unwrap();
        model[3 * MIB as usize..][..65536].fill(0);
        assert!(
            read_all(&mut *d) == model,
            "backing={backing}: reads before flush"
        );
        close_clean(d, &img);
        assert_qemu_reads(&img, &model, &format!("backing={backing}"));
        let map = qemu_img(&["map", "--output=json", arg(&img)]);
        let map = String::from_utf8_lossy(&map.stdout);
        let freed = format!("{{ \"start\": {}, \"length\": {}, \"depth\": 0, \"present\": true, \"zero\": true, \"data\": false", MIB, MIB);
        assert!(
            map.contains(&freed),
            "backing={backing}: discarded MiB not zero clusters:\n{map}"
        );
    }
}

#[test]
fn data_pointer_into_metadata_fails_the_write_and_spares_the_image() {
    let dir = Dir::new("qcow2", "overlap");
    let img = dir.path("o.qcow2");
    qemu_create(&img, &[], Some("4M"));
    let mut d = open_rw(&img);
    d.write_at(&[1u8; 512], 0).unwrap();
    d.flush().unwrap();
    drop(d);
    // Point guest cluster 0 at the refcount table (cluster 1 of a fresh image).
    let f = File::open(&img).unwrap();
    let mut raw = [0u8; 8];
    f.read_exact_at(&mut raw, 40).unwrap();
    let l1 = u64::from_be_bytes(raw);
    f.read_exact_at(&mut raw, l1).unwrap();
    let l2 = u64::from_be_bytes(raw) & tables::OFFSET_MASK;
    f.read_exact_at(&mut raw, 48).unwrap();
    let reftable = u64::from_be_bytes(raw);
    poke(&img, l2, &(reftable | tables::COPIED).to_be_bytes());
    let before = std::fs::read(&img).unwrap();
    let mut d = open_rw(&img);
    let err = d.write_at(&[2u8; 512], 0).unwrap_err();
    assert!(err.to_string().contains("overlaps metadata"), "{err}");
    d.flush().unwrap();
    drop(d);
    assert!(std::fs::read(&img).unwrap() == before, "image changed");
}

#[test]
fn refcount_table_grows_when_the_file_outgrows_it() {
    let dir = Dir::new("qcow2", "grow");
    let img = dir.path("g.qcow2");
    // 512-byte clusters: qemu-img's one-cluster refcount table covers 8 MiB of file.
    qemu_create(&img, &["-o", "cluster_size=512"], Some("64M"));
    let table_before = std::fs::read(&img).unwrap()[48..60].to_vec();
    let mut model = vec![0u8; 64 * MIB as usize];
    let mut d = open_rw(&img);
    for (i, at) in (0..40u64).map(|i| (i, i * 3 * MIB / 2 + 4096)) {
        let data = pattern(i as u8, 256 * 1024);
        d.write_at(&data, at).unwrap();
        model[at as usize..][..data.len()].copy_from_slice(&data);
    }
    d.flush().unwrap();
    drop(d);
    assert_ne!(
        std::fs::read(&img).unwrap()[48..60].to_vec(),
        table_before,
        "table did not move"
    );
    assert_qemu_reads(&img, &model, "grown");
}

/// An image may only reach backing files in its own directory tree, or in
/// a `backing-dir` the operator named: an absolute name, a `..` name and a
/// symlink out of the tree are refused (image unchanged); inside the tree,
/// or once allowed, the same chains open.
#[test]
fn backing_files_outside_the_image_tree_are_refused_unless_allowed() {
    let d = Dir::new("qcow2", "confine");
    let (vm, elsewhere) = (d.path("vm"), d.path("elsewhere"));
    std::fs::create_dir_all(vm.join("sub")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let base = elsewhere.join("base.qcow2");
    qemu_create(&base, &[], Some("1M"));
    qemu_create(&vm.join("sub/inner.qcow2"), &[], Some("1M"));
    std::os::unix::fs::symlink(&base, vm.join("link.qcow2")).unwrap();
    let overlays = [
        ("abs.qcow2", arg(&base).to_string()),
        ("rel.qcow2", "../elsewhere/base.qcow2".to_string()),
        ("via-link.qcow2", "link.qcow2".to_string()),
    ];
    for (name, backing) in &overlays {
        qemu_create(&vm.join(name), &["-b", backing, "-F", "qcow2"], None);
        expect_open_error(&vm.join(name), "outside the image's directory");
    }
    qemu_create(
        &vm.join("top.qcow2"),
        &["-b", "sub/inner.qcow2", "-F", "qcow2"],
        None,
    );
    close_clean(open_rw(&vm.join("top.qcow2")), &vm.join("top.qcow2"));

    let allowed = OpenOptions {
        format: DiskFormat::Qcow2,
        backing_dirs: vec![elsewhere.clone()],
        ..Default::default()
    };
    for (name, _) in &overlays {
        let disk = disk::open(&vm.join(name), allowed.clone()).unwrap();
        close_clean(disk, &vm.join(name));
    }
}
