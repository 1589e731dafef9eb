//! The PS/2 keyboard behind the i8042's first port: it answers the commands
//! a keyboard driver sends (identify, enable, LEDs, typematic rate, scan code
//! set), and types the keys the VMM presses for the guest (Ctrl-Alt-Del).
//!
//! It speaks scan code set 2. When the controller translates (its
//! configuration byte's bit 6, how a PC's firmware leaves it and how Linux
//! keeps it), the guest reads set 1: the keyboard is told on every call and
//! queues bytes as the guest will read them, so a byte the controller hands
//! back (`push_front`) needs no second translation.
//!
//! An unknown command is answered with "resend" (0xFE), as real keyboards
//! do. That is also what makes Linux's probe of a controller without an AUX
//! port quick: the loopback test's byte reaches the keyboard, whose 0xFE
//! tells the driver at once that there is no mouse port (see `mod.rs`).

use std::collections::VecDeque;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
const SELF_TEST_PASSED: u8 = 0xaa;
const ECHO: u8 = 0xee;
/// "MF2 keyboard", the second byte as the controller translates it or not.
const ID: [u8; 2] = [0xab, 0x83];
const ID_TRANSLATED: u8 = 0x41;
/// Scan code set 2, and how the translating controller reports the number.
const SET_2: u8 = 0x02;
const SET_2_TRANSLATED: u8 = 0x41;

const CMD_SET_LEDS: u8 = 0xed;
const CMD_ECHO: u8 = 0xee;
const CMD_SCAN_CODE_SET: u8 = 0xf0;
const CMD_IDENTIFY: u8 = 0xf2;
const CMD_TYPEMATIC: u8 = 0xf3;
const CMD_ENABLE: u8 = 0xf4;
const CMD_DISABLE: u8 = 0xf5;
const CMD_DEFAULTS: u8 = 0xf6;
const CMD_RESEND: u8 = 0xfe;
const CMD_RESET: u8 = 0xff;

/// Bytes a keyboard buffers for the host; more keys than this are refused.
const QUEUE_LIMIT: usize = 32;

/// One key: its make code in set 2 and in set 1, and whether it is one of
/// the extended keys (0xE0 prefix in both sets).
struct Key {
    extended: bool,
    set2: u8,
    set1: u8,
}

const LEFT_CTRL: Key = Key {
    extended: false,
    set2: 0x14,
    set1: 0x1d,
};
const LEFT_ALT: Key = Key {
    extended: false,
    set2: 0x11,
    set1: 0x38,
};
const DELETE: Key = Key {
    extended: true,
    set2: 0x71,
    set1: 0x53,
};

/// Why keys could not be typed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyboardError {
    #[error("this VM has no keyboard (only x86_64 VMs have one)")]
    Absent,
    #[error("the guest has the keyboard disabled (no keyboard driver, or it is not ready yet)")]
    Disabled,
    #[error("the guest is not reading its keyboard: the keyboard's buffer is full")]
    Full,
}

/// The bytes a key sends when pressed or released.
fn key_bytes(key: &Key, pressed: bool, translated: bool) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(3);
    if key.extended {
        bytes.push(0xe0);
    }
    match (translated, pressed) {
        (true, true) => bytes.push(key.set1),
        (true, false) => bytes.push(key.set1 | 0x80),
        (false, true) => bytes.push(key.set2),
        (false, false) => bytes.extend([0xf0, key.set2]),
    }
    bytes
}

pub struct Keyboard {
    /// Bytes for the host, oldest first, as the guest will read them.
    queue: VecDeque<u8>,
    /// Keys are reported only while scanning (after reset, or command 0xF4).
    scanning: bool,
    /// A command whose parameter byte comes next (LEDs, typematic, set).
    awaiting: Option<u8>,
    /// The last byte sent, for the host's "resend".
    last: u8,
}

/// The keyboard's state for snapshots (`../persist.rs`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyboardState {
    queue: Vec<u8>,
    scanning: bool,
    awaiting: Option<u8>,
    last: u8,
}

impl Default for Keyboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Keyboard {
    pub fn save(&self) -> KeyboardState {
        KeyboardState {
            queue: self.queue.iter().copied().collect(),
            scanning: self.scanning,
            awaiting: self.awaiting,
            last: self.last,
        }
    }

    pub fn restore(&mut self, saved: &KeyboardState) {
        self.queue = saved.queue.iter().copied().collect();
        self.scanning = saved.scanning;
        self.awaiting = saved.awaiting;
        self.last = saved.last;
    }

    /// A keyboard as after power-on: self test passed, scanning.
    pub fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            scanning: true,
            awaiting: None,
            last: ACK,
        }
    }

    /// The next byte for the host, if any.
    pub fn pop(&mut self) -> Option<u8> {
        let b = self.queue.pop_front()?;
        self.last = b;
        Some(b)
    }

    /// Takes back a byte the controller had not handed over yet.
    pub fn push_front(&mut self, byte: u8) {
        self.queue.push_front(byte);
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn scanning(&self) -> bool {
        self.scanning
    }

    fn send(&mut self, bytes: &[u8]) {
        self.queue.extend(bytes);
    }

    /// A byte from the host; the keyboard's answer is queued.
    pub fn receive(&mut self, byte: u8, translated: bool) {
        if let Some(command) = self.awaiting.take() {
            self.parameter(command, byte, translated);
            return;
        }
        match byte {
            CMD_SET_LEDS | CMD_TYPEMATIC | CMD_SCAN_CODE_SET => {
                self.awaiting = Some(byte);
                self.send(&[ACK]);
            }
            CMD_ECHO => self.send(&[ECHO]),
            CMD_IDENTIFY => {
                let second = if translated { ID_TRANSLATED } else { ID[1] };
                self.send(&[ACK, ID[0], second]);
            }
            CMD_ENABLE => {
                self.queue.clear();
                self.scanning = true;
                self.send(&[ACK]);
            }
            CMD_DISABLE => {
                self.queue.clear();
                self.scanning = false;
                self.send(&[ACK]);
            }
            CMD_DEFAULTS => {
                self.queue.clear();
                self.send(&[ACK]);
            }
            CMD_RESEND => {
                let last = self.last;
                self.send(&[last]);
            }
            CMD_RESET => {
                self.queue.clear();
                self.scanning = true;
                self.send(&[ACK, SELF_TEST_PASSED]);
            }
            _ => self.send(&[RESEND]),
        }
    }

    /// The parameter byte of `command`.
    fn parameter(&mut self, command: u8, value: u8, translated: bool) {
        match (command, value) {
            // "Which set?": the answer follows the acknowledgement.
            (CMD_SCAN_CODE_SET, 0) => {
                let set = if translated { SET_2_TRANSLATED } else { SET_2 };
                self.send(&[ACK, set]);
            }
            // Only set 2 is spoken; a driver asked for another keeps set 2.
            (CMD_SCAN_CODE_SET, SET_2) => self.send(&[ACK]),
            (CMD_SCAN_CODE_SET, _) => self.send(&[RESEND]),
            // LEDs and typematic rate: nothing to show or repeat.
            _ => self.send(&[ACK]),
        }
    }

    /// Presses and releases Ctrl-Alt-Del: Ctrl down, Alt down, Del down,
    /// then each released in reverse order, the way a person types it.
    pub fn ctrl_alt_del(&mut self, translated: bool) -> Result<(), KeyboardError> {
        if !self.scanning {
            return Err(KeyboardError::Disabled);
        }
        let keys = [&LEFT_CTRL, &LEFT_ALT, &DELETE];
        let mut bytes: Vec<u8> = keys
            .iter()
            .flat_map(|k| key_bytes(k, true, translated))
            .collect();
        for k in keys.iter().rev() {
            bytes.extend(key_bytes(k, false, translated));
        }
        if self.queue.len() + bytes.len() > QUEUE_LIMIT {
            return Err(KeyboardError::Full);
        }
        self.send(&bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(kbd: &mut Keyboard) -> Vec<u8> {
        std::iter::from_fn(|| kbd.pop()).collect()
    }

    #[test]
    fn identify_answers_an_mf2_keyboard() {
        let mut kbd = Keyboard::new();
        kbd.receive(CMD_IDENTIFY, false);
        assert_eq!(drain(&mut kbd), [ACK, 0xab, 0x83]);
        kbd.receive(CMD_IDENTIFY, true);
        assert_eq!(drain(&mut kbd), [ACK, 0xab, 0x41]);
    }

    #[test]
    fn commands_with_a_parameter_are_acknowledged_twice() {
        let mut kbd = Keyboard::new();
        for cmd in [CMD_SET_LEDS, CMD_TYPEMATIC] {
            kbd.receive(cmd, true);
            kbd.receive(0x00, true);
            assert_eq!(drain(&mut kbd), [ACK, ACK]);
        }
        kbd.receive(CMD_SCAN_CODE_SET, false);
        kbd.receive(0, false);
        assert_eq!(drain(&mut kbd), [ACK, ACK, SET_2]);
        kbd.receive(CMD_SCAN_CODE_SET, false);
        kbd.receive(3, false);
        assert_eq!(drain(&mut kbd), [ACK, RESEND], "set 3 is refused");
    }

    #[test]
    fn unknown_bytes_ask_for_a_resend() {
        let mut kbd = Keyboard::new();
        kbd.receive(0x5a, true);
        assert_eq!(drain(&mut kbd), [RESEND]);
        kbd.receive(CMD_RESEND, true);
        assert_eq!(drain(&mut kbd), [RESEND], "resend repeats the last byte");
    }

    #[test]
    fn reset_passes_its_self_test_and_scans() {
        let mut kbd = Keyboard::new();
        kbd.receive(CMD_DISABLE, true);
        assert_eq!(drain(&mut kbd), [ACK]);
        assert_eq!(kbd.ctrl_alt_del(true), Err(KeyboardError::Disabled));
        kbd.receive(CMD_RESET, true);
        assert_eq!(drain(&mut kbd), [ACK, SELF_TEST_PASSED]);
        assert_eq!(kbd.ctrl_alt_del(true), Ok(()));
    }

    #[test]
    fn ctrl_alt_del_in_set_1_and_set_2() {
        let mut kbd = Keyboard::new();
        kbd.ctrl_alt_del(true).unwrap();
        assert_eq!(
            drain(&mut kbd),
            [0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d]
        );
        kbd.ctrl_alt_del(false).unwrap();
        assert_eq!(
            drain(&mut kbd),
            [0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14]
        );
    }

    #[test]
    fn a_keyboard_nobody_reads_refuses_more_keys() {
        let mut kbd = Keyboard::new();
        let mut typed = 0;
        while kbd.ctrl_alt_del(false).is_ok() {
            typed += 1;
        }
        assert_eq!(typed, QUEUE_LIMIT / 11);
        assert_eq!(kbd.ctrl_alt_del(false), Err(KeyboardError::Full));
    }
}
