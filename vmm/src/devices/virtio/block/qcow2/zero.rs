//! WRITE_ZEROES and DISCARD on qcow2: whole clusters become zero clusters
//! (v3) and lose their host cluster; partial clusters are written with
//! zeros (WRITE_ZEROES) or left alone (DISCARD is a hint). Old host
//! clusters are released only after the new entries are durable (flush).

use std::io;

use super::tables::{Mapping, ZERO};
use super::Qcow2Disk;

impl Qcow2Disk {
    /// Zeroes `[offset, offset + len)`; `partial` says whether partial
    /// clusters are written with zeros (true) or skipped (discard).
    pub(super) fn zero_range(&mut self, offset: u64, len: u64, partial: bool) -> io::Result<()> {
        let cs = self.cluster_size();
        let end = offset
            .checked_add(len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut guest = offset;
        while guest < end {
            let n = (cs - (guest & (cs - 1))).min(end - guest);
            if n == cs {
                self.zero_cluster(guest)?;
            } else if partial && !self.reads_zero(guest)? {
                let zeros = vec![0u8; n as usize];
                self.write_cluster(&zeros, guest)?;
            }
            guest += n;
        }
        if self.tables.needs_write_back() {
            self.flush_all()?;
        }
        Ok(())
    }

    /// Whether the cluster at `guest` already reads as zeros without data.
    fn reads_zero(&mut self, guest: u64) -> io::Result<bool> {
        Ok(match self.mapping(guest)? {
            Mapping::Zero { .. } => true,
            Mapping::Unallocated => self.backing.is_none(),
            _ => false,
        })
    }

    fn mapping(&mut self, guest: u64) -> io::Result<Mapping> {
        self.tables.lookup(&self.file, guest, self.refcounts.end())
    }

    /// Makes the whole cluster at `guest` read as zeros, releasing its data.
    fn zero_cluster(&mut self, guest: u64) -> io::Result<()> {
        let old = self.mapping(guest)?;
        if self.reads_zero(guest)? && !matches!(old, Mapping::Zero { host: Some(_) }) {
            return Ok(());
        }
        if self.version < 3 {
            // No zero flag: unallocated reads as zeros only without a backing file.
            if self.backing.is_some() {
                let zeros = vec![0u8; self.cluster_size() as usize];
                return self.write_cluster(&zeros, guest);
            }
        }
        if !self.tables.has_l2(guest) {
            let l2 = self.allocate_zeroed()?;
            self.tables.add_l2(guest, l2);
        }
        let entry = if self.version >= 3 { ZERO } else { 0 };
        self.tables.set(&self.file, guest, entry)?;
        match old {
            Mapping::Data { host } | Mapping::Zero { host: Some(host) } => self.released.push(host),
            Mapping::Compressed { host, len } => self.release_later(host, len),
            _ => {}
        }
        Ok(())
    }
}
