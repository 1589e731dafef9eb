//! Overlays on open images, committing them back, and growing images,
//! judged by `qemu-img` (check, compare, info).

use std::path::Path;
use std::process::Command;

use super::disk::{self, DiskBackend, DiskFormat, OpenOptions};
use super::layers::{self, ExtentKind, SharedDisk};
use super::qcow2::create::{create, CreateOptions};
use super::qcow2::{resize, Qcow2Disk};
use super::test_dir::Dir;

const MIB: u64 = 1 << 20;

fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn check_clean(p: &Path) {
    let text = qemu_img(&["check", "-f", "qcow2", arg(p)]);
    assert!(text.contains("No errors were found"), "{text}");
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[2] ^ seed)
        .collect()
}

/// Opens an image read-write. A lock just released may still be held for
/// a moment: another test thread's fork (qemu-img) copies every descriptor,
/// and with it the OFD lock, until the child execs; so Locked is retried.
fn open(path: &Path, format: DiskFormat) -> Box<dyn DiskBackend> {
    let opts = OpenOptions {
        format,
        ..Default::default()
    };
    for _ in 0..50 {
        match disk::open(path, opts.clone()) {
            Err(disk::DiskError::Locked(_)) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.unwrap(),
        }
    }
    disk::open(path, opts).unwrap()
}

fn read_all(d: &mut dyn DiskBackend) -> Vec<u8> {
    let mut v = vec![0u8; d.size() as usize];
    d.read_at(&mut v, 0).unwrap();
    v
}

/// `base` with data at 0..3 MiB, then an overlay over it holding new data
/// at 1 MiB (partial clusters) and zeros over 2..3 MiB; returns the view
/// the overlay shows.
fn layered_pair(base: &Path, base_format: DiskFormat, overlay: &Path) -> Vec<u8> {
    let mut b = open(base, base_format);
    b.write_at(&pattern(1, 3 * MIB as usize), 0).unwrap();
    b.flush().unwrap();
    drop(b);
    let opts = CreateOptions {
        backing: Some(base.file_name().unwrap().to_str().unwrap().into()),
        backing_format: base_format,
        cluster_bits: 12,
        ..Default::default()
    };
    create(overlay, &opts).unwrap();
    let mut o = open(overlay, DiskFormat::Qcow2);
    o.write_at(&pattern(2, 300_000), MIB + 100).unwrap();
    o.write_zeroes(2 * MIB, MIB, true).unwrap();
    o.flush().unwrap();
    read_all(&mut *o)
}

#[test]
fn an_overlay_maps_what_it_holds_and_commits_it_into_its_base() {
    for base_format in [DiskFormat::Qcow2, DiskFormat::Raw] {
        let dir = Dir::new("layers", &format!("commit-{base_format:?}"));
        let (base, overlay) = (dir.path("base.img"), dir.path("top.qcow2"));
        match base_format {
            DiskFormat::Qcow2 => qemu_img(&["create", "-q", "-f", "qcow2", arg(&base), "8M"]),
            DiskFormat::Raw => qemu_img(&["create", "-q", "-f", "raw", arg(&base), "8M"]),
        };
        let view = layered_pair(&base, base_format, &overlay);

        let file = disk::open_file(&overlay, true, false).unwrap();
        let mut top = Qcow2Disk::open_over(file, &overlay, open(&base, base_format)).unwrap();
        let map = top.top_extents(0, 8 * MIB).unwrap();
        let data: u64 = map
            .iter()
            .filter(|e| e.kind == ExtentKind::Data)
            .map(|e| e.len)
            .sum();
        let zero: u64 = map
            .iter()
            .filter(|e| e.kind == ExtentKind::Zero)
            .map(|e| e.len)
            .sum();
        // 300,000 bytes from MIB + 100 touch 74 clusters of 4 KiB.
        assert_eq!((data, zero), (74 * 4096, MIB), "{map:?}");
        assert_eq!(map.iter().map(|e| e.len).sum::<u64>(), 8 * MIB);
        drop(top);

        let base_rw = open(&base, base_format);
        let mut calls = 0;
        let mut committed = layers::commit_offline(&overlay, base_rw, |_, _| {
            calls += 1;
            true
        })
        .unwrap();
        assert!(calls > 1);
        assert!(
            read_all(&mut *committed) == view,
            "the base reads as the overlay did"
        );
        drop(committed);
        if base_format == DiskFormat::Qcow2 {
            check_clean(&base);
        }
        let fmt = if base_format == DiskFormat::Qcow2 {
            "qcow2"
        } else {
            "raw"
        };
        qemu_img(&[
            "compare",
            "-f",
            fmt,
            "-F",
            "qcow2",
            arg(&base),
            arg(&overlay),
        ]);
    }
}

#[test]
fn a_cancelled_commit_leaves_the_overlay_view_unchanged() {
    let dir = Dir::new("layers", "commit-cancel");
    let (base, overlay) = (dir.path("base.qcow2"), dir.path("top.qcow2"));
    qemu_img(&["create", "-q", "-f", "qcow2", arg(&base), "8M"]);
    let view = layered_pair(&base, DiskFormat::Qcow2, &overlay);
    let mut n = 0;
    let stopped = layers::commit_offline(&overlay, open(&base, DiskFormat::Qcow2), |_, _| {
        n += 1;
        n < 2 // the first of two pieces is copied, then it stops
    });
    assert!(stopped.is_err());
    check_clean(&base);
    check_clean(&overlay);
    let mut o = open(&overlay, DiskFormat::Qcow2);
    assert!(read_all(&mut *o) == view);
}

#[test]
fn an_overlay_over_an_open_image_reads_through_it_and_never_writes_it() {
    let dir = Dir::new("layers", "over-open");
    let (base, overlay) = (dir.path("base.qcow2"), dir.path("top.qcow2"));
    qemu_img(&["create", "-q", "-f", "qcow2", arg(&base), "4M"]);
    let mut b = open(&base, DiskFormat::Qcow2);
    b.write_at(&pattern(7, MIB as usize), 0).unwrap();
    b.flush().unwrap();
    let shared = std::sync::Arc::new(std::sync::Mutex::new(b));
    let opts = CreateOptions {
        size: Some(4 * MIB),
        backing: Some("base.qcow2".into()),
        ..Default::default()
    };
    create(&overlay, &opts).unwrap();
    let file = disk::open_file(&overlay, false, false).unwrap();
    let mut top =
        Qcow2Disk::open_over(file, &overlay, Box::new(SharedDisk(shared.clone()))).unwrap();
    let mut first = vec![0u8; 4096];
    top.read_at(&mut first, 0).unwrap();
    assert_eq!(first, pattern(7, MIB as usize)[..4096]);
    top.write_at(&[0xab; 512], 512).unwrap();
    top.flush().unwrap();
    drop(top);
    drop(shared);
    check_clean(&base);
    check_clean(&overlay);
    let mut b = open(&base, DiskFormat::Qcow2);
    assert_eq!(
        read_all(&mut *b)[..MIB as usize],
        pattern(7, MIB as usize)[..]
    );
    // An image without a backing file cannot be opened over one.
    let lone = dir.path("lone.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", arg(&lone), "1M"]);
    let file = disk::open_file(&lone, false, false).unwrap();
    let refused = Qcow2Disk::open_over(file, &lone, b)
        .map(|_| ())
        .unwrap_err();
    assert!(refused.to_string().contains("no backing file"), "{refused}");
}

fn virtual_size(p: &Path) -> u64 {
    let info = qemu_img(&["info", "--output=json", arg(p)]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

#[test]
fn growing_keeps_data_moves_the_l1_table_when_needed_and_refuses_shrinking() {
    // 512-byte clusters: one L1 cluster maps 2 MiB, so 1 → 64 MiB moves it;
    // 64 KiB clusters: 1 → 64 MiB fits the same table.
    for cluster in ["512", "65536"] {
        let dir = Dir::new("layers", &format!("grow-{cluster}"));
        let img = dir.path("g.qcow2");
        let opt = format!("cluster_size={cluster}");
        qemu_img(&["create", "-q", "-f", "qcow2", "-o", &opt, arg(&img), "1M"]);
        let mut d = open(&img, DiskFormat::Qcow2);
        let data = pattern(3, MIB as usize);
        d.write_at(&data, 0).unwrap();
        d.flush().unwrap();
        drop(d);
        let before = std::fs::read(&img).unwrap();
        let shrink = resize::grow(&img, 512 * 1024).unwrap_err();
        assert!(shrink.to_string().contains("shrinking"), "{shrink}");
        assert!(
            std::fs::read(&img).unwrap() == before,
            "a refused resize changes nothing"
        );

        resize::grow(&img, 64 * MIB).unwrap();
        check_clean(&img);
        assert_eq!(virtual_size(&img), 64 * MIB);
        let mut d = open(&img, DiskFormat::Qcow2);
        let all = read_all(&mut *d);
        assert!(all[..MIB as usize] == data[..] && all[MIB as usize..].iter().all(|&b| b == 0));
        d.write_at(&pattern(4, 4096), 63 * MIB).unwrap();
        d.flush().unwrap();
        drop(d);
        check_clean(&img);
    }
}
