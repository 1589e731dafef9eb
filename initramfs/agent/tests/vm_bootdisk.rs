//! Boot from the VM's own disk: disks built here (GPT or MBR or none,
//! ext4 or FAT, raw or qcow2) carry the probe as their "kernel"; the probe
//! prints the command line it was given, which shows the root the agent
//! chose. Disks with nothing bootable are refused with what was looked at.

#[path = "vm_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Node;
use serde_json::json;

const LONG: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An ext4 image of `tree` (mkfs.ext4 -d: no mount, no root).
fn ext4_image(tree: &Path, out: &Path) {
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(tree)
        .arg(out)
        .arg("16M"));
}

/// A GPT disk with one partition holding `fs`, whose unique GUID is
/// 12345678-9abc-def0-1122-334455667788.
fn gpt_disk(fs: &Path, out: &Path) {
    let fs_bytes = std::fs::read(fs).unwrap();
    let mut f = std::fs::File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(out)
        .unwrap();
    f.set_len(2 * MIB + fs_bytes.len() as u64).unwrap();
    let mut gpt = gptman::GPT::new_from(&mut f, 512, [7; 16]).unwrap();
    gpt[1] = gptman::GPTPartitionEntry {
        // Linux file system data, 0FC63DAF-8483-4772-8E79-3D69D8477DE4.
        partition_type_guid: [
            0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47,
            0x7d, 0xe4,
        ],
        unique_partition_guid: [
            0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
            0x77, 0x88,
        ],
        starting_lba: 2048,
        ending_lba: 2048 + fs_bytes.len() as u64 / 512 - 1,
        attribute_bits: 0,
        partition_name: "root".into(),
    };
    gpt.write_into(&mut f).unwrap();
    gptman::GPT::write_protective_mbr_into(&mut f, 512).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&fs_bytes, MIB).unwrap();
}

/// An MBR disk (signature deadbeef) with one FAT partition holding `fs`.
fn mbr_disk(fs: &Path, out: &Path) {
    let fs_bytes = std::fs::read(fs).unwrap();
    let mut disk = vec![0u8; MIB as usize];
    disk[440..444].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    let entry = &mut disk[446..462];
    entry[0] = 0x80;
    entry[4] = 0x0c;
    entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
    entry[12..16].copy_from_slice(&((fs_bytes.len() / 512) as u32).to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xaa;
    disk.extend_from_slice(&fs_bytes);
    std::fs::write(out, disk).unwrap();
}

fn tree(node: &Node, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let dir = node.dir.join(name);
    for (path, bytes) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    dir
}

fn disk_vm(name: &str, volume: &str) -> serde_json::Value {
    json!({"name": name, "memory_mib": 64, "disks": [{"volume": volume}],
        "boot": {"kind": "disk", "cmdline": "probe.hold"}})
}

fn uuid_dir(node: &Node, vm: &serde_json::Value) -> PathBuf {
    node.run().join("vms").join(vm["uuid"].as_str().unwrap())
}

#[test]
fn gpt_ext4_boots_the_newest_kernel_with_its_partition_as_root() {
    let node = Node::new("bd-gpt");
    let agent = node.agent(&[]);
    let probe = std::fs::read(&node.probe).unwrap();
    let t = tree(
        &node,
        "root",
        &[
            (
                "boot/vmlinuz-6.1.0-9-amd64",
                b"an older kernel that is not one",
            ),
            ("boot/vmlinuz-6.1.0-10-amd64", &probe),
            ("boot/initrd.img-6.1.0-10-amd64", b"the matching initrd"),
            ("boot/initrd.img-6.1.0-9-amd64", b"the old initrd"),
            ("etc/fstab", b"/dev/vda1 / ext4 defaults 0 1\n"),
        ],
    );
    ext4_image(&t, &node.dir.join("root.ext4"));
    gpt_disk(
        &node.dir.join("root.ext4"),
        &node.local_pool().join("gpt.raw"),
    );
    let vm = agent.ok("POST", "/vms", Some(disk_vm("g", "local/gpt.raw")), 201);
    agent.ok("POST", "/vms/g/start", None, 200);
    let log = agent.wait_log("g", "PROBE done ok", LONG);
    let cmdline = log
        .lines()
        .find(|l| l.starts_with("PROBE cmdline"))
        .unwrap();
    assert!(
        cmdline.starts_with("PROBE cmdline root=PARTUUID=12345678-9abc-def0-1122-334455667788 ro console=ttyS0 probe.hold"),
        "{cmdline}"
    );
    let initrd = std::fs::read(uuid_dir(&node, &vm).join("boot/initrd.img")).unwrap();
    assert_eq!(initrd, b"the matching initrd");
    agent.ok("POST", "/vms/g/destroy", None, 200);
}

#[test]
fn a_bare_ext4_disk_boots_through_the_vmlinuz_symlink() {
    let node = Node::new("bd-bare");
    let agent = node.agent(&[]);
    let probe = std::fs::read(&node.probe).unwrap();
    let t = tree(
        &node,
        "root",
        &[("boot/vmlinuz-6.1.0-10-amd64", &probe), ("etc/fstab", b"")],
    );
    std::os::unix::fs::symlink("boot/vmlinuz-6.1.0-10-amd64", t.join("vmlinuz")).unwrap();
    ext4_image(&t, &node.local_pool().join("bare.raw"));
    agent.ok("POST", "/vms", Some(disk_vm("b", "local/bare.raw")), 201);
    agent.ok("POST", "/vms/b/start", None, 200);
    let log = agent.wait_log("b", "PROBE done ok", LONG);
    assert!(
        log.contains("PROBE cmdline root=/dev/vda ro console=ttyS0 probe.hold"),
        "{log}"
    );
    agent.ok("POST", "/vms/b/destroy", None, 200);
}

#[test]
fn mbr_fat_loader_entry_in_a_qcow2_image() {
    let node = Node::new("bd-bls");
    let agent = node.agent(&[]);
    let fat = node.dir.join("esp.fat");
    run(Command::new("mkfs.fat")
        .args(["-C", "-n", "BOOT"])
        .arg(&fat)
        .arg("16384"));
    let entry = node.dir.join("vireo.conf");
    std::fs::write(&entry, "title Probe\nversion 2.0\nlinux /vmlinuz-probe\ninitrd /initrd-probe\noptions root=UUID=1234-abcd quiet\n").unwrap();
    let older = node.dir.join("old.conf");
    std::fs::write(&older, "title Old\nversion 1.9\nlinux /vmlinuz-none\n").unwrap();
    std::fs::write(node.dir.join("initrd"), b"fat initrd").unwrap();
    let i = |p: &Path| format!("{}", p.display());
    run(Command::new("mmd").args(["-i", &i(&fat), "::/loader", "::/loader/entries"]));
    for (from, to) in [
        (node.probe.clone(), "::/vmlinuz-probe"),
        (node.dir.join("initrd"), "::/initrd-probe"),
        (entry, "::/loader/entries/vireo.conf"),
        (older, "::/loader/entries/old.conf"),
    ] {
        run(Command::new("mcopy")
            .args(["-i", &i(&fat)])
            .arg(&from)
            .arg(to));
    }
    let raw = node.dir.join("mbr.raw");
    mbr_disk(&fat, &raw);
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&raw)
        .arg(node.local_pool().join("esp.qcow2")));
    let vm = agent.ok("POST", "/vms", Some(disk_vm("f", "local/esp.qcow2")), 201);
    agent.ok("POST", "/vms/f/start", None, 200);
    let log = agent.wait_log("f", "PROBE done ok", LONG);
    assert!(
        log.contains("PROBE cmdline root=UUID=1234-abcd quiet ro console=ttyS0 probe.hold"),
        "{log}"
    );
    assert_eq!(
        std::fs::read(uuid_dir(&node, &vm).join("boot/initrd.img")).unwrap(),
        b"fat initrd"
    );
    agent.ok("POST", "/vms/f/destroy", None, 200);
}

#[test]
fn a_disk_with_nothing_bootable_is_refused_with_what_was_looked_at() {
    let node = Node::new("bd-none");
    let agent = node.agent(&[]);
    std::fs::write(
        node.local_pool().join("zeros.raw"),
        vec![0u8; 4 * MIB as usize],
    )
    .unwrap();
    let t = tree(&node, "data", &[("home/readme", b"no kernel here")]);
    ext4_image(&t, &node.dir.join("data.ext4"));
    gpt_disk(
        &node.dir.join("data.ext4"),
        &node.local_pool().join("data.raw"),
    );
    for (name, volume, needle) in [
        (
            "z",
            "local/zeros.raw",
            "the whole disk (no partition table): no ext2/3/4 or FAT file system",
        ),
        (
            "d",
            "local/data.raw",
            "partition 1 (ext4): no loader entries, no /boot/vmlinuz or /vmlinuz",
        ),
    ] {
        agent.ok("POST", "/vms", Some(disk_vm(name, volume)), 201);
        let (status, e) = agent.call("POST", &format!("/vms/{name}/start"), None);
        assert_eq!(status, 422, "{e}");
        let msg = e["error"].as_str().unwrap();
        assert!(
            msg.contains("no bootable kernel found") && msg.contains(needle),
            "{msg}"
        );
        assert!(msg.contains(volume), "{msg}");
        assert_eq!(agent.vm(name)["state"], "stopped");
    }
    assert!(node.vmm_pids().is_empty());
}

/// The first KiB of a bzImage: the setup header's magic and the pointer to
/// its version string (boot protocol 2.00+), as Debian's kernels have.
fn bzimage_head(version: &str) -> Vec<u8> {
    let mut image = vec![0u8; 0x400];
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
    image[0x300..0x300 + version.len()].copy_from_slice(version.as_bytes());
    image
}

#[test]
fn a_kernel_that_cannot_see_virtio_mmio_disks_is_refused_with_the_reason() {
    let node = Node::new("bd-cfg");
    let agent = node.agent(&[]);
    let kernel = bzimage_head("6.1.0-50-amd64 (debian-kernel@lists.debian.org) #1 SMP");
    let t = tree(
        &node,
        "root",
        &[
            ("boot/vmlinuz-6.1.0-50-amd64", &kernel),
            ("boot/initrd.img-6.1.0-50-amd64", b"initrd"),
            (
                "boot/config-6.1.0-50-amd64",
                b"# CONFIG_ACPI is not set\nCONFIG_VIRTIO_MMIO=m\n# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set\n",
            ),
            ("etc/fstab", b""),
        ],
    );
    ext4_image(&t, &node.dir.join("root.ext4"));
    gpt_disk(
        &node.dir.join("root.ext4"),
        &node.local_pool().join("debian.raw"),
    );
    agent.ok("POST", "/vms", Some(disk_vm("k", "local/debian.raw")), 201);
    let (status, e) = agent.call("POST", "/vms/k/start", None);
    assert_eq!(status, 422, "{e}");
    let msg = e["error"].as_str().unwrap();
    for want in [
        "kernel 6.1.0-50-amd64 cannot see this VM's disks",
        "/boot/config-6.1.0-50-amd64",
        "neither CONFIG_ACPI=y",
    ] {
        assert!(msg.contains(want), "want '{want}' in: {msg}");
    }
    assert_eq!(agent.vm("k")["state"], "stopped");
    assert!(node.vmm_pids().is_empty());
}
