//! The i8042 keyboard controller with a keyboard behind it: the CPU reset
//! line (command 0xFE, or the output port's bit 0), a configuration byte,
//! the one-byte output buffer with IRQ 1, and a PS/2 keyboard
//! (`keyboard.rs`) through which the VMM can type Ctrl-Alt-Del for the guest.
//!
//! Boot time is the design constraint: every port access is a VM exit, and
//! under nested virtualization each one costs tens of microseconds, so the
//! controller must let Linux's probe finish in a handful of accesses rather
//! than in polling loops that time out:
//! - status bit 4 says the keyboard is not locked (else Linux warns);
//! - there is no AUX (mouse) port, as on an AT-style controller: the AUX
//!   commands (0xA7-0xA9, 0xD3, 0xD4) are unknown and ignored, so the byte
//!   of Linux's loopback test (0xD3, 0x5A) goes to the keyboard, which
//!   answers "resend" (0xFE) at once. The driver sees keyboard data where it
//!   wanted AUX data, then reads that same 0xFE as the AUX interface test's
//!   result (an error code), and decides there is no AUX port: four port
//!   accesses. A controller that ignores the byte instead makes it poll the
//!   status for 0.5 s, then wait 250 ms for an IRQ 12 (Firecracker's pays the
//!   latter, vm-superio's both, and Vireo's did until it had a keyboard);
//!   one with a working loopback but no IRQ 12 would also wait the 250 ms.
//! - the keyboard answers identify, enable and the other driver commands at
//!   once (IRQ 1 per byte), so Linux's atkbd binds it in a few dozen exits.

use std::collections::VecDeque;

use vm_superio::Trigger;

use super::EventFdTrigger;
use crate::devices::bus::BusDevice;

mod keyboard;
mod persist;
#[cfg(test)]
mod tests;

use keyboard::Keyboard;
pub use keyboard::KeyboardError;
pub use persist::I8042State;

/// First port of the controller (data at 0x60, command/status at 0x64).
pub const I8042_PORT_BASE: u64 = 0x60;
pub const I8042_PORT_LEN: u64 = 5;

const DATA_OFFSET: u64 = 0;
const COMMAND_OFFSET: u64 = 4;

const STATUS_OUTPUT_FULL: u8 = 0x01;
const STATUS_SYSTEM_FLAG: u8 = 0x04;
const STATUS_LAST_WAS_COMMAND: u8 = 0x08;
/// The keyboard is not inhibited by the (absent) key lock.
const STATUS_UNLOCKED: u8 = 0x10;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_TEST_KBD: u8 = 0xab;
const CMD_DISABLE_KBD: u8 = 0xad;
const CMD_ENABLE_KBD: u8 = 0xae;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
const CMD_WRITE_KBD_BUFFER: u8 = 0xd2;
/// 0xF0-0xFF pulse the output port's low four lines for each 0 bit;
/// line 0 is the CPU's reset (so 0xFE resets).
const CMD_PULSE_FIRST: u8 = 0xf0;

const SELF_TEST_PASSED: u8 = 0x55;
const INTERFACE_TEST_PASSED: u8 = 0x00;
/// Configuration byte: keyboard interrupt on, system flag set, translation
/// on, as a PC's firmware leaves it.
const DEFAULT_CTR: u8 = 0x45;
const CTR_KBD_INT: u8 = 0x01;
const CTR_KBD_DISABLED: u8 = 0x10;
const CTR_TRANSLATE: u8 = 0x40;
/// Output port: reset line not asserted (bit 0), A20 on (bit 1).
const DEFAULT_OUTPUT_PORT: u8 = 0x03;
const OUTPUT_PORT_NOT_RESET: u8 = 0x01;

/// The controller as `GET /vm` shows it (see `I8042::registers`).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct I8042Registers {
    pub status: u8,
    pub ctr: u8,
    /// The byte in the output buffer, if any.
    pub output: Option<u8>,
    /// Bytes the keyboard holds for the guest.
    pub keyboard_queued: usize,
    pub keyboard_scanning: bool,
}

/// Who put the byte in the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Controller,
    Keyboard,
}

pub struct I8042 {
    reset: EventFdTrigger,
    /// IRQ 1.
    irq: EventFdTrigger,
    ctr: u8,
    output_port: u8,
    /// The output buffer: the byte the next data-port read returns.
    out: Option<(u8, Source)>,
    /// The controller's own answers waiting for the buffer (they go first).
    answers: VecDeque<u8>,
    /// What a read of the empty buffer returns: the last byte again.
    last_read: u8,
    /// The command whose parameter the next data-port write is.
    awaiting: Option<u8>,
    last_was_command: bool,
    keyboard: Keyboard,
}

impl I8042 {
    /// `reset` fires when the guest resets the CPU; `irq` is IRQ 1's irqfd.
    pub fn new(reset: EventFdTrigger, irq: EventFdTrigger) -> Self {
        Self {
            reset,
            irq,
            ctr: DEFAULT_CTR,
            output_port: DEFAULT_OUTPUT_PORT,
            out: None,
            answers: VecDeque::new(),
            last_read: 0,
            awaiting: None,
            last_was_command: false,
            keyboard: Keyboard::new(),
        }
    }

    /// Types Ctrl-Alt-Del on the keyboard, as Firecracker's SendCtrlAltDel
    /// does: Linux's keyboard driver turns it into `ctrl_alt_del()`, which
    /// signals init (or reboots, if init did not ask for the signal).
    pub fn ctrl_alt_del(&mut self) -> Result<(), KeyboardError> {
        self.keyboard.ctrl_alt_del(self.translating())?;
        self.refill();
        Ok(())
    }

    /// Read without side effects.
    pub fn registers(&self) -> I8042Registers {
        I8042Registers {
            status: self.status(),
            ctr: self.ctr,
            output: self.out.map(|(b, _)| b),
            keyboard_queued: self.keyboard.queued(),
            keyboard_scanning: self.keyboard.scanning(),
        }
    }

    fn translating(&self) -> bool {
        self.ctr & CTR_TRANSLATE != 0
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_SYSTEM_FLAG | STATUS_UNLOCKED;
        if self.out.is_some() {
            s |= STATUS_OUTPUT_FULL;
        }
        if self.last_was_command {
            s |= STATUS_LAST_WAS_COMMAND;
        }
        s
    }

    /// IRQ 1, when the configuration byte enables it. A failed eventfd write
    /// only loses an interrupt for a byte the guest can still poll.
    fn interrupt(&self) {
        if self.ctr & CTR_KBD_INT != 0 {
            let _ = self.irq.trigger();
        }
    }

    /// Fills the empty output buffer: controller answers first, then the
    /// keyboard's bytes while its interface is enabled.
    fn refill(&mut self) {
        if self.out.is_some() {
            return;
        }
        let next = match self.answers.pop_front() {
            Some(b) => (b, Source::Controller),
            None if self.ctr & CTR_KBD_DISABLED != 0 => return,
            None => match self.keyboard.pop() {
                Some(b) => (b, Source::Keyboard),
                None => return,
            },
        };
        self.out = Some(next);
        self.interrupt();
    }

    /// Queues the controller's answer to a command. A keyboard byte the host
    /// has not read yet goes back to the keyboard, so the answer is the next
    /// byte read (drivers empty the buffer before a command, but a key can
    /// arrive in between) and the key is not lost.
    fn answer(&mut self, byte: u8) {
        if let Some((b, Source::Keyboard)) = self.out {
            self.keyboard.push_front(b);
            self.out = None;
        }
        self.answers.push_back(byte);
        self.refill();
    }

    fn read_data(&mut self) -> u8 {
        if let Some((b, _)) = self.out.take() {
            self.last_read = b;
        }
        self.refill();
        self.last_read
    }

    fn command(&mut self, cmd: u8) {
        self.last_was_command = true;
        self.awaiting = None;
        match cmd {
            CMD_READ_CTR => self.answer(self.ctr),
            CMD_WRITE_CTR | CMD_WRITE_OUTPUT_PORT | CMD_WRITE_KBD_BUFFER => {
                self.awaiting = Some(cmd)
            }
            CMD_SELF_TEST => self.answer(SELF_TEST_PASSED),
            CMD_TEST_KBD => self.answer(INTERFACE_TEST_PASSED),
            CMD_DISABLE_KBD => self.ctr |= CTR_KBD_DISABLED,
            CMD_ENABLE_KBD => {
                self.ctr &= !CTR_KBD_DISABLED;
                self.refill();
            }
            CMD_READ_OUTPUT_PORT => self.answer(self.output_port),
            CMD_PULSE_FIRST..=0xff if cmd & OUTPUT_PORT_NOT_RESET == 0 => self.reset_cpu(),
            // The AUX port's commands among them: there is no AUX port.
            _ => {}
        }
    }

    fn write_data(&mut self, value: u8) {
        self.last_was_command = false;
        match self.awaiting.take() {
            Some(CMD_WRITE_CTR) => self.set_ctr(value),
            Some(CMD_WRITE_OUTPUT_PORT) => {
                self.output_port = value;
                if value & OUTPUT_PORT_NOT_RESET == 0 {
                    self.reset_cpu();
                }
            }
            Some(_) => self.answer(value),
            None => {
                // A byte for the keyboard; sending one enables the keyboard
                // interface, as PS/2 controllers do.
                self.ctr &= !CTR_KBD_DISABLED;
                self.keyboard.receive(value, self.translating());
                self.refill();
            }
        }
    }

    fn set_ctr(&mut self, value: u8) {
        let irq_was_on = self.ctr & CTR_KBD_INT != 0;
        self.ctr = value;
        if self.out.is_some() && !irq_was_on {
            // A byte that waited for the interrupt to be enabled.
            self.interrupt();
        }
        self.refill();
    }

    /// A failed eventfd write only loses a reset the guest will retry.
    fn reset_cpu(&self) {
        let _ = self.reset.trigger();
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            DATA_OFFSET => self.read_data(),
            COMMAND_OFFSET => self.status(),
            _ => 0,
        };
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            DATA_OFFSET => self.write_data(value),
            COMMAND_OFFSET => self.command(value),
            _ => {}
        }
    }
}
