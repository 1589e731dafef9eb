//! The membership half of totemsrp: gather (joins and consensus), commit (the
//! commit token's two rotations), recovery entry and installing the new ring.

use super::sets;
use super::{
    Action, ConfigChange, ConfigKind, Destination, MembState, Srp, Timer, SEQNO_START_MSG,
    SEQNO_START_TOKEN,
};
use crate::wire::{
    Header, MembCommitToken, MembEntry, MembJoin, MembMergeDetect, RingId, TotemMessage,
    ENCAPSULATED,
};

impl Srp {
    pub(crate) fn gather_enter(&mut self) {
        self.orf_token_discard = true;
        self.originated_orf_token = false;
        self.prune_unlisted();
        sets::merge(&mut self.proc_list, &[self.my_id]);
        self.join_message_send();
        self.arm(Timer::Join, self.timers.join);
        self.arm(Timer::Consensus, self.timers.consensus);
        self.cancel(Timer::TokenRetransmit);
        self.cancel(Timer::TokenLoss);
        self.cancel(Timer::MergeDetect);
        self.merge_detect_outstanding = false;
        self.consensus.clear();
        self.consensus.insert(self.my_id);
        self.state = MembState::Gather;
    }

    /// Members we are trying to agree with: proc − failed.
    fn token_members(&self) -> Vec<u32> {
        sets::subtract(&self.proc_list, &self.failed_list)
    }

    fn consensus_agreed(&self) -> bool {
        self.token_members()
            .iter()
            .all(|id| self.consensus.contains(id))
    }

    fn lowest_in_config(&self) -> bool {
        self.token_members().iter().min() == Some(&self.my_id)
    }

    pub(crate) fn consensus_timeout_expired(&mut self) {
        if self.consensus_agreed() {
            self.consensus.clear();
            self.consensus.insert(self.my_id);
            self.arm(Timer::TokenLoss, self.timers.token);
        } else {
            let silent: Vec<u32> = self
                .proc_list
                .iter()
                .copied()
                .filter(|id| !self.consensus.contains(id))
                .collect();
            self.mark_failed(&silent);
            self.gather_enter();
        }
    }

    /// Adds ids to the failed list, never ourselves: with us failed, proc −
    /// failed lacks us, consensus is "agreed" with nobody to send the commit
    /// token and the gather never ends (corosync asserts on it). Only a
    /// failure to receive and a leave put us there, on purpose.
    fn mark_failed(&mut self, ids: &[u32]) {
        let others = sets::subtract(ids, &[self.my_id]);
        sets::merge(&mut self.failed_list, &others);
    }

    pub(crate) fn token_loss_timeout(&mut self) {
        match self.state {
            MembState::Operational => self.gather_enter(),
            MembState::Gather => {
                self.consensus_timeout_expired();
                self.gather_enter();
            }
            MembState::Commit => self.gather_enter(),
            MembState::Recovery => {
                self.recovery_token_loss();
                self.orf_token_discard = true;
            }
        }
    }

    fn recovery_token_loss(&mut self) {
        self.aru = self.old_ring_state_aru;
        self.high_seq_received = self.old_ring_state_high_seq_received;
        self.gather_enter();
    }

    pub(crate) fn join_message_send(&mut self) {
        let join = MembJoin {
            header: Header::new(self.my_id),
            system_from: self.my_id,
            ring_seq: self.ring_id.seq,
            proc_list: self.proc_list.clone(),
            failed_list: self.failed_list.clone(),
        };
        self.send(Destination::All, TotemMessage::MembJoin(join));
    }

    pub(crate) fn leave_message_send(&mut self) {
        sets::merge(&mut self.failed_list, &[self.my_id]);
        let join = MembJoin {
            header: Header::new(0),
            system_from: self.my_id,
            ring_seq: self.ring_id.seq,
            proc_list: sets::subtract(&self.proc_list, &[self.my_id]),
            failed_list: self.failed_list.clone(),
        };
        self.send(Destination::All, TotemMessage::MembJoin(join));
    }

    pub(crate) fn merge_detect_transmit(&mut self) {
        let m = MembMergeDetect {
            header: Header::new(self.my_id),
            system_from: self.my_id,
            ring_id: self.ring_id,
        };
        self.send(Destination::All, TotemMessage::MembMergeDetect(m));
    }

    pub(crate) fn handle_merge_detect(&mut self, m: MembMergeDetect) {
        if m.ring_id == self.ring_id {
            return;
        }
        self.foreign_sender(m.system_from);
    }

    /// A message from outside our ring: in operational, regather with the sender;
    /// in gather, add it if new.
    pub(crate) fn foreign_sender(&mut self, from: u32) {
        if !self.listed(from) {
            return;
        }
        match self.state {
            MembState::Operational => {
                sets::merge(&mut self.proc_list, &[from]);
                self.gather_enter();
            }
            MembState::Gather if !sets::contains(&self.proc_list, from) => {
                sets::merge(&mut self.proc_list, &[from]);
                self.gather_enter();
            }
            _ => {}
        }
    }

    pub(crate) fn handle_join(&mut self, mut j: MembJoin) {
        // Unlike corosync, which drops only datagrams from unlisted addresses
        // and takes any id inside a listed node's join: such an id can never
        // agree nor be failed by everyone at once, and enough of them fill
        // the capped lists so that silent members can no longer be failed.
        if !self.listed(j.system_from) {
            return;
        }
        j.proc_list.retain(|id| self.listed(*id));
        j.failed_list.retain(|id| self.listed(*id));
        if self.token_ring_id_seq < j.ring_seq {
            self.token_ring_id_seq = j.ring_seq;
        }
        match self.state {
            MembState::Operational => {
                if !self.ignore_join_under_operational(&j) {
                    self.join_process(&j);
                }
            }
            MembState::Gather => self.join_process(&j),
            MembState::Commit | MembState::Recovery => {
                if sets::contains(&self.new_memb_list, j.system_from)
                    && j.ring_seq >= self.ring_id.seq
                {
                    self.join_process(&j);
                    if self.state == MembState::Recovery {
                        self.recovery_token_loss();
                    }
                    self.gather_enter();
                }
            }
        }
    }

    fn ignore_join_under_operational(&self, j: &MembJoin) -> bool {
        sets::contains(&j.failed_list, self.my_id)
            || (sets::contains(&self.memb_list, j.system_from) && j.ring_seq < self.ring_id.seq)
    }

    fn join_process(&mut self, j: &MembJoin) {
        if j.is_leave() {
            if let Some(last) = j.failed_list.last() {
                sets::merge(&mut self.leave_memb_list, &[*last]);
            }
        }
        let from = j.system_from;
        let mut gathered = false;
        if sets::equal(&j.proc_list, &self.proc_list)
            && sets::equal(&j.failed_list, &self.failed_list)
        {
            // Only proc_list members count towards consensus; recording any
            // other sender id would let forged joins grow the set without
            // end (corosync's fixed-size list asserts on overflow).
            if !j.is_leave() && sets::contains(&self.proc_list, from) {
                self.consensus.insert(from);
            }
            if self.consensus_agreed() && self.failed_to_recv {
                self.failed_to_recv = false;
                self.proc_list = vec![self.my_id];
                self.failed_list.clear();
                self.commit_token_create();
                self.commit_enter();
                return;
            }
            if self.consensus_agreed() && self.lowest_in_config() {
                self.commit_token_create();
                self.commit_enter();
                return;
            }
        } else if !self.join_is_news(j) {
        } else {
            sets::merge(&mut self.proc_list, &j.proc_list);
            if sets::contains(&j.failed_list, self.my_id) {
                // The sender thinks we failed: we count it failed in turn. A
                // join claiming to be ours (udpu has no crypto) is no peer.
                self.mark_failed(&[from]);
            } else if sets::contains(&self.memb_list, from) {
                // A member of our ring: trust its view of who failed.
                self.mark_failed(&j.failed_list);
            }
            self.gather_enter();
            gathered = true;
        }
        if !gathered && self.state == MembState::Operational {
            self.gather_enter();
        }
    }

    /// A join tells us something new unless its sets are within ours or it
    /// comes from a node we already consider failed.
    fn join_is_news(&self, j: &MembJoin) -> bool {
        let within = sets::subset(&j.proc_list, &self.proc_list)
            && sets::subset(&j.failed_list, &self.failed_list);
        !within && !sets::contains(&self.failed_list, j.system_from)
    }

    fn commit_token_create(&mut self) {
        let mut members = self.token_members();
        members.sort_unstable();
        self.commit_token = Some(MembCommitToken {
            header: Header::new(self.my_id),
            token_seq: 0,
            ring_id: RingId {
                rep: self.my_id,
                // The highest seq seen comes off the wire: wrap, as corosync's
                // unsigned arithmetic does, rather than panic.
                seq: self.token_ring_id_seq.wrapping_add(4),
            },
            retrans_flg: 0,
            memb_index: 0,
            members: members
                .into_iter()
                .map(|id| (id, MembEntry::default()))
                .collect(),
        });
    }

    fn old_ring_state_save(&mut self) {
        if !self.old_ring_state_saved {
            self.old_ring_state_saved = true;
            self.old_ring_id = self.ring_id;
            self.old_ring_state_aru = self.aru;
            self.old_ring_state_high_seq_received = self.high_seq_received;
        }
    }

    pub(crate) fn commit_enter(&mut self) {
        self.old_ring_state_save();
        self.commit_token_update();
        let Some(token) = self.commit_token.clone() else {
            return;
        };
        let n = token.members.len().max(1);
        self.next_node = token.members[token.memb_index as usize % n].0;
        self.cancel(Timer::Join);
        self.cancel(Timer::Consensus);
        self.ring_id = token.ring_id;
        self.out.push(Action::StoreRingSeq(self.ring_id.seq));
        self.token_ring_id_seq = self.ring_id.seq;
        self.commit_token_send(token);
        self.state = MembState::Commit;
        self.arm(Timer::TokenLoss, self.timers.token);
        self.trc = 0;
        self.pbl = 0;
        self.cbl = 0;
    }

    /// Fills in our entry of the commit token and advances its index.
    fn commit_token_update(&mut self) {
        let old_ring = self.old_ring_id;
        let aru = self.old_ring_state_aru;
        self.received_flg = self.aru == self.high_seq_received;
        let received = self.received_flg;
        let high_delivered = self.high_delivered;
        let Some(token) = self.commit_token.as_mut() else {
            return;
        };
        let idx = token.memb_index as usize;
        if idx >= token.members.len() {
            return;
        }
        self.new_memb_list = token.members.iter().map(|(id, _)| *id).collect();
        token.members[idx].1 = MembEntry {
            ring_id: old_ring,
            aru,
            high_delivered,
            received_flg: u32::from(received),
        };
        // Anyone from the same old ring with a lower aru than the highest seen
        // has not received everything.
        let mut high_aru = aru;
        for (_, e) in &token.members[..=idx] {
            if e.ring_id == old_ring && super::seq_lt(high_aru, e.aru) {
                high_aru = e.aru;
            }
        }
        for (i, (_, e)) in token.members[..=idx].iter_mut().enumerate() {
            if e.ring_id == old_ring && super::seq_lt(e.aru, high_aru) {
                e.received_flg = 0;
                if i == idx {
                    self.received_flg = false;
                }
            }
        }
        token.header = Header::new(self.my_id);
        token.memb_index += 1;
    }

    fn commit_token_send(&mut self, mut token: MembCommitToken) {
        token.token_seq = token.token_seq.wrapping_add(1);
        token.header = Header::new(self.my_id);
        let msg = TotemMessage::MembCommitToken(token);
        self.last_token = Some((self.next_node, msg.clone()));
        self.send(Destination::Node(self.next_node), msg);
        self.arm(Timer::TokenRetransmit, self.timers.token_retransmit);
    }

    pub(crate) fn handle_commit_token(&mut self, c: MembCommitToken) {
        let addrs: Vec<u32> = c.members.iter().map(|(id, _)| *id).collect();
        // A ring with a member we have no address for is none we can be in.
        if !addrs.iter().all(|id| self.listed(*id)) {
            return;
        }
        match self.state {
            MembState::Operational => {}
            MembState::Gather => {
                if sets::equal(&addrs, &self.token_members()) && c.ring_id.seq > self.ring_id.seq {
                    self.commit_token = Some(c);
                    self.commit_enter();
                }
            }
            MembState::Commit => {
                if c.ring_id.seq == self.ring_id.seq && c.memb_index as usize == addrs.len() {
                    self.recovery_enter(c);
                }
            }
            MembState::Recovery => {
                if self.my_id == self.ring_id.rep && !self.originated_orf_token {
                    self.originated_orf_token = true;
                    self.orf_token_send_initial();
                    self.arm(Timer::TokenLoss, self.timers.token);
                    self.arm(Timer::TokenRetransmit, self.timers.token_retransmit);
                }
            }
        }
    }

    fn recovery_enter(&mut self, c: MembCommitToken) {
        self.orf_token_discard = false;
        let mut high_ring_delivered = 0u32;
        self.recovery.reinit(SEQNO_START_MSG);
        self.retrans_messages.clear();
        let mut low_ring_aru = self.old_ring_state_high_seq_received;
        self.commit_token_send(c.clone());
        self.token_seq = SEQNO_START_TOKEN.wrapping_sub(1);

        // Transitional configuration: old members that come from our old ring.
        self.trans_memb_list = self
            .memb_list
            .iter()
            .copied()
            .filter(|id| {
                c.members
                    .iter()
                    .any(|(m, e)| m == id && e.ring_id == self.old_ring_id)
            })
            .collect();

        let someone_missed = c
            .members
            .iter()
            .any(|(id, e)| sets::contains(&self.trans_memb_list, *id) && e.received_flg == 0);
        if someone_missed {
            self.deliver_memb_list = self.trans_memb_list.clone();
            for (id, e) in &c.members {
                if sets::contains(&self.deliver_memb_list, *id) && e.ring_id == self.old_ring_id {
                    if super::seq_lt(e.aru, low_ring_aru) {
                        low_ring_aru = e.aru;
                    }
                    if super::seq_lt(high_ring_delivered, e.high_delivered) {
                        high_ring_delivered = e.high_delivered;
                    }
                }
            }
            self.queue_old_ring_messages(low_ring_aru);
        }
        self.aru = SEQNO_START_MSG;
        self.aru_count = 0;
        self.seq_unchanged = 0;
        self.high_seq_received = SEQNO_START_MSG;
        self.install_seq = SEQNO_START_MSG;
        self.last_released = SEQNO_START_MSG;
        self.arm(Timer::TokenLoss, self.timers.token);
        self.arm(Timer::TokenRetransmit, self.timers.token_retransmit);
        self.state = MembState::Recovery;
    }

    /// Copies the old ring's messages above `low_ring_aru` into the retransmit
    /// queue, each wrapped whole in a new-ring MCAST.
    fn queue_old_ring_messages(&mut self, low_ring_aru: u32) {
        let range = self
            .old_ring_state_high_seq_received
            .wrapping_sub(low_ring_aru);
        for i in 1..=range.min(super::queue::QUEUE_SIZE) {
            let Some(old) = self.regular.get(low_ring_aru.wrapping_add(i)).cloned() else {
                continue;
            };
            let inner = crate::wire::encode(&TotemMessage::Mcast(old));
            let wrapped = self.new_mcast(inner, ENCAPSULATED);
            self.retrans_messages.push_back(wrapped);
        }
    }

    /// Moves old-ring messages that arrived encapsulated during recovery into the
    /// regular queue, under their old sequence numbers.
    fn recovery_to_regular(&mut self) {
        let range = self.aru.wrapping_sub(SEQNO_START_MSG);
        for i in 1..=range.min(super::queue::QUEUE_SIZE) {
            let Some(outer) = self.recovery.get(SEQNO_START_MSG.wrapping_add(i)) else {
                continue;
            };
            let Some(Ok(inner)) = outer.encapsulated_mcast() else {
                continue;
            };
            if inner.ring_id == self.old_ring_id && !self.regular.in_use(inner.seq) {
                let seq = inner.seq;
                self.queue_dropped += u64::from(self.regular.add(seq, inner));
                if super::seq_lt(self.old_ring_state_high_seq_received, seq) {
                    self.old_ring_state_high_seq_received = seq;
                }
            }
        }
    }

    pub(crate) fn operational_enter(&mut self) {
        self.originated_orf_token = false;
        self.mcast_to_all_due = false;
        self.arm(Timer::McastToAll, 2 * self.timers.merge);
        self.consensus.clear();
        self.old_ring_state_saved = false;
        self.recovery_to_regular();
        let aru_save = self.aru;
        self.aru = self.old_ring_state_aru;
        let end = self.old_ring_state_high_seq_received;
        self.deliver_to_app(false, end);

        let left = sets::subtract(&self.memb_list, &self.trans_memb_list);
        let joined = sets::subtract(&self.new_memb_list, &self.trans_memb_list);
        self.memb_list = self.new_memb_list.clone();
        self.last_released = 0;
        self.set_retrans_flg = false;
        self.out.push(Action::Config(ConfigChange {
            kind: ConfigKind::Transitional,
            members: self.trans_memb_list.clone(),
            left: left.clone(),
            joined: Vec::new(),
            ring_id: self.ring_id,
        }));
        self.deliver_to_app(true, end);
        self.aru = aru_save;
        self.out.push(Action::Config(ConfigChange {
            kind: ConfigKind::Regular,
            members: self.new_memb_list.clone(),
            left: Vec::new(),
            joined,
            ring_id: self.ring_id,
        }));

        // The recovery queue (this ring's retransmissions) becomes the regular one;
        // its contents count as delivered.
        self.regular = std::mem::take(&mut self.recovery);
        self.last_aru = SEQNO_START_MSG;
        self.proc_list = self.new_memb_list.clone();
        self.failed_list.clear();
        let mut i = self.high_seq_received;
        while i != 0 && !self.regular.in_use(i) {
            i -= 1;
        }
        self.high_delivered = i;
        self.regular.release(i);
        self.last_released = i;
        self.leave_memb_list.clear();
        self.state = MembState::Operational;
        self.received_flg = true;
        self.old_ring_id = self.ring_id;
    }
}
