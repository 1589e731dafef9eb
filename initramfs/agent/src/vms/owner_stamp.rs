//! Owner stamps: one disk, one node, whatever the store says
//! (docs/cluster.md, "One disk, one node").
//!
//! A VMM holds OFD locks on its images while it runs (QEMU's byte scheme,
//! vireo-vmm's `disk.rs`); the kernel, or the NFS server's lease for a
//! shared pool, drops them when the VMM dies, even by `kill -9` or with its
//! node. Those locks are the liveness; beside each image the agent leaves a
//! stamp, `.vireo/IMAGE.owner` in the image's directory, saying which node,
//! VM and VMM took it. Before a VMM starts, a disk that another process
//! holds is refused with the stamp's holder named; a stamp whose image
//! nobody locks any more is stale and simply overwritten.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vireo_vmm::devices::virtio::block::disk;

use super::launch_args::Disk;
use crate::error::ApiError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The node's name (its cluster name, else its host name).
    pub node: String,
    pub vm: String,
    pub uuid: String,
    /// The VMM's process id on that node.
    pub pid: i32,
    /// Seconds since the epoch.
    pub since: u64,
}

/// Where `image`'s stamp lives.
pub fn path_of(image: &Path) -> PathBuf {
    let name = image.file_name().unwrap_or_default().to_string_lossy();
    image
        .parent()
        .unwrap_or(Path::new("/"))
        .join(".vireo")
        .join(format!("{name}.owner"))
}

/// Before a VMM opens `disks`: each that another process locks in a way
/// this VM's use conflicts with is refused (409), naming its stamp's holder.
pub fn check(disks: &[Disk]) -> Result<(), ApiError> {
    for d in disks {
        let image = &d.resolved.path;
        if !held(image, !d.readonly) {
            continue;
        }
        let holder = read(image).map_or_else(
            || "another VM or program (no owner stamp)".to_string(),
            |s| {
                format!(
                    "VM '{}' on node '{}' (its VMM, pid {}, took it at {})",
                    s.vm, s.node, s.pid, s.since
                )
            },
        );
        return Err(ApiError::conflict(format!(
            "disk '{}' is in use by {holder}: one disk never runs on two nodes",
            image.display()
        )));
    }
    Ok(())
}

/// After a VMM took `disks`: each writable one's stamp names it.
pub fn write(disks: &[Disk], stamp: &Stamp) {
    for d in disks.iter().filter(|d| !d.readonly) {
        let path = path_of(&d.resolved.path);
        let text = serde_json::to_string(stamp).unwrap_or_default();
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| write_atomic(&path, &text));
        if let Err(e) = written {
            eprintln!(
                "vireo-agent: owner stamp {}: {e} (the image lock still guards it)",
                path.display()
            );
        }
    }
}

pub fn read(image: &Path) -> Option<Stamp> {
    let text = std::fs::read_to_string(path_of(image)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("owner.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Whether another open file holds a lock on `image` that a `writer` (or a
/// reader) conflicts with, as the VMM would find when it locks it (the
/// VMM's own check, QEMU's lock bytes).
fn held(image: &Path, writer: bool) -> bool {
    let Ok(file) = File::open(image) else {
        return false;
    };
    disk::locked_by_others(&file, writer).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_sits_in_the_pools_meta_directory() {
        let p = path_of(Path::new("/pool/web.raw"));
        assert_eq!(p, Path::new("/pool/.vireo/web.raw.owner"));
    }

    #[test]
    fn a_locked_image_is_held_and_an_unlocked_one_is_not() {
        let dir = std::env::temp_dir().join(format!("stamp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("d.raw");
        std::fs::write(&image, [0u8; 512]).unwrap();
        assert!(!held(&image, true));
        let holder = File::options().read(true).write(true).open(&image).unwrap();
        disk::lock_image(&holder, true).unwrap();
        assert!(held(&image, true) && held(&image, false));
        drop(holder);
        assert!(!held(&image, true));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
