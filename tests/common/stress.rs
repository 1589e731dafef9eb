//! The probe's `probe.blk=stress:SEED:MIB` workload, computed on the host:
//! generation g = 1, 2, … rewrites 16 chunks of 64 KiB (firmware/probe/src/virtio.rs)
//! and is flushed before the guest prints `PROBE blk stress gen=g`.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use crate::{complete_lines, probe_command, probe_mix, wait_for};

pub const CHUNK: usize = 64 << 10;
/// Chunk writes per generation (GEN_WRITES in the probe).
pub const GEN_WRITES: u64 = 16;

/// The chunk indices generation `gen` of a `stress:SEED` run writes on a
/// disk of `chunks` chunks.
pub fn gen_chunks(seed: u64, gen: u64, chunks: u64) -> impl Iterator<Item = u64> {
    (0..GEN_WRITES).map(move |i| probe_mix(seed, gen * GEN_WRITES + i) % chunks)
}

/// The 64 KiB generation `gen` writes at chunk `chunk`.
pub fn chunk_bytes(seed: u64, gen: u64, chunk: u64) -> Vec<u8> {
    (0..(CHUNK / 8) as u64)
        .map(|w| {
            if w % 64 == 0 {
                probe_mix(!seed.wrapping_add(gen), chunk * 128 + w / 64)
            } else {
                probe_mix(seed, w % 512)
            }
        })
        .flat_map(u64::to_le_bytes)
        .collect()
}

/// Applies generation `gen` to `disk` (the whole disk's bytes).
pub fn apply(disk: &mut [u8], seed: u64, gen: u64) {
    let chunks = (disk.len() / CHUNK) as u64;
    for c in gen_chunks(seed, gen, chunks) {
        let at = c as usize * CHUNK;
        disk[at..at + CHUNK].copy_from_slice(&chunk_bytes(seed, gen, c));
    }
}

/// The disk after generations 1..=`flushed` on `start`, and the same plus
/// the generation after it (which may be on disk in part).
pub fn expected(start: &[u8], seed: u64, flushed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut must = start.to_vec();
    (1..=flushed).for_each(|g| apply(&mut must, seed, g));
    let mut may = must.clone();
    apply(&mut may, seed, flushed + 1);
    (must, may)
}

/// The first sector of `disk` that holds neither `must`'s nor `may`'s bytes.
pub fn first_stray_sector(disk: &[u8], must: &[u8], may: &[u8]) -> Option<usize> {
    assert_eq!(disk.len(), must.len(), "disk size");
    (0..disk.len() / 512).find(|s| {
        let r = s * 512..s * 512 + 512;
        disk[r.clone()] != must[r.clone()] && disk[r.clone()] != may[r]
    })
}

/// The generation a copy of a stress disk (started all zeros) stands at:
/// the g (from `at_least` on) such that it holds all of generations 1..=g
/// and perhaps part of g + 1. None if it is no single moment of the run.
pub fn generation_of(disk: &[u8], seed: u64, at_least: u64) -> Option<u64> {
    let zero = vec![0u8; disk.len()];
    (at_least..at_least + 6).find(|&g| {
        let (must, may) = expected(&zero, seed, g);
        first_stray_sector(disk, &must, &may).is_none()
    })
}

/// The probe running the stress workload on the qcow2 image `img` (disk id
/// disk0) with an API socket; the generations it reports arrive on a
/// channel. Killed when dropped, so a failing test leaves nothing running.
pub struct StressVm {
    pub child: Child,
    pub socket: PathBuf,
    gens: Receiver<u64>,
    /// The newest generation seen.
    pub last: u64,
}

impl StressVm {
    /// `extra`: more vireo-vmm arguments (another disk, ...).
    pub fn start(img: &Path, socket: &Path, seed: u64, mib: u64, extra: &[&str]) -> Self {
        let mut child = probe_command("64M", "stdio")
            .arg("--api-socket")
            .arg(socket)
            .args(["--cmdline", &format!("probe.blk=stress:{seed}:{mib}")])
            .args([
                "--disk",
                &format!("path={},format=qcow2,id=disk0", img.display()),
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn vireo-vmm");
        let (tx, gens) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in complete_lines(stdout) {
                if line.contains("fail") {
                    // Dropping the sender ends every wait for a generation.
                    eprintln!("probe: {line}");
                    return;
                }
                if let Some(n) = line.strip_prefix("PROBE blk stress gen=") {
                    let _ = tx.send(n.trim().parse::<u64>().unwrap());
                }
            }
        });
        let s = socket.to_path_buf();
        wait_for("the API socket", Duration::from_secs(20), || s.exists());
        Self {
            child,
            socket: socket.to_path_buf(),
            gens,
            last: 0,
        }
    }

    /// Waits until the guest reported generation `gen` (or later).
    pub fn until_gen(&mut self, gen: u64) -> u64 {
        while self.last < gen {
            self.last = self
                .gens
                .recv_timeout(Duration::from_secs(60))
                .expect("the probe stopped reporting generations");
        }
        self.last
    }

    /// The newest generation reported so far, without waiting.
    pub fn drain(&mut self) -> u64 {
        for g in self.gens.try_iter() {
            self.last = g;
        }
        self.last
    }
}

impl Drop for StressVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
