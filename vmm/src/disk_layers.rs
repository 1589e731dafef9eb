//! A running VM's disk switched onto a new qcow2 overlay and later
//! committed back, for backups (vzdump's "snapshot" mode done with
//! external overlays): the agent pauses the VM, puts every disk on an
//! overlay (`PUT /vm/disks/{id}/overlay`), resumes it, copies the now
//! frozen base images, then commits (`PUT /vm/disks/{id}/commit`, progress
//! on `GET`) while the guest runs.
//!
//! The switch happens under the disk's lock (the virtio-blk worker holds
//! it while it serves requests), so every request lands wholly before or
//! wholly after it. The overlay's backing file is the disk's own open
//! image: the VMM holds that image's write lock and could not open it a
//! second time, and the same open image (with its dirty tracker) becomes
//! the disk again when the commit ends.
//!
//! Commit: from its start every guest write goes to the overlay and to
//! the base ("write-through"); the clusters the overlay held when it
//! started are copied into the base one chunk at a time, each under the
//! disk's lock. When the last one is copied the base equals the overlay's
//! view, and the disk is switched back to it under the lock; the overlay
//! file is deleted. A failed commit leaves the overlay in place and
//! authoritative (it shadows whatever reached the base); it can be retried.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::backends::{Backends, OpenDisk};
use crate::config::VmConfig;
use crate::devices::virtio::block::disk::{self, DiskBackend, DiskFormat};
use crate::devices::virtio::block::layers::{self, Extent, ExtentKind, SharedDisk};
use crate::devices::virtio::block::qcow2::create::{create, CreateOptions};
use crate::devices::virtio::block::qcow2::Qcow2Disk;
use crate::devices::virtio::block::tracked::Tracked;
use crate::devices::virtio::block::SharedBackend;

/// Where a disk's overlay stands (`GET /vm/disks/{id}/commit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// On the overlay; the base is frozen.
    Overlay,
    Committing,
    /// Back on the base; the overlay is gone.
    Committed,
    /// The commit stopped; the disk is still on the overlay.
    Failed,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerStatus {
    pub disk: String,
    pub phase: Phase,
    pub overlay: PathBuf,
    pub base: String,
    /// Bytes of the overlay copied into the base, and to copy.
    pub done: u64,
    pub total: u64,
    pub error: Option<String>,
}

/// The overlay and its base while a disk is layered.
struct LayerState {
    overlay: Option<Qcow2Disk>,
    base: Option<Arc<Mutex<Box<dyn DiskBackend>>>>,
    write_through: bool,
}

struct Layer {
    state: Arc<Mutex<LayerState>>,
    status: Arc<Mutex<LayerStatus>>,
}

/// Every disk's overlay, by disk id.
#[derive(Default)]
pub struct DiskLayers {
    layers: HashMap<String, Layer>,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a layer request cannot be done.
#[derive(Debug)]
pub enum LayerError {
    /// The request names something that does not exist or cannot be (400).
    Bad(String),
    /// Not now: a job runs, the disk is read-only (409).
    Conflict(String),
    /// The VMM tried and failed (500).
    Failed(String),
}

impl DiskLayers {
    /// Whether some disk is on an overlay or committing: the VM's images
    /// alone do not describe it then (no snapshot, no migration).
    pub fn busy(&self) -> bool {
        self.layers
            .values()
            .any(|l| lock(&l.status).phase != Phase::Committed)
    }

    pub fn status(&self, disk: &str) -> Result<LayerStatus, LayerError> {
        match self.layers.get(disk) {
            Some(l) => Ok(lock(&l.status).clone()),
            None => Err(LayerError::Conflict(format!(
                "disk '{disk}' has had no overlay"
            ))),
        }
    }

    /// Creates a qcow2 overlay at `path` on top of disk `id` and switches
    /// the disk onto it.
    pub fn add_overlay(
        &mut self,
        backends: &Backends,
        config: &VmConfig,
        id: &str,
        path: &Path,
    ) -> Result<(), LayerError> {
        let (index, disk) = find_disk(backends, id)?;
        if disk.readonly {
            return Err(LayerError::Conflict(format!("disk '{id}' is read-only")));
        }
        if let Some(l) = self.layers.get(id) {
            let phase = lock(&l.status).phase;
            if phase != Phase::Committed {
                return Err(LayerError::Conflict(format!(
                    "disk '{id}' is already on an overlay ({phase:?})"
                )));
            }
        }
        let format = config.disks[index].format;
        let base_path = config.disks[index].path.clone();
        let state = switch_onto_overlay(disk, &base_path, format, path)?;
        let status = LayerStatus {
            disk: id.to_string(),
            phase: Phase::Overlay,
            overlay: path.to_path_buf(),
            base: disk.path.clone(),
            done: 0,
            total: 0,
            error: None,
        };
        self.layers.insert(
            id.to_string(),
            Layer {
                state,
                status: Arc::new(Mutex::new(status)),
            },
        );
        Ok(())
    }

    /// Starts committing disk `id`'s overlay into its base (a thread).
    pub fn start_commit(&mut self, backends: &Backends, id: &str) -> Result<(), LayerError> {
        let (_, disk) = find_disk(backends, id)?;
        let Some(layer) = self.layers.get(id) else {
            return Err(LayerError::Conflict(format!(
                "disk '{id}' is not on an overlay"
            )));
        };
        {
            let mut status = lock(&layer.status);
            match status.phase {
                Phase::Overlay | Phase::Failed => {}
                phase => {
                    return Err(LayerError::Conflict(format!(
                        "disk '{id}' cannot be committed now ({phase:?})"
                    )))
                }
            }
            status.phase = Phase::Committing;
            status.error = None;
        }
        let job = CommitJob {
            disk: disk.backend.clone(),
            state: layer.state.clone(),
            status: layer.status.clone(),
        };
        std::thread::Builder::new()
            .name("vireo-commit".into())
            .spawn(move || {
                crate::seccomp::install(crate::seccomp::ThreadKind::Commit);
                job.run()
            })
            .map(|_| ())
            .map_err(|e| {
                lock(&layer.status).phase = Phase::Failed;
                LayerError::Failed(format!("cannot start the commit: {e}"))
            })
    }
}

fn find_disk<'a>(backends: &'a Backends, id: &str) -> Result<(usize, &'a OpenDisk), LayerError> {
    backends
        .disks
        .iter()
        .enumerate()
        .find(|(_, d)| d.id == id)
        .ok_or_else(|| {
            let ids: Vec<&str> = backends.disks.iter().map(|d| d.id.as_str()).collect();
            LayerError::Bad(format!("no disk '{id}' (disks: {})", ids.join(", ")))
        })
}

/// The name the overlay stores for its backing file: the base's file name
/// when both share a directory (the pair can then move together), else
/// the base's absolute path.
fn backing_name(base: &Path, overlay: &Path) -> Result<String, LayerError> {
    let canon = |p: &Path| {
        p.canonicalize()
            .map_err(|e| LayerError::Bad(format!("'{}': {e}", p.display())))
    };
    let base = canon(base)?;
    let overlay_dir = canon(
        overlay
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    let name = match (base.parent(), base.file_name()) {
        (Some(dir), Some(file)) if dir == overlay_dir => PathBuf::from(file),
        _ => base,
    };
    name.into_os_string()
        .into_string()
        .map_err(|_| LayerError::Bad("the base image's path is not UTF-8".into()))
}

/// Under the disk's lock: flush it, create the overlay, open it over the
/// disk's open image and make it the disk.
fn switch_onto_overlay(
    disk: &OpenDisk,
    base_path: &Path,
    format: DiskFormat,
    path: &Path,
) -> Result<Arc<Mutex<LayerState>>, LayerError> {
    let backing = backing_name(base_path, path)?;
    let mut guard = lock(&disk.backend);
    guard
        .flush()
        .map_err(|e| LayerError::Failed(format!("flushing disk '{}': {e}", disk.id)))?;
    let opts = CreateOptions {
        size: Some(disk.size),
        backing: Some(backing),
        backing_format: format,
        ..Default::default()
    };
    create(path, &opts).map_err(|e| LayerError::Bad(e.to_string()))?;
    let file = disk::open_file(path, false, false)
        .and_then(|f| disk::lock_or_explain(&f, path, true).map(|()| f))
        .map_err(|e| LayerError::Failed(e.to_string()))?;
    let old = std::mem::replace(&mut *guard, Box::new(Switching(disk.size)));
    let base = Arc::new(Mutex::new(old));
    match Qcow2Disk::open_over(file, path, Box::new(SharedDisk(base.clone()))) {
        Ok(overlay) => {
            let state = Arc::new(Mutex::new(LayerState {
                overlay: Some(overlay),
                base: Some(base),
                write_through: false,
            }));
            let layered = Layered(state.clone());
            *guard = Box::new(Tracked::with_dirty(Box::new(layered), disk.dirty.clone()));
            Ok(state)
        }
        Err(e) => {
            // The failed open dropped its handle on the base: it is ours again.
            if let Ok(old) = Arc::try_unwrap(base) {
                *guard = old.into_inner().unwrap_or_else(|e| e.into_inner());
            }
            let _ = std::fs::remove_file(path);
            Err(LayerError::Failed(e.to_string()))
        }
    }
}

/// What the disk is for the instant between taking its image out and
/// putting the overlay in (under the disk's lock: nothing sees it).
struct Switching(u64);

impl DiskBackend for Switching {
    fn size(&self) -> u64 {
        self.0
    }
    fn read_at(&mut self, _: &mut [u8], _: u64) -> std::io::Result<()> {
        Err(switching())
    }
    fn write_at(&mut self, _: &[u8], _: u64) -> std::io::Result<()> {
        Err(switching())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn write_zeroes(&mut self, _: u64, _: u64, _: bool) -> std::io::Result<()> {
        Err(switching())
    }
    fn discard(&mut self, _: u64, _: u64) -> std::io::Result<()> {
        Err(switching())
    }
}

fn switching() -> std::io::Error {
    std::io::Error::other("the disk is being switched between images")
}

/// The disk while it is layered: the overlay, and in write-through the
/// base too.
struct Layered(Arc<Mutex<LayerState>>);

impl LayerState {
    fn overlay(&mut self) -> std::io::Result<&mut Qcow2Disk> {
        self.overlay.as_mut().ok_or_else(switching)
    }

    /// The base, when writes must reach it too.
    fn through(&self) -> Option<SharedDisk> {
        match (&self.base, self.write_through) {
            (Some(b), true) => Some(SharedDisk(b.clone())),
            _ => None,
        }
    }

    /// Makes the base read like the overlay over `[offset, offset + len)`.
    fn mirror_range(&mut self, offset: u64, len: u64) -> std::io::Result<()> {
        let Some(mut base) = self.through() else {
            return Ok(());
        };
        let overlay = self.overlay()?;
        let mut buf = Vec::new();
        for e in overlay.top_extents(offset, len)? {
            layers::commit_piece(overlay, &mut base, e, &mut buf)?;
        }
        Ok(())
    }
}

impl DiskBackend for Layered {
    fn size(&self) -> u64 {
        lock(&self.0).overlay.as_ref().map_or(0, |o| o.size())
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        lock(&self.0).overlay()?.read_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let mut st = lock(&self.0);
        st.overlay()?.write_at(buf, offset)?;
        match st.through() {
            Some(mut base) => base.write_at(buf, offset),
            None => Ok(()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let mut st = lock(&self.0);
        st.overlay()?.flush()?;
        match st.through() {
            Some(mut base) => base.flush(),
            None => Ok(()),
        }
    }
    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> std::io::Result<()> {
        let mut st = lock(&self.0);
        st.overlay()?.write_zeroes(offset, len, unmap)?;
        match st.through() {
            Some(mut base) => base.write_zeroes(offset, len, unmap),
            None => Ok(()),
        }
    }
    fn discard(&mut self, offset: u64, len: u64) -> std::io::Result<()> {
        let mut st = lock(&self.0);
        st.overlay()?.discard(offset, len)?;
        // Formats discard differently (qcow2 whole clusters, raw exact
        // ranges): the base gets the overlay's result, not the request.
        st.mirror_range(offset, len)
    }
    fn discard_granularity(&self) -> u64 {
        lock(&self.0)
            .overlay
            .as_ref()
            .map_or(4096, |o| o.discard_granularity())
    }
}

struct CommitJob {
    disk: SharedBackend,
    state: Arc<Mutex<LayerState>>,
    status: Arc<Mutex<LayerStatus>>,
}

impl CommitJob {
    fn run(self) {
        let outcome = self.copy().and_then(|()| self.switch_back());
        let mut status = lock(&self.status);
        match outcome {
            Ok(()) => {
                status.phase = Phase::Committed;
                let _ = std::fs::remove_file(&status.overlay);
            }
            Err(e) => {
                eprintln!("vireo-vmm: committing disk '{}' failed: {e}", status.disk);
                status.phase = Phase::Failed;
                status.error = Some(e);
            }
        }
    }

    /// Turns write-through on and copies what the overlay held then.
    fn copy(&self) -> Result<(), String> {
        let pieces = {
            let _disk = lock(&self.disk);
            let mut st = lock(&self.state);
            st.write_through = true;
            let overlay = st.overlay().map_err(|e| e.to_string())?;
            let extents = overlay
                .top_extents(0, overlay.size())
                .map_err(|e| format!("reading the overlay's map: {e}"))?;
            layers::commit_pieces(&extents)
        };
        let total = pieces.iter().map(|e| e.len).sum();
        lock(&self.status).total = total;
        let mut buf = Vec::new();
        for piece in pieces {
            self.copy_piece(piece, &mut buf)
                .map_err(|e| format!("copying {} bytes at {}: {e}", piece.len, piece.offset))?;
            lock(&self.status).done += piece.len;
        }
        Ok(())
    }

    fn copy_piece(&self, piece: Extent, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let _disk = lock(&self.disk);
        let mut st = lock(&self.state);
        let Some(mut base) = st.through() else {
            return Err(switching());
        };
        debug_assert_ne!(piece.kind, ExtentKind::Backing);
        layers::commit_piece(st.overlay()?, &mut base, piece, buf)
    }

    /// Under the disk's lock: the base, flushed, becomes the disk again.
    fn switch_back(&self) -> Result<(), String> {
        let mut disk = lock(&self.disk);
        let mut st = lock(&self.state);
        let mut base = st.through().ok_or("the base is gone")?;
        base.flush()
            .map_err(|e| format!("flushing the base: {e}"))?;
        drop(base);
        drop(st.overlay.take());
        let shared = st.base.take().ok_or("the base is gone")?;
        drop(st);
        match Arc::try_unwrap(shared) {
            Ok(image) => {
                *disk = image.into_inner().unwrap_or_else(|e| e.into_inner());
                Ok(())
            }
            Err(_) => Err("the base image is still shared".into()),
        }
    }
}
