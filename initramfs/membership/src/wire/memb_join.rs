//! MEMB_JOIN: a node's view of who is alive (proc) and who failed, multicast while
//! gathering a new membership. With header nodeid 0 it announces a leave.

use super::header::{Header, MessageType};
use crate::codec::{check_count, Put, Reader};
use crate::WireError;

/// corosync's PROCESSOR_COUNT_MAX: no membership list is longer.
pub const PROCESSOR_COUNT_MAX: usize = 384;
pub const MEMB_JOIN_LEN: usize = 33;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembJoin {
    pub header: Header,
    pub system_from: u32,
    /// The highest ring seq the sender has seen.
    pub ring_seq: u64,
    /// Unordered set; kept in wire order so re-encoding is exact.
    pub proc_list: Vec<u32>,
    /// Unordered set; kept in wire order so re-encoding is exact.
    pub failed_list: Vec<u32>,
}

impl MembJoin {
    /// A leave is a join with header nodeid 0 whose sender is in the failed list.
    pub fn is_leave(&self) -> bool {
        self.header.nodeid == 0
    }

    pub(crate) fn decode_body(header: Header, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let system_from = r.u32()?;
        let procs = check_count(r.u32()?.into(), PROCESSOR_COUNT_MAX, "memb_join proc_list")?;
        let failed = check_count(
            r.u32()?.into(),
            PROCESSOR_COUNT_MAX,
            "memb_join failed_list",
        )?;
        let ring_seq = r.u64()?;
        Ok(MembJoin {
            header,
            system_from,
            ring_seq,
            proc_list: read_nodeids(r, procs)?,
            failed_list: read_nodeids(r, failed)?,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(MessageType::MembJoin, out);
        out.put_u32(self.system_from);
        out.put_u32(self.proc_list.len() as u32);
        out.put_u32(self.failed_list.len() as u32);
        out.put_u64(self.ring_seq);
        for id in self.proc_list.iter().chain(&self.failed_list) {
            out.put_u32(*id);
        }
    }
}

pub(crate) fn read_nodeids(r: &mut Reader<'_>, n: usize) -> Result<Vec<u32>, WireError> {
    (0..n).map(|_| r.u32()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode, TotemMessage};

    #[test]
    fn layout_and_round_trip() {
        let j = MembJoin {
            header: Header::new(3),
            system_from: 3,
            ring_seq: 0x1c,
            proc_list: vec![3, 1, 2],
            failed_list: vec![4],
        };
        let bytes = encode(&TotemMessage::MembJoin(j.clone()));
        assert_eq!(bytes.len(), MEMB_JOIN_LEN + 16);
        assert_eq!(&bytes[17..21], &3u32.to_le_bytes());
        assert_eq!(&bytes[21..25], &1u32.to_le_bytes());
        assert_eq!(&bytes[25..33], &0x1cu64.to_le_bytes());
        assert_eq!(&bytes[45..49], &4u32.to_le_bytes());
        assert_eq!(decode(&bytes), Ok(TotemMessage::MembJoin(j.clone())));
        assert!(!j.is_leave());
    }

    #[test]
    fn rejects_oversized_lists() {
        let j = MembJoin {
            header: Header::new(0),
            system_from: 3,
            ring_seq: 0,
            proc_list: vec![],
            failed_list: vec![3],
        };
        assert!(j.is_leave());
        let mut bytes = encode(&TotemMessage::MembJoin(j));
        bytes[17..21].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(&bytes),
            Err(WireError::TooManyEntries { .. })
        ));
        bytes[17..21].copy_from_slice(&384u32.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(WireError::Truncated { .. })));
    }
}
