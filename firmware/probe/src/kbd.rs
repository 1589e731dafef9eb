//! `probe.cad`: the probe answers Ctrl-Alt-Del from the VMM's keyboard the
//! way a Linux guest does (it reboots), so a test can drive
//! `PUT /vm/ctrl-alt-del` end to end through a software KVM that cannot run
//! Linux. The i8042's output buffer is polled (no interrupts: the probe has
//! no IDT entries for them); when Ctrl and Alt are held and Delete (or the
//! keypad's) goes down, the caller prints `PROBE ctrl-alt-del` and resets.
//!
//! Scan codes come in set 1 when the controller translates (its
//! configuration byte's bit 6, as the VMM starts it) and in set 2 otherwise;
//! the configuration byte is read once, at the start.

use crate::cpu;

const DATA: u16 = 0x60;
const STATUS: u16 = 0x64;
const STATUS_OUTPUT_FULL: u8 = 0x01;
const CMD_READ_CTR: u8 = 0x20;
const CTR_TRANSLATE: u8 = 0x40;
/// Polls for the configuration byte before assuming translation is on.
const CTR_POLLS: u32 = 1 << 16;

const EXTENDED: u8 = 0xe0;
const SET2_RELEASE: u8 = 0xf0;

/// Which key a scan code names, once its prefixes are taken off.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Ctrl,
    Alt,
    Delete,
    Other,
}

fn set1_key(code: u8) -> Key {
    match code {
        0x1d => Key::Ctrl,
        0x38 => Key::Alt,
        0x53 => Key::Delete,
        _ => Key::Other,
    }
}

fn set2_key(code: u8) -> Key {
    match code {
        0x14 => Key::Ctrl,
        0x11 => Key::Alt,
        0x71 => Key::Delete,
        _ => Key::Other,
    }
}

pub struct CadWatch {
    translated: bool,
    ctrl: bool,
    alt: bool,
    /// An 0xE0 or (set 2) 0xF0 prefix came; both apply to the next code.
    extended: bool,
    release: bool,
}

impl CadWatch {
    /// Reads the controller's configuration byte to learn the scan code set.
    pub fn new() -> Self {
        // Keys typed before the watch starts are not ours to judge.
        while cpu::inb(STATUS) & STATUS_OUTPUT_FULL != 0 {
            cpu::inb(DATA);
        }
        cpu::outb(STATUS, CMD_READ_CTR);
        let mut translated = true;
        for _ in 0..CTR_POLLS {
            if cpu::inb(STATUS) & STATUS_OUTPUT_FULL != 0 {
                translated = cpu::inb(DATA) & CTR_TRANSLATE != 0;
                break;
            }
        }
        Self {
            translated,
            ctrl: false,
            alt: false,
            extended: false,
            release: false,
        }
    }

    /// Reads one byte from the keyboard if there is one; true when it
    /// completed Ctrl-Alt-Del.
    pub fn poll(&mut self) -> bool {
        if cpu::inb(STATUS) & STATUS_OUTPUT_FULL == 0 {
            return false;
        }
        let byte = cpu::inb(DATA);
        self.feed(byte)
    }

    fn feed(&mut self, byte: u8) -> bool {
        if byte == EXTENDED {
            self.extended = true;
            return false;
        }
        if !self.translated && byte == SET2_RELEASE {
            self.release = true;
            return false;
        }
        let (key, pressed) = if self.translated {
            (set1_key(byte & 0x7f), byte & 0x80 == 0)
        } else {
            (set2_key(byte), !self.release)
        };
        // Either Ctrl, either Alt, Delete or the keypad's: as Linux's keymap.
        self.extended = false;
        self.release = false;
        match key {
            Key::Ctrl => self.ctrl = pressed,
            Key::Alt => self.alt = pressed,
            Key::Delete => return pressed && self.ctrl && self.alt,
            Key::Other => {}
        }
        false
    }
}
