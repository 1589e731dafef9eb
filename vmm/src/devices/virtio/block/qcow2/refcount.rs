//! Refcounts and cluster allocation. New clusters are taken from the end
//! of the file, so allocation never has to search for free space or trust
//! a refcount of zero; a crash can only leak clusters (refcount set, never
//! referenced), which `qemu-img check` reports as harmless leaks.
//!
//! Ordering: a cluster's refcount is written before anything points to
//! it (the caller publishes pointers only after a flush), and a new
//! refcount block is durable before the refcount table points to it.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::corrupt;

pub struct Refcounts {
    table: Vec<u64>,
    table_offset: u64,
    cluster_bits: u32,
    /// log2 of the refcount width in bits (0..=6).
    order: u32,
    /// The next cluster to hand out: past everything in the file.
    next_free: u64,
    /// Offsets of the refcount blocks, so guest data never lands on one.
    blocks: HashSet<u64>,
    /// Set while a bigger table is being built: new blocks are named only
    /// in memory until the whole new table is written.
    growing: bool,
}

/// Header fields naming the refcount table: offset (u64) then clusters
/// (u32), contiguous, so one 12-byte write switches tables.
const HEADER_REFTABLE: u64 = 48;

/// Low bits of a refcount table entry that must be zero.
const RT_RESERVED: u64 = 0x1ff;

impl Refcounts {
    /// Loads the refcount table; every block it names must be an aligned
    /// cluster inside the file.
    pub fn load(
        file: &File,
        offset: u64,
        clusters: u32,
        cluster_bits: u32,
        order: u32,
        file_len: u64,
    ) -> Result<Self, String> {
        let cs = 1u64 << cluster_bits;
        let table = read_table(file, offset, u64::from(clusters) * cs / 8)
            .map_err(|e| format!("cannot read the refcount table: {e}"))?;
        for (i, &e) in table.iter().enumerate() {
            if e & RT_RESERVED != 0
                || !e.is_multiple_of(cs)
                || e.checked_add(cs).is_none_or(|end| end > file_len)
            {
                return Err(format!("refcount table entry {i} ({e:#x}) is invalid"));
            }
        }
        let blocks = table.iter().copied().filter(|&b| b != 0).collect();
        Ok(Self {
            blocks,
            growing: false,
            table,
            table_offset: offset,
            cluster_bits,
            order,
            next_free: file_len.next_multiple_of(cs),
        })
    }

    fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Refcount entries in one block.
    fn per_block(&self) -> u64 {
        (self.cluster_size() * 8) >> self.order
    }

    /// Where the refcount of the cluster at `host` lives: (table index, entry index).
    fn locate(&self, host: u64) -> (usize, u64) {
        let cluster = host >> self.cluster_bits;
        (
            (cluster / self.per_block()) as usize,
            cluster % self.per_block(),
        )
    }

    /// Whether the cluster at `host` is a refcount block.
    pub fn is_block(&self, host: u64) -> bool {
        let table_end = self.table_offset + self.table.len() as u64 * 8;
        let in_table = host + self.cluster_size() > self.table_offset && host < table_end;
        in_table || self.blocks.contains(&host)
    }

    /// The end of everything allocated so far (host offsets below it are in use or leaked).
    pub fn end(&self) -> u64 {
        self.next_free
    }

    /// Allocates one cluster and sets its refcount to 1; returns its offset.
    pub fn allocate(&mut self, file: &File) -> io::Result<u64> {
        let host = self.take_next();
        self.set(file, host, 1)?;
        Ok(host)
    }

    /// Allocates `clusters` adjacent clusters (a table that must be one
    /// piece), each counted once; returns the first one's offset. They are
    /// reserved before any is counted, so refcount blocks created on the
    /// way land after them.
    pub fn allocate_contiguous(&mut self, file: &File, clusters: u64) -> io::Result<u64> {
        let start = self.next_free;
        self.next_free += clusters * self.cluster_size();
        for i in 0..clusters {
            self.set(file, start + i * self.cluster_size(), 1)?;
        }
        Ok(start)
    }

    fn take_next(&mut self) -> u64 {
        let host = self.next_free;
        self.next_free += self.cluster_size();
        host
    }

    /// The refcount of the cluster at `host` (0 where no block exists).
    pub fn get(&self, file: &File, host: u64) -> io::Result<u64> {
        let (ti, index) = self.locate(host);
        let block = self.table.get(ti).copied().unwrap_or(0);
        if block == 0 {
            return Ok(0);
        }
        let (at, len) = self.entry_bytes(block, index);
        let mut raw = [0u8; 8];
        file.read_exact_at(&mut raw[8 - len..], at)?;
        Ok(self.decode(u64::from_be_bytes(raw), index))
    }

    /// Sets the refcount of the cluster at `host`, creating its block if needed.
    pub fn set(&mut self, file: &File, host: u64, value: u64) -> io::Result<()> {
        let (ti, index) = self.locate(host);
        if ti >= self.table.len() {
            if self.growing {
                return Err(corrupt("refcount table growth ran past its own estimate"));
            }
            self.grow(file, ti + 1)?;
        }
        if self.table[ti] == 0 {
            self.new_block(file, ti)?;
        }
        self.write_entry(file, self.table[ti], index, value)
    }

    /// Decrements the refcount of the cluster at `host` (used once nothing
    /// durable points to it any more); returns the new count.
    pub fn release(&mut self, file: &File, host: u64) -> io::Result<u64> {
        let count = self.get(file, host)?;
        if count == 0 {
            // Already free: never underflow (or punch) on a count we cannot trust.
            return Ok(u64::MAX);
        }
        self.set(file, host, count - 1)?;
        Ok(count - 1)
    }

    /// Adds refcount block `ti`, placed at the end of the file.
    fn new_block(&mut self, file: &File, ti: usize) -> io::Result<()> {
        let block = self.take_next();
        file.write_all_at(&vec![0u8; self.cluster_size() as usize], block)?;
        let (own_ti, own_index) = self.locate(block);
        if own_ti == ti {
            self.write_entry(file, block, own_index, 1)?;
        } else {
            // The block landed in the next block's range (ti's range ended
            // at the end of the file): that one describes it.
            self.set(file, block, 1)?;
        }
        // The block and its own refcount must be durable before the table names it.
        file.sync_data()?;
        if !self.growing {
            file.write_all_at(&block.to_be_bytes(), self.table_offset + ti as u64 * 8)?;
        }
        self.table[ti] = block;
        self.blocks.insert(block);
        Ok(())
    }

    /// Moves the refcount table to a bigger one at the end of the file:
    /// new blocks and the new table are durable before the header names
    /// them, and the old table is released only after the header switched.
    fn grow(&mut self, file: &File, min_entries: usize) -> io::Result<()> {
        let cs = self.cluster_size();
        let per_cluster = (cs / 8) as usize;
        let mut entries = min_entries
            .max(self.table.len() * 2)
            .next_multiple_of(per_cluster);
        // The new table and the blocks describing it must fit in it too.
        loop {
            let clusters = (entries / per_cluster) as u64;
            let slack = clusters / self.per_block() + 2;
            let end = self.next_free + (clusters + slack) * cs;
            let (end_ti, _) = self.locate(end);
            if end_ti < entries {
                break;
            }
            entries = (end_ti + 1).next_multiple_of(per_cluster);
        }
        if entries as u64 * 8 > super::header::MAX_REFTABLE_BYTES {
            return Err(corrupt("the refcount table would exceed 8 MiB"));
        }
        let (old_offset, old_table) = (self.table_offset, self.table.clone());
        let old_clusters = (old_table.len() as u64 * 8).div_ceil(cs);
        let switched = self.switch_table(file, entries);
        if switched.is_err() && self.table_offset == old_offset {
            // Still the old table on disk: forget entries it does not have
            // (their blocks are leaked, never referenced).
            self.table = old_table;
        }
        switched?;
        for i in 0..old_clusters {
            self.release(file, old_offset + i * cs)?;
        }
        Ok(())
    }

    /// Builds a table of `entries` at the end of the file and points the header at it.
    fn switch_table(&mut self, file: &File, entries: usize) -> io::Result<()> {
        let cs = self.cluster_size();
        let clusters = (entries as u64 * 8).div_ceil(cs);
        self.table.resize(entries, 0);
        self.growing = true;
        let offset = self.next_free;
        self.next_free += clusters * cs;
        let counted = (0..clusters).try_for_each(|i| self.set(file, offset + i * cs, 1));
        self.growing = false;
        counted?;
        let raw: Vec<u8> = self.table.iter().flat_map(|e| e.to_be_bytes()).collect();
        file.sync_data()?;
        file.write_all_at(&raw, offset)?;
        file.sync_data()?;
        let mut header = [0u8; 12];
        header[..8].copy_from_slice(&offset.to_be_bytes());
        header[8..].copy_from_slice(&(clusters as u32).to_be_bytes());
        file.write_all_at(&header, HEADER_REFTABLE)?;
        // The header may name the new table from here on.
        self.table_offset = offset;
        file.sync_data()
    }

    /// The bytes holding entry `index` of the block at `block`: (offset, length).
    fn entry_bytes(&self, block: u64, index: u64) -> (u64, usize) {
        let bits = 1u64 << self.order;
        if bits >= 8 {
            let width = bits / 8;
            (block + index * width, width as usize)
        } else {
            (block + index * bits / 8, 1)
        }
    }

    /// Sub-byte refcounts are packed from the least significant bit.
    fn decode(&self, raw: u64, index: u64) -> u64 {
        let bits = 1u64 << self.order;
        if bits >= 8 {
            return raw;
        }
        let shift = (index % (8 / bits)) * bits;
        (raw >> shift) & ((1 << bits) - 1)
    }

    fn write_entry(&self, file: &File, block: u64, index: u64, value: u64) -> io::Result<()> {
        let bits = 1u64 << self.order;
        let (at, len) = self.entry_bytes(block, index);
        if bits >= 8 {
            let raw = value.to_be_bytes();
            return file.write_all_at(&raw[8 - len..], at);
        }
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, at)?;
        let shift = (index % (8 / bits)) * bits;
        let mask = (((1u64 << bits) - 1) << shift) as u8;
        byte[0] = (byte[0] & !mask) | (((value << shift) as u8) & mask);
        file.write_all_at(&byte, at)
    }
}

/// Reads `entries` big-endian u64s at `offset`.
pub fn read_table(file: &File, offset: u64, entries: u64) -> io::Result<Vec<u64>> {
    let mut raw = vec![0u8; entries as usize * 8];
    file.read_exact_at(&mut raw, offset)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect())
}
