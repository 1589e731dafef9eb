//! Frames handed to a NIC by the VMM rather than read from its tap: after a
//! live migration, the frames that reached the source's tap while the guest
//! was switching over (the bridge still sent them there) arrive in the
//! migration stream, and the destination's RX delivers them as if its own
//! tap had. The net worker drains this queue before reading the tap.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::tap::VNET_HDR_LEN;
use super::worker::MAX_PACKET;

/// Frames waiting at most; a forwarder sending more loses the rest, as a
/// full tap queue would (the tap's own queue is 500 frames).
const CAPACITY: usize = 1024;

pub struct Inbox {
    frames: Mutex<VecDeque<Vec<u8>>>,
    /// Signalled on every push; the worker polls it.
    ready: EventFd,
}

impl Inbox {
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            frames: Mutex::new(VecDeque::new()),
            ready: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// Queues a frame (vnet header first); false when the inbox is full
    /// or the frame cannot be one (shorter than the headers, longer than
    /// the largest packet).
    pub fn push(&self, frame: Vec<u8>) -> bool {
        if !(VNET_HDR_LEN + 14..=MAX_PACKET).contains(&frame.len()) {
            return false;
        }
        {
            let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
            if frames.len() >= CAPACITY {
                return false;
            }
            frames.push_back(frame);
        }
        let _ = self.ready.write(1);
        true
    }

    /// The oldest queued frame.
    pub fn pop(&self) -> Option<Vec<u8>> {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// Readable while a push has not been acknowledged with `clear`.
    pub fn fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }

    pub fn clear(&self) {
        let _ = self.ready.read();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_order_and_a_full_inbox_refuses() {
        let inbox = Inbox::new().unwrap();
        assert!(!inbox.push(vec![0; 25]), "shorter than the headers");
        assert!(!inbox.push(vec![0; MAX_PACKET + 1]));
        for n in 0..CAPACITY {
            assert!(inbox.push(vec![n as u8; 26]));
        }
        assert!(!inbox.push(vec![0; 26]));
        assert_eq!(inbox.pop(), Some(vec![0; 26]));
        assert_eq!(inbox.pop(), Some(vec![1; 26]));
        inbox.clear();
    }
}
