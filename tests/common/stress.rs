//! The probe's `probe.blk=stress:SEED:MIB` workload, computed on the host:
//! generation g = 1, 2, … rewrites 16 chunks of 64 KiB (firmware/probe/src/virtio.rs)
//! and is flushed before the guest prints `PROBE blk stress gen=g`.

use crate::probe_mix;

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
