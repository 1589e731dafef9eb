//! The i8042's and its keyboard's state for snapshots and migration. The
//! reset and interrupt lines are not state: the restored controller keeps
//! the new VM's own.

use serde::{Deserialize, Serialize};

use super::keyboard::KeyboardState;
use super::{Source, I8042};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct I8042State {
    ctr: u8,
    output_port: u8,
    /// The output buffer's byte, and whether the keyboard put it there.
    out: Option<(u8, bool)>,
    answers: Vec<u8>,
    last_read: u8,
    awaiting: Option<u8>,
    last_was_command: bool,
    keyboard: KeyboardState,
}

impl I8042 {
    pub fn save(&self) -> I8042State {
        I8042State {
            ctr: self.ctr,
            output_port: self.output_port,
            out: self.out.map(|(b, s)| (b, s == Source::Keyboard)),
            answers: self.answers.iter().copied().collect(),
            last_read: self.last_read,
            awaiting: self.awaiting,
            last_was_command: self.last_was_command,
            keyboard: self.keyboard.save(),
        }
    }

    pub fn restore(&mut self, saved: &I8042State) {
        self.ctr = saved.ctr;
        self.output_port = saved.output_port;
        self.out = saved.out.map(|(b, from_keyboard)| {
            let source = match from_keyboard {
                true => Source::Keyboard,
                false => Source::Controller,
            };
            (b, source)
        });
        self.answers = saved.answers.iter().copied().collect();
        self.last_read = saved.last_read;
        self.awaiting = saved.awaiting;
        self.last_was_command = saved.last_was_command;
        self.keyboard.restore(&saved.keyboard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::bus::BusDevice;
    use crate::devices::legacy::EventFdTrigger;
    use vmm_sys_util::eventfd::EventFd;

    fn controller() -> I8042 {
        let line = || EventFdTrigger(EventFd::new(0).unwrap());
        I8042::new(line(), line())
    }

    #[test]
    fn a_restored_controller_reads_back_what_the_saved_one_held() {
        let mut a = controller();
        // Configuration byte changed, keyboard scanning off, keys queued.
        a.write(4, &[0x60]);
        a.write(0, &[0x65]);
        a.ctrl_alt_del().unwrap();
        let saved = a.save();
        let mut b = controller();
        b.restore(&saved);
        assert_eq!(b.save(), saved);
        let (mut x, mut y) = ([0u8], [0u8]);
        for _ in 0..6 {
            a.read(0, &mut x);
            b.read(0, &mut y);
            assert_eq!(x, y);
        }
        let json = serde_json::to_string(&saved).unwrap();
        assert_eq!(serde_json::from_str::<I8042State>(&json).unwrap(), saved);
    }
}
