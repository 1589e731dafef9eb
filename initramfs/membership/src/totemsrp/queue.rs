//! The sort queue (include/corosync/sq.h): received messages by sequence number,
//! a window starting at the lowest unreleased number, and per-number miss counts
//! that delay retransmission requests.

use std::collections::BTreeMap;

use crate::wire::Mcast;

/// Window size (QUEUE_RTR_ITEMS_SIZE_MAX).
pub const QUEUE_SIZE: u32 = 16384 * 4;

const ROLLOVER_POINT: u32 = 0x8000_0000;
const ROLLOVER_VALUE: u32 = 0x10000;

/// `a < b` the way corosync compares sequence numbers around the 32-bit wrap.
pub fn seq_lt(a: u32, b: u32) -> bool {
    if a > ROLLOVER_POINT || b > ROLLOVER_POINT {
        a.wrapping_sub(ROLLOVER_VALUE) < b.wrapping_sub(ROLLOVER_VALUE)
    } else {
        a < b
    }
}

/// `a <= b`, same rules as [`seq_lt`].
pub fn seq_lte(a: u32, b: u32) -> bool {
    if a > ROLLOVER_POINT || b > ROLLOVER_POINT {
        a.wrapping_sub(ROLLOVER_VALUE) <= b.wrapping_sub(ROLLOVER_VALUE)
    } else {
        a <= b
    }
}

#[derive(Debug, Clone, Default)]
pub struct SortQueue {
    head: u32,
    items: BTreeMap<u32, Mcast>,
    misses: BTreeMap<u32, u32>,
}

impl SortQueue {
    pub fn new(head: u32) -> Self {
        SortQueue {
            head,
            items: BTreeMap::new(),
            misses: BTreeMap::new(),
        }
    }

    pub fn reinit(&mut self, head: u32) {
        *self = SortQueue::new(head);
    }

    pub fn in_range(&self, seq: u32) -> bool {
        !seq_lt(seq, self.head) && seq_lt(seq, self.head.wrapping_add(QUEUE_SIZE))
    }

    pub fn get(&self, seq: u32) -> Option<&Mcast> {
        if !self.in_range(seq) {
            return None;
        }
        self.items.get(&seq)
    }

    pub fn in_use(&self, seq: u32) -> bool {
        self.get(seq).is_some()
    }

    pub fn add(&mut self, seq: u32, m: Mcast) {
        if self.in_range(seq) {
            self.items.insert(seq, m);
        }
    }

    /// Counts one more token rotation on which `seq` was missing.
    pub fn miss_count(&mut self, seq: u32) -> u32 {
        let c = self.misses.entry(seq).or_insert(0);
        *c += 1;
        *c
    }

    /// Forgets everything up to and including `seq`.
    pub fn release(&mut self, seq: u32) {
        let keep_from = seq.wrapping_add(1);
        self.items.retain(|&s, _| !seq_lt(s, keep_from));
        self.misses.retain(|&s, _| !seq_lt(s, keep_from));
        if seq_lt(self.head, keep_from) {
            self.head = keep_from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_comparisons_match_corosync() {
        assert!(seq_lt(1, 2) && !seq_lt(2, 2) && seq_lte(2, 2));
        // 0 comes after 0xffffffff (token_seq starts at SEQNO_START_TOKEN - 1).
        assert!(!seq_lte(0, u32::MAX));
        assert!(seq_lt(u32::MAX, 0x10));
    }

    #[test]
    fn window_and_release() {
        let mut q = SortQueue::new(0);
        let m = Mcast {
            header: Default::default(),
            system_from: 1,
            seq: 3,
            this_seqno: 0,
            ring_id: Default::default(),
            node_id: 0,
            guarantee: 0,
            payload: vec![],
        };
        q.add(3, m);
        assert!(q.in_use(3) && !q.in_use(2));
        assert_eq!((q.miss_count(2), q.miss_count(2)), (1, 2));
        q.release(3);
        assert!(!q.in_use(3) && !q.in_range(3) && q.in_range(4));
        assert!(!q.in_range(4 + QUEUE_SIZE));
    }
}
