//! The sort queue (include/corosync/sq.h): received messages by sequence number,
//! a window starting at the lowest unreleased number, and per-number miss counts
//! that delay retransmission requests. Unlike corosync's, it is bounded by bytes
//! as well as by sequence numbers (see [`QUEUE_BYTES_MAX`]).

use std::collections::BTreeMap;

use crate::wire::Mcast;

/// Window size: corosync 3.1.7's QUEUE_RTR_ITEMS_SIZE_MAX (totemsrp.c). Its
/// fcc_rtr_limit keeps senders within this window, so a larger one would only
/// let a peer make us hold more.
pub const QUEUE_SIZE: u32 = 16384;

/// The most a sort queue holds, in bytes ([`entry_cost`] per message).
///
/// Legitimate traffic never comes near it: on udpu totempg cuts every MCAST to
/// one frame (netmtu 1500 − 28 bytes of IP and UDP = 1,472 bytes, a recovery
/// copy with its second header included), so a full window is 16,384 × (1,472 +
/// 128) bytes ≈ 25 MiB, and flow control (window_size 50 per rotation, released
/// about two rotations later) keeps a few hundred messages, well under 1 MiB,
/// in the queue in practice. A peer that knows the ring id (it travels in
/// clear) could otherwise park a 64 KiB datagram at every number of the window:
/// 16,384 × 64 KiB = 1 GiB per queue (corosync allocates a FRAME_SIZE_MAX =
/// 64 KiB buffer for each, so that is what corosync itself can be made to
/// hold), 4 GiB with the 65,536-number window this queue used to have.
pub const QUEUE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// What a held message costs beyond its payload: the Mcast's fixed fields and
/// its share of the map's node, rounded up.
const ENTRY_OVERHEAD: usize = 128;

/// Bytes a message counts for against [`QUEUE_BYTES_MAX`].
pub fn entry_cost(m: &Mcast) -> usize {
    m.payload.len() + ENTRY_OVERHEAD
}

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

#[derive(Debug, Clone)]
pub struct SortQueue {
    head: u32,
    items: BTreeMap<u32, Mcast>,
    misses: BTreeMap<u32, u32>,
    /// Sum of [`entry_cost`] over `items`.
    bytes: usize,
    budget: usize,
}

impl Default for SortQueue {
    fn default() -> Self {
        SortQueue::new(0)
    }
}

impl SortQueue {
    pub fn new(head: u32) -> Self {
        SortQueue::with_budget(head, QUEUE_BYTES_MAX)
    }

    pub fn with_budget(head: u32, budget: usize) -> Self {
        SortQueue {
            head,
            items: BTreeMap::new(),
            misses: BTreeMap::new(),
            bytes: 0,
            budget,
        }
    }

    pub fn reinit(&mut self, head: u32) {
        *self = SortQueue::with_budget(head, self.budget);
    }

    /// Bytes held (by [`entry_cost`]); never more than the budget.
    pub fn bytes(&self) -> usize {
        self.bytes
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

    /// Stores `m` under `seq` if it is in the window and fits the budget.
    /// When it does not fit, messages further ahead than `seq` make room
    /// (the furthest first): the ring needs the lowest numbers first, and
    /// whatever is dropped here is asked for again (the token's rtr list)
    /// once the ring gets there. Returns how many messages were dropped:
    /// those evicted, plus `m` itself if it could not be stored.
    pub fn add(&mut self, seq: u32, m: Mcast) -> u32 {
        if !self.in_range(seq) {
            return 0;
        }
        let cost = entry_cost(&m);
        let mut dropped = 0;
        while self.bytes + cost > self.budget {
            match self.furthest() {
                Some(held) if self.offset(held) > self.offset(seq) => {
                    self.remove(held);
                    dropped += 1;
                }
                _ => return dropped + 1,
            }
        }
        if let Some(old) = self.items.insert(seq, m) {
            self.bytes -= entry_cost(&old);
        }
        self.bytes += cost;
        dropped
    }

    /// Position of `seq` in the window.
    fn offset(&self, seq: u32) -> u32 {
        seq.wrapping_sub(self.head)
    }

    /// The held number furthest ahead: the highest key, unless the window
    /// wraps past 2^32, where the keys below `head` are the ones ahead.
    fn furthest(&self) -> Option<u32> {
        let wrapped = self.items.range(..self.head).next_back();
        wrapped.or(self.items.last_key_value()).map(|(s, _)| *s)
    }

    fn remove(&mut self, seq: u32) {
        if let Some(old) = self.items.remove(&seq) {
            self.bytes -= entry_cost(&old);
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
        let mut freed = 0;
        self.items.retain(|&s, m| {
            let keep = !seq_lt(s, keep_from);
            if !keep {
                freed += entry_cost(m);
            }
            keep
        });
        self.bytes -= freed;
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

    fn mcast(len: usize) -> Mcast {
        Mcast {
            header: Default::default(),
            system_from: 1,
            seq: 0,
            this_seqno: 0,
            ring_id: Default::default(),
            node_id: 0,
            guarantee: 0,
            payload: vec![0; len],
        }
    }

    #[test]
    fn window_and_release() {
        let mut q = SortQueue::new(0);
        assert_eq!(q.add(3, mcast(0)), 0);
        assert!(q.in_use(3) && !q.in_use(2));
        assert_eq!((q.miss_count(2), q.miss_count(2)), (1, 2));
        q.release(3);
        assert!(!q.in_use(3) && !q.in_range(3) && q.in_range(4));
        assert!(!q.in_range(4 + QUEUE_SIZE));
        assert_eq!(q.bytes(), 0, "released messages are paid back");
    }

    #[test]
    fn over_budget_the_furthest_ahead_goes_first() {
        let cost = entry_cost(&mcast(1000));
        let mut q = SortQueue::with_budget(10, 3 * cost);
        for seq in [20, 30, 40] {
            assert_eq!(q.add(seq, mcast(1000)), 0);
        }
        // Nearer the head than what is held: 40 makes room.
        assert_eq!(q.add(15, mcast(1000)), 1);
        assert!(q.in_use(15) && q.in_use(30) && !q.in_use(40));
        // Further ahead than everything held: refused, nothing evicted.
        assert_eq!(q.add(50, mcast(1000)), 1);
        assert!(!q.in_use(50) && q.in_use(30));
        assert_eq!(q.bytes(), 3 * cost);
        // Larger than the whole budget: refused, everything further ahead
        // evicted on the way.
        assert_eq!(q.add(11, mcast(4 * cost)), 4);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn eviction_follows_the_window_across_the_wrap() {
        let cost = entry_cost(&mcast(0));
        let head = u32::MAX - 5;
        let mut q = SortQueue::with_budget(head, 2 * cost);
        // 3 is ahead of u32::MAX - 1 here, although its key is lower.
        q.add(u32::MAX - 1, mcast(0));
        q.add(3, mcast(0));
        assert_eq!(q.add(u32::MAX - 3, mcast(0)), 1);
        assert!(q.in_use(u32::MAX - 3) && q.in_use(u32::MAX - 1) && !q.in_use(3));
    }
}
