//! The ordering half of totemsrp: the rotating token, sequencing our messages,
//! retransmission requests (the token's rtr list), flow control, the all-received-up-to
//! (aru) bookkeeping, delivery in agreed order, and the idle-ring token hold.

use super::queue::QUEUE_SIZE;
use super::{seq_lt, seq_lte, sets, Action, Destination, MembState, Srp, Timer};
use crate::wire::{
    Header, Mcast, OrfToken, RtrItem, TokenHoldCancel, TotemMessage, NOT_ENCAPSULATED,
    RTR_ENTRIES_MAX,
};

impl Srp {
    pub(crate) fn orf_token_send_initial(&mut self) {
        self.set_retrans_flg = !self.retrans_messages.is_empty();
        let token = OrfToken {
            header: Header::new(self.my_id),
            seq: super::SEQNO_START_MSG,
            token_seq: super::SEQNO_START_TOKEN,
            aru: super::SEQNO_START_MSG.wrapping_sub(1),
            aru_addr: self.my_id,
            ring_id: self.ring_id,
            backlog: 0,
            fcc: 0,
            retrans_flg: i32::from(self.set_retrans_flg),
            rtr_list: Vec::new(),
        };
        self.token_send(token, true);
    }

    fn token_send(&mut self, mut token: OrfToken, forward: bool) {
        token.header = Header::new(self.my_id);
        let msg = TotemMessage::OrfToken(token);
        self.last_token = Some((self.next_node, msg.clone()));
        if forward {
            self.send(Destination::Node(self.next_node), msg);
        }
    }

    pub(crate) fn token_retransmit(&mut self) {
        if let Some((to, msg)) = self.last_token.clone() {
            self.send(Destination::Node(to), msg);
        }
    }

    pub(crate) fn token_retransmit_timeout(&mut self) {
        if self.state != MembState::Gather {
            self.token_retransmit();
            self.arm(Timer::TokenRetransmit, self.timers.token_retransmit);
        }
    }

    pub(crate) fn token_hold_cancel_send(&mut self) {
        if !self.token_held {
            return;
        }
        self.token_held = false;
        let m = TokenHoldCancel {
            header: Header::new(self.my_id),
            ring_id: self.ring_id,
        };
        self.send(Destination::All, TotemMessage::TokenHoldCancel(m));
    }

    pub(crate) fn handle_token_hold_cancel(&mut self, m: TokenHoldCancel) {
        if m.ring_id == self.ring_id {
            self.seq_unchanged = 0;
            if self.ring_id.rep == self.my_id {
                self.token_retransmit_timeout();
            }
        }
    }

    pub(crate) fn handle_orf_token(&mut self, mut token: OrfToken) {
        if self.orf_token_discard {
            return;
        }
        if token.seq == self.last_seq {
            if !self.merge_detect_outstanding {
                self.merge_detect_outstanding = true;
                self.arm(Timer::MergeDetect, self.timers.merge);
            }
            self.seq_unchanged += 1;
        } else {
            self.cancel(Timer::MergeDetect);
            self.merge_detect_outstanding = false;
            self.cancel(Timer::TokenHoldRetransmit);
            self.seq_unchanged = 0;
        }
        self.last_seq = token.seq;
        let is_rep = self.ring_id.rep == self.my_id;
        let limit = self.timers.seqno_unchanged_const;
        self.token_held = if is_rep {
            self.seq_unchanged > limit
        } else {
            self.seq_unchanged >= limit
        };
        let mut forward = !(is_rep && self.token_held);

        if self.state == MembState::Commit {
            return;
        }
        if self.state == MembState::Operational {
            self.messages_free(token.aru);
        }
        if token.ring_id != self.ring_id || seq_lte(token.token_seq, self.token_seq) {
            return;
        }
        let last_aru = self.last_aru;
        self.last_aru = token.aru;
        let mut allowed = self.fcc_calculate(&token);
        let retransmitted = self.orf_token_rtr(&mut token, &mut allowed);
        if self.cancel_hold_on_retransmit
            && self.token_held
            && (!token.rtr_list.is_empty() || retransmitted > 0)
        {
            self.token_held = false;
            forward = true;
        }
        self.fcc_rtr_limit(&token, &mut allowed);
        let sent = self.orf_token_mcast(&mut token, allowed);
        self.fcc_token_update(&mut token, retransmitted + sent);

        if seq_lt(self.aru, token.aru) || self.my_id == token.aru_addr || token.aru_addr == 0 {
            token.aru = self.aru;
            token.aru_addr = if token.aru == token.seq {
                0
            } else {
                self.my_id
            };
        }
        if token.aru == last_aru && token.aru_addr != 0 {
            self.aru_count += 1;
        } else {
            self.aru_count = 0;
        }
        if self.aru_count > self.timers.fail_recv_const && token.aru_addr == self.my_id {
            // Everyone else has moved on; we keep failing to receive: form a
            // ring of our own.
            self.failed_to_recv = true;
            sets::merge(&mut self.failed_list, &[self.my_id]);
            self.gather_enter();
            return;
        }
        self.token_seq = token.token_seq;
        token.token_seq = token.token_seq.wrapping_add(1);
        if self.state == MembState::Recovery {
            self.recovery_token_step(&mut token);
        }
        let was_operational = self.state == MembState::Operational;
        self.token_send(token, forward);
        if was_operational && self.state == MembState::Operational {
            self.deliver_to_app(false, self.high_seq_received);
        }
        self.arm(Timer::TokenLoss, self.timers.token);
        self.arm(Timer::TokenRetransmit, self.timers.token_retransmit);
        if is_rep && self.token_held {
            self.arm(Timer::TokenHoldRetransmit, self.timers.hold);
        }
    }

    /// Recovery progress on each token: clear retrans_flg once our old-ring
    /// messages are out, then install after enough quiet rotations.
    fn recovery_token_step(&mut self, token: &mut OrfToken) {
        if !self.retrans_messages.is_empty() {
            if token.retrans_flg == 0 {
                token.retrans_flg = 1;
                self.set_retrans_flg = true;
            }
        } else if token.retrans_flg == 1 && self.set_retrans_flg {
            token.retrans_flg = 0;
            self.set_retrans_flg = false;
        }
        if token.retrans_flg == 0 {
            self.retrans_flg_count += 1;
        } else {
            self.retrans_flg_count = 0;
        }
        if self.retrans_flg_count == 2 {
            self.install_seq = token.seq;
        }
        if self.retrans_flg_count >= 2 && !self.received_flg && seq_lte(self.install_seq, self.aru)
        {
            self.received_flg = true;
            self.deliver_memb_list = self.trans_memb_list.clone();
        }
        if self.retrans_flg_count >= 3 && seq_lte(self.install_seq, token.aru) {
            self.rotation_counter += 1;
        } else {
            self.rotation_counter = 0;
        }
        if self.rotation_counter == 2 {
            self.operational_enter();
            self.rotation_counter = 0;
            self.retrans_flg_count = 0;
        }
    }

    fn fcc_calculate(&mut self, token: &OrfToken) -> u32 {
        let window = self.timers.window_size;
        let mut allowed = self
            .timers
            .max_messages
            .min(window.saturating_sub(token.fcc));
        self.cbl = self.backlog_now();
        let total = token.backlog.wrapping_add(self.cbl).wrapping_sub(self.pbl);
        if total != 0 {
            let share = (u64::from(window) * u64::from(self.pbl) / u64::from(total)) as u32;
            if share > 0 && allowed > share {
                allowed = share;
            }
        }
        allowed
    }

    fn backlog_now(&self) -> u32 {
        let n = if self.state == MembState::Recovery {
            self.retrans_messages.len()
        } else {
            self.new_messages.len()
        };
        n as u32
    }

    /// Never let the window run past what the sort queue can hold.
    fn fcc_rtr_limit(&self, token: &OrfToken, allowed: &mut u32) {
        let room = self
            .last_released
            .wrapping_add(QUEUE_SIZE)
            .wrapping_sub(*allowed)
            .wrapping_sub(self.timers.window_size);
        if seq_lt(room, token.seq) {
            *allowed = 0;
        }
    }

    fn fcc_token_update(&mut self, token: &mut OrfToken, transmitted: u32) {
        token.fcc = token.fcc.wrapping_add(transmitted).wrapping_sub(self.trc);
        token.backlog = token.backlog.wrapping_add(self.cbl).wrapping_sub(self.pbl);
        self.trc = transmitted;
        self.pbl = self.cbl;
    }

    /// Sends up to `allowed` queued messages, each numbered from the token.
    fn orf_token_mcast(&mut self, token: &mut OrfToken, allowed: u32) -> u32 {
        let recovering = self.state == MembState::Recovery;
        let mut sent = 0;
        while sent < allowed {
            let next = if recovering {
                self.retrans_messages.pop_front()
            } else {
                self.new_messages
                    .pop_front()
                    .map(|p| self.new_mcast(p, NOT_ENCAPSULATED))
            };
            let Some(mut m) = next else { break };
            token.seq = token.seq.wrapping_add(1);
            m.seq = token.seq;
            m.this_seqno = self.global_seqno;
            self.global_seqno = self.global_seqno.wrapping_add(1);
            m.ring_id = self.ring_id;
            let queue = if recovering {
                &mut self.recovery
            } else {
                &mut self.regular
            };
            self.queue_dropped += u64::from(queue.add(m.seq, m.clone()));
            self.mcast_send(m);
            self.high_seq_received = token.seq;
            sent += 1;
        }
        self.update_aru();
        sent
    }

    /// Multicasts to the ring being served (the new one in recovery), or once
    /// per [`Timer::McastToAll`] period to every node.
    fn mcast_send(&mut self, m: Mcast) {
        let to = if std::mem::take(&mut self.mcast_to_all_due) {
            Destination::All
        } else if self.state == MembState::Recovery {
            Destination::Members(self.new_memb_list.clone())
        } else {
            Destination::Members(self.memb_list.clone())
        };
        self.send(to, TotemMessage::Mcast(m));
    }

    /// An MCAST from this node on the current ring; `encapsulated` marks an
    /// old ring's message carried through recovery.
    pub(crate) fn new_mcast(&self, payload: Vec<u8>, encapsulated: u8) -> Mcast {
        let mut header = Header::new(self.my_id);
        header.encapsulated = encapsulated;
        Mcast {
            header,
            system_from: self.my_id,
            seq: 0,
            this_seqno: 0,
            ring_id: self.ring_id,
            node_id: 0,
            guarantee: 0,
            payload,
        }
    }

    /// Re-sends what others asked for and asks for what we miss.
    fn orf_token_rtr(&mut self, token: &mut OrfToken, allowed: &mut u32) -> u32 {
        let recovering = self.state == MembState::Recovery;
        let mut resent = 0;
        let mut i = 0;
        while resent < *allowed && i < token.rtr_list.len() {
            let item = token.rtr_list[i];
            let queue = if recovering {
                &self.recovery
            } else {
                &self.regular
            };
            match queue.get(item.seq) {
                Some(m) if item.ring_id == self.ring_id => {
                    let m = m.clone();
                    self.mcast_send(m);
                    token.rtr_list.remove(i);
                    resent += 1;
                }
                _ => i += 1,
            }
        }
        *allowed -= resent;

        let range = token.seq.wrapping_sub(self.aru).min(QUEUE_SIZE);
        let miss_limit = self.timers.miss_count_const;
        for i in 1..=range {
            if token.rtr_list.len() >= RTR_ENTRIES_MAX {
                break;
            }
            let seq = self.aru.wrapping_add(i);
            let queue = if recovering {
                &mut self.recovery
            } else {
                &mut self.regular
            };
            if !queue.in_range(seq) {
                break;
            }
            if queue.in_use(seq) || queue.miss_count(seq) < miss_limit {
                continue;
            }
            if !token.rtr_list.iter().any(|r| r.seq == seq) {
                token.rtr_list.push(RtrItem {
                    ring_id: self.ring_id,
                    seq,
                });
            }
        }
        resent
    }

    fn update_aru(&mut self) {
        let queue = if self.state == MembState::Recovery {
            &self.recovery
        } else {
            &self.regular
        };
        let range = self
            .high_seq_received
            .wrapping_sub(self.aru)
            .min(QUEUE_SIZE);
        let mut advanced = 0;
        for i in 1..=range {
            if !queue.in_use(self.aru.wrapping_add(i)) {
                break;
            }
            advanced = i;
        }
        self.aru = self.aru.wrapping_add(advanced);
    }

    /// Releases messages every member has received (and we delivered).
    fn messages_free(&mut self, token_aru: u32) {
        let mut release_to = token_aru;
        if seq_lt(self.last_aru, release_to) {
            release_to = self.last_aru;
        }
        if seq_lt(self.high_delivered, release_to) {
            release_to = self.high_delivered;
        }
        if seq_lt(release_to, self.last_released) {
            return;
        }
        self.regular.release(release_to);
        self.last_released = release_to;
    }

    pub(crate) fn handle_mcast(&mut self, m: Mcast) {
        if m.ring_id != self.ring_id {
            self.foreign_sender(m.system_from);
            return;
        }
        let recovering_copy = m.is_encapsulated();
        let queue = if recovering_copy {
            &mut self.recovery
        } else {
            &mut self.regular
        };
        let seq = m.seq;
        if queue.in_range(seq) && !queue.in_use(seq) {
            self.queue_dropped += u64::from(queue.add(seq, m));
            // As corosync: only a message we hold raises the high mark.
            if queue.in_use(seq) && seq_lt(self.high_seq_received, seq) {
                self.high_seq_received = seq;
            }
        }
        self.update_aru();
        if self.state == MembState::Operational {
            self.deliver_to_app(false, self.high_seq_received);
        }
    }

    /// Delivers regular-queue messages after `high_delivered` up to `end`. With
    /// `skip`, holes are stepped over and only messages from the deliver list
    /// (old-ring members that got everything) are passed on.
    pub(crate) fn deliver_to_app(&mut self, skip: bool, end: u32) {
        let start = self.high_delivered;
        let range = end.wrapping_sub(start).min(QUEUE_SIZE);
        for i in 1..=range {
            let seq = start.wrapping_add(i);
            if !self.regular.in_range(seq) {
                break;
            }
            let item = self
                .regular
                .get(seq)
                .map(|m| (m.system_from, m.header.nodeid));
            if item.is_none() && !skip {
                break;
            }
            self.high_delivered = seq;
            let Some((from, sender)) = item else { continue };
            if skip && !sets::contains(&self.deliver_memb_list, from) {
                continue;
            }
            let payload = self.regular.get(seq).map(|m| m.payload.clone());
            if let Some(payload) = payload {
                self.out.push(Action::Deliver { sender, payload });
            }
        }
    }
}
