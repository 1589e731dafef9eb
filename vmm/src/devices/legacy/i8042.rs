//! The i8042 keyboard controller, as far as a VM needs it: a controller
//! that answers Linux's probe promptly, and the CPU reset line (command
//! 0xFE), which guests use to reboot.
//!
//! vm-superio's `I8042Device` reads back 0 for every register, so Linux
//! waits ~0.5 s for a configuration byte that never comes ("Can't read CTR")
//! on every boot; this one answers the controller commands a driver issues
//! while probing. There is no keyboard behind it: bytes sent to the
//! keyboard get no reply, which drivers treat as "no keyboard".

use std::collections::VecDeque;

use vm_superio::Trigger;

use super::EventFdTrigger;
use crate::devices::bus::BusDevice;

/// First port of the controller (data at 0x60, command/status at 0x64).
pub const I8042_PORT_BASE: u64 = 0x60;
pub const I8042_PORT_LEN: u64 = 5;

const DATA_OFFSET: u64 = 0;
const COMMAND_OFFSET: u64 = 4;

const STATUS_OUTPUT_FULL: u8 = 0x01;
const STATUS_SYSTEM_FLAG: u8 = 0x04;
const STATUS_LAST_WAS_COMMAND: u8 = 0x08;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_DISABLE_AUX: u8 = 0xa7;
const CMD_ENABLE_AUX: u8 = 0xa8;
const CMD_TEST_AUX: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_TEST_KBD: u8 = 0xab;
const CMD_DISABLE_KBD: u8 = 0xad;
const CMD_ENABLE_KBD: u8 = 0xae;
const CMD_RESET_CPU: u8 = 0xfe;

const SELF_TEST_PASSED: u8 = 0x55;
const INTERFACE_TEST_PASSED: u8 = 0x00;
/// Configuration byte: keyboard interrupt on, system flag set, translation on.
const DEFAULT_CTR: u8 = 0x45;
const CTR_KBD_DISABLED: u8 = 0x10;
const CTR_AUX_DISABLED: u8 = 0x20;

pub struct I8042 {
    reset: EventFdTrigger,
    ctr: u8,
    output: VecDeque<u8>,
    /// The next data-port write is the new configuration byte.
    awaiting_ctr: bool,
    last_was_command: bool,
}

impl I8042 {
    /// `reset` fires when the guest asks for a CPU reset.
    pub fn new(reset: EventFdTrigger) -> Self {
        Self {
            reset,
            ctr: DEFAULT_CTR,
            output: VecDeque::new(),
            awaiting_ctr: false,
            last_was_command: false,
        }
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_SYSTEM_FLAG;
        if !self.output.is_empty() {
            s |= STATUS_OUTPUT_FULL;
        }
        if self.last_was_command {
            s |= STATUS_LAST_WAS_COMMAND;
        }
        s
    }

    fn command(&mut self, cmd: u8) {
        self.last_was_command = true;
        match cmd {
            CMD_READ_CTR => self.output.push_back(self.ctr),
            CMD_WRITE_CTR => self.awaiting_ctr = true,
            CMD_SELF_TEST => self.output.push_back(SELF_TEST_PASSED),
            CMD_TEST_KBD | CMD_TEST_AUX => self.output.push_back(INTERFACE_TEST_PASSED),
            CMD_DISABLE_KBD => self.ctr |= CTR_KBD_DISABLED,
            CMD_ENABLE_KBD => self.ctr &= !CTR_KBD_DISABLED,
            CMD_DISABLE_AUX => self.ctr |= CTR_AUX_DISABLED,
            CMD_ENABLE_AUX => self.ctr &= !CTR_AUX_DISABLED,
            // A failed eventfd write only loses a reset the guest will retry.
            CMD_RESET_CPU => drop(self.reset.trigger()),
            _ => {}
        }
    }

    fn data(&mut self, value: u8) {
        self.last_was_command = false;
        if self.awaiting_ctr {
            self.ctr = value;
            self.awaiting_ctr = false;
        }
        // Otherwise a byte for the (absent) keyboard: no answer.
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            DATA_OFFSET => self.output.pop_front().unwrap_or(0),
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
            DATA_OFFSET => self.data(value),
            COMMAND_OFFSET => self.command(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    fn device() -> (I8042, EventFd) {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        (I8042::new(EventFdTrigger(evt.try_clone().unwrap())), evt)
    }

    fn read(dev: &mut I8042, offset: u64) -> u8 {
        let mut b = [0u8];
        dev.read(offset, &mut b);
        b[0]
    }

    #[test]
    fn reset_command_fires_the_reset_event() {
        let (mut dev, evt) = device();
        dev.write(COMMAND_OFFSET, &[CMD_DISABLE_KBD]);
        assert!(evt.read().is_err(), "no reset for other commands");
        dev.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(evt.read().unwrap(), 1);
    }

    #[test]
    fn configuration_byte_reads_back_what_was_written() {
        let (mut dev, _evt) = device();
        dev.write(COMMAND_OFFSET, &[CMD_READ_CTR]);
        assert_ne!(read(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL, 0);
        assert_eq!(read(&mut dev, DATA_OFFSET), DEFAULT_CTR);
        assert_eq!(read(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL, 0);
        dev.write(COMMAND_OFFSET, &[CMD_WRITE_CTR]);
        dev.write(DATA_OFFSET, &[0x30]);
        dev.write(COMMAND_OFFSET, &[CMD_READ_CTR]);
        assert_eq!(read(&mut dev, DATA_OFFSET), 0x30);
    }

    #[test]
    fn self_test_and_interface_tests_pass() {
        let (mut dev, _evt) = device();
        dev.write(COMMAND_OFFSET, &[CMD_SELF_TEST]);
        assert_eq!(read(&mut dev, DATA_OFFSET), SELF_TEST_PASSED);
        dev.write(COMMAND_OFFSET, &[CMD_TEST_KBD]);
        assert_eq!(read(&mut dev, DATA_OFFSET), INTERFACE_TEST_PASSED);
    }

    #[test]
    fn keyboard_bytes_get_no_answer() {
        let (mut dev, _evt) = device();
        dev.write(DATA_OFFSET, &[0xf2]);
        assert_eq!(read(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL, 0);
    }
}
