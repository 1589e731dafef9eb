//! The L1 table and a cache of L2 tables. Changes to either stay in
//! memory until `Tables::write_back`, which the image calls only after a
//! flush made the data and refcounts they point to durable: an on-disk
//! pointer never leads to a cluster that is not yet written.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::corrupt;
use super::refcount::read_table;

/// Host cluster offset bits of L1 and standard L2 entries (9..=55).
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// The cluster's refcount is exactly 1: it may be written in place.
pub const COPIED: u64 = 1 << 63;
pub const COMPRESSED: u64 = 1 << 62;
/// v3: the cluster reads as zeros.
pub const ZERO: u64 = 1;
/// Bits of an L1 entry that must be zero.
const L1_RESERVED: u64 = !(OFFSET_MASK | COPIED);
/// Bits of a standard L2 entry that must be zero.
const L2_RESERVED: u64 = !(OFFSET_MASK | COPIED | ZERO);
/// Bytes of L2 tables kept in memory before clean ones are dropped.
const CACHE_BYTES: u64 = 32 << 20;

/// What a guest cluster maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// Not in this image: the backing file (or zeros) shows through.
    Unallocated,
    /// Reads as zeros; `host` is a preallocated cluster, if any.
    Zero {
        host: Option<u64>,
    },
    Data {
        host: u64,
    },
    /// Deflate data of `len` bytes at byte offset `host`.
    Compressed {
        host: u64,
        len: u64,
    },
}

struct L2Table {
    entries: Vec<u64>,
    dirty: bool,
}

pub struct Tables {
    l1: Vec<u64>,
    /// Offsets of every L2 table, so guest data never lands on one.
    l2_offsets: HashSet<u64>,
    l1_offset: u64,
    l1_dirty: bool,
    cache: HashMap<u64, L2Table>,
    cluster_bits: u32,
    version: u32,
}

impl Tables {
    /// Loads the L1 table; every L2 table it names must be an aligned
    /// cluster inside the file.
    pub fn load(
        file: &File,
        offset: u64,
        size: u32,
        cluster_bits: u32,
        version: u32,
        file_len: u64,
    ) -> Result<Self, String> {
        let cs = 1u64 << cluster_bits;
        let l1 = read_table(file, offset, u64::from(size))
            .map_err(|e| format!("cannot read the L1 table: {e}"))?;
        for (i, &e) in l1.iter().enumerate() {
            let l2 = e & OFFSET_MASK;
            if e & L1_RESERVED != 0
                || !l2.is_multiple_of(cs)
                || l2.checked_add(cs).is_none_or(|end| end > file_len)
            {
                return Err(format!("L1 entry {i} ({e:#x}) is invalid"));
            }
        }
        let l2_offsets = l1
            .iter()
            .map(|e| e & OFFSET_MASK)
            .filter(|&o| o != 0)
            .collect();
        Ok(Self {
            l1,
            l2_offsets,
            l1_offset: offset,
            l1_dirty: false,
            cache: HashMap::new(),
            cluster_bits,
            version,
        })
    }

    fn entries_per_table(&self) -> u64 {
        (1u64 << self.cluster_bits) / 8
    }

    /// (L1 index, L2 index) of the guest cluster holding `guest`.
    fn split(&self, guest: u64) -> (usize, usize) {
        let cluster = guest >> self.cluster_bits;
        let per = self.entries_per_table();
        ((cluster / per) as usize, (cluster % per) as usize)
    }

    /// The mapping of the guest cluster holding `guest`; `end` is the end
    /// of the image's allocated space (pointers past it are corrupt).
    pub fn lookup(&mut self, file: &File, guest: u64, end: u64) -> io::Result<Mapping> {
        let (i1, i2) = self.split(guest);
        let l2 = self
            .l1
            .get(i1)
            .copied()
            .ok_or_else(|| corrupt("offset beyond the L1 table"))?
            & OFFSET_MASK;
        if l2 == 0 {
            return Ok(Mapping::Unallocated);
        }
        let entry = self.table(file, l2)?.entries[i2];
        self.decode(entry, end)
    }

    fn decode(&self, entry: u64, end: u64) -> io::Result<Mapping> {
        let cs = 1u64 << self.cluster_bits;
        if entry & COMPRESSED != 0 {
            let x = 62 - (self.cluster_bits - 8);
            let host = entry & ((1 << x) - 1);
            let sectors = ((entry >> x) & ((1 << (self.cluster_bits - 8)) - 1)) + 1;
            let len = sectors * 512 - (host & 511);
            if host >= end {
                return Err(corrupt("compressed cluster beyond the end of the image"));
            }
            return Ok(Mapping::Compressed {
                host,
                len: len.min(end - host),
            });
        }
        if entry & L2_RESERVED != 0 {
            return Err(corrupt("L2 entry has reserved bits set"));
        }
        let host = entry & OFFSET_MASK;
        if host != 0 && (!host.is_multiple_of(cs) || host + cs > end) {
            return Err(corrupt("L2 entry points outside the image"));
        }
        Ok(match (entry & ZERO != 0 && self.version >= 3, host) {
            (true, 0) => Mapping::Zero { host: None },
            (true, h) => Mapping::Zero { host: Some(h) },
            (false, 0) => Mapping::Unallocated,
            (false, h) => Mapping::Data { host: h },
        })
    }

    /// The L2 table at `offset`, from the cache or the file.
    fn table(&mut self, file: &File, offset: u64) -> io::Result<&mut L2Table> {
        if !self.cache.contains_key(&offset) {
            self.make_room();
            let entries = read_table(file, offset, self.entries_per_table())?;
            self.cache.insert(
                offset,
                L2Table {
                    entries,
                    dirty: false,
                },
            );
        }
        Ok(self.cache.get_mut(&offset).expect("just inserted"))
    }

    /// Drops clean tables once the cache is over budget (dirty ones stay
    /// until written back; `needs_write_back` bounds them).
    fn make_room(&mut self) {
        let table_bytes = 1u64 << self.cluster_bits;
        if self.cache.len() as u64 * table_bytes >= CACHE_BYTES {
            self.cache.retain(|_, t| t.dirty);
        }
    }

    /// Whether the cluster at `host` holds an L1 or L2 table.
    pub fn is_metadata(&self, host: u64) -> bool {
        let l1_end = self.l1_offset + self.l1.len() as u64 * 8;
        self.l2_offsets.contains(&host)
            || (host + (1 << self.cluster_bits) > self.l1_offset && host < l1_end)
    }

    /// Whether enough is pending that the image should flush on its own.
    pub fn needs_write_back(&self) -> bool {
        let dirty = self.cache.values().filter(|t| t.dirty).count() as u64;
        dirty * (1u64 << self.cluster_bits) >= CACHE_BYTES / 2
    }

    pub fn is_dirty(&self) -> bool {
        self.l1_dirty || self.cache.values().any(|t| t.dirty)
    }

    /// Whether the guest cluster at `guest` has an L2 table.
    pub fn has_l2(&self, guest: u64) -> bool {
        let (i1, _) = self.split(guest);
        self.l1.get(i1).is_some_and(|e| e & OFFSET_MASK != 0)
    }

    /// Installs a new, all-unallocated L2 table at `host` for `guest`
    /// (the cluster is already zeroed on disk and counted).
    pub fn add_l2(&mut self, guest: u64, host: u64) {
        let (i1, _) = self.split(guest);
        let entries = vec![0; self.entries_per_table() as usize];
        self.make_room();
        self.cache.insert(
            host,
            L2Table {
                entries,
                dirty: true,
            },
        );
        self.l1[i1] = host | COPIED;
        self.l2_offsets.insert(host);
        self.l1_dirty = true;
    }

    /// Points the guest cluster at `guest` to `entry` (in memory).
    pub fn set(&mut self, file: &File, guest: u64, entry: u64) -> io::Result<()> {
        let (i1, i2) = self.split(guest);
        let l2 = self.l1[i1] & OFFSET_MASK;
        let table = self.table(file, l2)?;
        table.entries[i2] = entry;
        table.dirty = true;
        Ok(())
    }

    /// Writes dirty L2 tables, then (after `barrier`) the L1 table. The
    /// caller has made everything they point to durable already; the
    /// barrier orders new L2 tables before the L1 entries naming them.
    pub fn write_back(
        &mut self,
        file: &File,
        barrier: impl Fn() -> io::Result<()>,
    ) -> io::Result<()> {
        for (&offset, table) in self.cache.iter_mut().filter(|(_, t)| t.dirty) {
            let raw: Vec<u8> = table.entries.iter().flat_map(|e| e.to_be_bytes()).collect();
            file.write_all_at(&raw, offset)?;
            table.dirty = false;
        }
        if self.l1_dirty {
            barrier()?;
            let raw: Vec<u8> = self.l1.iter().flat_map(|e| e.to_be_bytes()).collect();
            file.write_all_at(&raw, self.l1_offset)?;
            self.l1_dirty = false;
        }
        Ok(())
    }
}
