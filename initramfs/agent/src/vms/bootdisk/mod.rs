//! Boot from the VM's own disk, the way Xen's pygrub does: read the image
//! (through the VMM's disk code), find its partitions and file systems,
//! follow boot loader spec entries or the usual `/boot/vmlinuz` and
//! `/boot/initrd.img` names, copy the kernel and initrd out, and boot them
//! with the image's root. So a stock cloud image boots with no installer
//! and no firmware.
//!
//! Search, on each partition in table order (the first hit wins):
//! 1. `/loader/entries/*.conf`, `/boot/loader/entries/*.conf`: the newest
//!    entry's `linux`, `initrd` and `options`;
//! 2. `/boot/vmlinuz` + `/boot/initrd.img`, `/vmlinuz` + `/initrd.img`
//!    (the symlinks Ubuntu and Debian keep to the current kernel);
//! 3. the newest `vmlinuz-VERSION` in `/boot` or `/` with its
//!    `initrd.img-VERSION`, `initramfs-VERSION.img` or `initrd-VERSION.img`.
//!
//! The root is what the entry's options say, else the partition the kernel
//! was found on (`root=PARTUUID=...`, which Linux resolves with or without
//! an initrd), or, for a kernel on a separate /boot file system, the first
//! other partition that has `/etc/fstab`.

mod bls;
mod fs;
mod image;
mod kernel_config;
mod partitions;

use std::path::{Path, PathBuf};

use crate::storage::ResolvedVolume;
use fs::BootFs;
use image::{Image, View};
use partitions::Partition;

const MAX_KERNEL: u64 = 256 << 20;
const MAX_INITRD: u64 = 1 << 30;
const MAX_ENTRY: u64 = 64 << 10;

/// What was found, copied into the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

/// A kernel found on one file system, before it is copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    kernel: String,
    initrd: Option<String>,
    /// The entry's options, when a loader entry named the kernel.
    options: Option<String>,
    /// Found at the top of a file system with no /etc: a separate /boot.
    separate_boot: bool,
}

/// Finds the kernel on the disk `volume` (the VM's disk number
/// `disk_index`) and copies it (and its initrd) into `out`.
pub fn extract(
    volume: &ResolvedVolume,
    out: &Path,
    disk_index: usize,
) -> Result<FoundBoot, String> {
    let image = Image::open(volume)?;
    let parts = partitions::find(&View::whole(&image))?;
    let mut notes = Vec::new();
    let mut opened: Vec<(Partition, Box<dyn BootFs>)> = Vec::new();
    for p in parts {
        match fs::open(&View::part(&image, p.start, p.len)) {
            Some(f) => opened.push((p, f)),
            None => notes.push(format!("{}: no ext2/3/4 or FAT file system", label(&p))),
        }
    }
    for (p, f) in &opened {
        match find_on(f.as_ref()) {
            Ok(found) => return copy_out(&found, p, f.as_ref(), &opened, out, disk_index),
            Err(why) => notes.push(format!("{} ({}): {why}", label(p), f.kind())),
        }
    }
    if notes.is_empty() {
        notes.push("the partition table lists no partitions".into());
    }
    Err(format!("no bootable kernel found: {}", notes.join("; ")))
}

fn label(p: &Partition) -> String {
    match p.number {
        0 => "the whole disk (no partition table)".into(),
        n => format!("partition {n}"),
    }
}

fn find_on(f: &dyn BootFs) -> Result<Candidate, String> {
    if let Some(c) = from_loader_entries(f) {
        return Ok(c);
    }
    let separate_boot =
        |path: &str| !path.starts_with("/boot/") && !f.is_file("/etc/fstab") && !has_dir(f, "/etc");
    for (kernel, initrd) in [
        ("/boot/vmlinuz", "/boot/initrd.img"),
        ("/vmlinuz", "/initrd.img"),
    ] {
        if f.is_file(kernel) {
            return Ok(Candidate {
                kernel: kernel.into(),
                initrd: f.is_file(initrd).then(|| initrd.to_string()),
                options: None,
                separate_boot: separate_boot(kernel),
            });
        }
    }
    for dir in ["/boot", ""] {
        if let Some((kernel, initrd)) = newest_versioned(f, dir) {
            let separate = separate_boot(&kernel);
            return Ok(Candidate {
                kernel,
                initrd,
                options: None,
                separate_boot: separate,
            });
        }
    }
    Err("no loader entries, no /boot/vmlinuz or /vmlinuz, no vmlinuz-VERSION in /boot or /".into())
}

fn has_dir(f: &dyn BootFs, path: &str) -> bool {
    !f.list(path).is_empty()
}

fn from_loader_entries(f: &dyn BootFs) -> Option<Candidate> {
    for dir in ["/loader/entries", "/boot/loader/entries"] {
        let entries: Vec<bls::Entry> = f
            .list(dir)
            .into_iter()
            .filter(|n| n.ends_with(".conf"))
            .filter_map(|n| {
                let text = f.read(&format!("{dir}/{n}"), MAX_ENTRY).ok()?;
                Some(bls::parse(&n, &String::from_utf8_lossy(&text)))
            })
            .collect();
        let Some(entry) = bls::newest(entries) else {
            continue;
        };
        // Paths are relative to the file system holding /boot: with /boot
        // on the root file system they may lack the /boot prefix.
        let locate = |p: &str| {
            let p = format!("/{}", p.trim_start_matches('/'));
            let in_boot = format!("/boot{p}");
            [p, in_boot].into_iter().find(|c| f.is_file(c))
        };
        let kernel = entry.linux.as_deref().and_then(locate)?;
        return Some(Candidate {
            separate_boot: !kernel.starts_with("/boot/") && !has_dir(f, "/etc"),
            kernel,
            initrd: entry.initrd.first().and_then(|i| locate(i)),
            options: Some(entry.options.join(" ")).filter(|o| !o.is_empty()),
        });
    }
    None
}

/// The newest `vmlinuz-V` in `dir` and the initrd of the same version.
fn newest_versioned(f: &dyn BootFs, dir: &str) -> Option<(String, Option<String>)> {
    let names = f.list(if dir.is_empty() { "/" } else { dir });
    let version = names
        .iter()
        .filter_map(|n| n.strip_prefix("vmlinuz-"))
        .filter(|v| f.is_file(&format!("{dir}/vmlinuz-{v}")))
        .max_by(|a, b| bls::compare_versions(a, b))?;
    let initrd = [
        format!("{dir}/initrd.img-{version}"),
        format!("{dir}/initramfs-{version}.img"),
        format!("{dir}/initrd-{version}.img"),
    ]
    .into_iter()
    .find(|p| f.is_file(p));
    Some((format!("{dir}/vmlinuz-{version}"), initrd))
}

fn copy_out(
    found: &Candidate,
    part: &Partition,
    f: &dyn BootFs,
    all: &[(Partition, Box<dyn BootFs>)],
    out: &Path,
    disk_index: usize,
) -> Result<FoundBoot, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let kernel = out.join("vmlinuz");
    let initrd_path = out.join("initrd.img");
    let _ = std::fs::remove_file(&initrd_path);
    f.copy_to(&found.kernel, &kernel, MAX_KERNEL)?;
    if let Some(release) = kernel_release(&kernel) {
        kernel_config::check(f, &release)
            .map_err(|e| format!("{} ({}): {e}", label(part), f.kind()))?;
    }
    let initrd = match &found.initrd {
        Some(i) => {
            f.copy_to(i, &initrd_path, MAX_INITRD)?;
            Some(initrd_path)
        }
        None => None,
    };
    let root_part = match found.separate_boot {
        true => all
            .iter()
            .find(|(p, other)| p.number != part.number && other.is_file("/etc/fstab"))
            .map_or(part, |(p, _)| p),
        false => part,
    };
    Ok(FoundBoot {
        kernel,
        initrd,
        cmdline: cmdline(found.options.as_deref(), root_part, disk_index),
    })
}

/// The release of the kernel copied to `path`, from its bzImage header.
fn kernel_release(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(64 << 10)
        .read_to_end(&mut head)
        .ok()?;
    kernel_config::release(&head)
}

/// The entry's options (or `root=... ro`), with the serial console the
/// VMM gives the guest.
fn cmdline(options: Option<&str>, root: &Partition, disk_index: usize) -> String {
    let mut words: Vec<String> = options
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect();
    if !words.iter().any(|w| w.starts_with("root=")) {
        words.insert(0, format!("root={}", root_device(root, disk_index)));
    }
    if !words.iter().any(|w| w == "ro" || w == "rw") {
        words.push("ro".into());
    }
    if !words.iter().any(|w| w.starts_with("console=ttyS0")) {
        words.push("console=ttyS0".into());
    }
    words.join(" ")
}

/// PARTUUID=..., or the disk itself (vda, vdb, ...) without a table.
fn root_device(p: &Partition, disk_index: usize) -> String {
    match &p.partuuid {
        Some(u) => format!("PARTUUID={u}"),
        None => format!("/dev/vd{}", (b'a' + (disk_index % 26) as u8) as char),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let p = Partition {
            number: 1,
            start: 0,
            len: 1,
            partuuid: Some("abcd-01".into()),
        };
        assert_eq!(
            cmdline(None, &p, 0),
            "root=PARTUUID=abcd-01 ro console=ttyS0"
        );
        assert_eq!(
            cmdline(Some("root=UUID=x rw quiet"), &p, 0),
            "root=UUID=x rw quiet console=ttyS0"
        );
        let bare = Partition {
            partuuid: None,
            ..p
        };
        assert_eq!(cmdline(None, &bare, 1), "root=/dev/vdb ro console=ttyS0");
    }
}
