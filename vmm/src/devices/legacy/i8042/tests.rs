use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::*;

const STATUS_AUX_DATA: u8 = 0x20;

struct Rig {
    dev: I8042,
    reset: EventFd,
    irq: EventFd,
    /// Port accesses so far: each one is a VM exit in a real guest.
    accesses: usize,
}

impl Rig {
    fn new() -> Self {
        let reset = EventFd::new(EFD_NONBLOCK).unwrap();
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let dev = I8042::new(
            EventFdTrigger(reset.try_clone().unwrap()),
            EventFdTrigger(irq.try_clone().unwrap()),
        );
        Self {
            dev,
            reset,
            irq,
            accesses: 0,
        }
    }

    fn inb(&mut self, offset: u64) -> u8 {
        self.accesses += 1;
        let mut b = [0u8];
        self.dev.read(offset, &mut b);
        b[0]
    }

    fn outb(&mut self, offset: u64, value: u8) {
        self.accesses += 1;
        self.dev.write(offset, &[value]);
    }

    fn interrupts(&self) -> u64 {
        self.irq.read().unwrap_or(0)
    }

    /// Linux's i8042_wait_read: polls the status up to 10,000 times (50 us
    /// apart, 0.5 s); None on timeout.
    fn wait_read(&mut self) -> Option<u8> {
        for _ in 0..10_000 {
            let status = self.inb(COMMAND_OFFSET);
            if status & STATUS_OUTPUT_FULL != 0 {
                return Some(status);
            }
        }
        None
    }

    /// Linux's i8042_flush.
    fn flush(&mut self) {
        while self.inb(COMMAND_OFFSET) & STATUS_OUTPUT_FULL != 0 {
            self.inb(DATA_OFFSET);
        }
    }

    /// Linux's __i8042_command for a command with one parameter and one
    /// answer, including its check that an AUX loopback answer is AUX data.
    fn command_1_1(&mut self, cmd: u8, param: u8) -> Result<u8, &'static str> {
        self.outb(COMMAND_OFFSET, cmd);
        self.outb(DATA_OFFSET, param);
        let status = self.wait_read().ok_or("wait read timeout")?;
        if cmd == 0xd3 && status & STATUS_AUX_DATA == 0 {
            return Err("auxerr");
        }
        Ok(self.inb(DATA_OFFSET))
    }

    fn command_0_1(&mut self, cmd: u8) -> Result<u8, &'static str> {
        self.outb(COMMAND_OFFSET, cmd);
        self.wait_read().ok_or("wait read timeout")?;
        Ok(self.inb(DATA_OFFSET))
    }

    /// Sends a byte to the keyboard and collects its answer the way the
    /// interrupt handler does: one IRQ, one status and one data read per byte.
    fn keyboard_command(&mut self, byte: u8, answer_len: usize) -> Vec<u8> {
        self.outb(DATA_OFFSET, byte);
        let mut got = Vec::new();
        while got.len() < answer_len {
            assert_eq!(self.interrupts(), 1, "one IRQ 1 per byte");
            assert_ne!(self.inb(COMMAND_OFFSET) & STATUS_OUTPUT_FULL, 0);
            got.push(self.inb(DATA_OFFSET));
        }
        assert_eq!(self.inb(COMMAND_OFFSET) & STATUS_OUTPUT_FULL, 0);
        got
    }
}

/// Linux 6.1's i8042_controller_init then i8042_check_aux, step by step.
/// Returns whether the driver would go on to use an AUX port.
fn linux_probe(rig: &mut Rig) -> Result<bool, &'static str> {
    rig.flush();
    let ctr = rig.command_0_1(CMD_READ_CTR)?;
    assert_eq!(rig.command_0_1(CMD_READ_CTR)?, ctr, "a stable CTR");
    assert_ne!(
        rig.inb(COMMAND_OFFSET) & STATUS_UNLOCKED,
        0,
        "Keylock active"
    );
    rig.outb(COMMAND_OFFSET, CMD_WRITE_CTR);
    rig.outb(DATA_OFFSET, (ctr | CTR_KBD_DISABLED) & !CTR_KBD_INT);
    rig.flush();
    // Answers so far raised IRQ 1 (the firmware's configuration enables
    // it); from here on the driver has it off.
    rig.interrupts();
    // i8042_check_aux: the loopback test, then (it failed) the interface test.
    rig.flush();
    let looped = rig.command_1_1(0xd3, 0x5a);
    if looped == Ok(0x5a) {
        return Ok(true);
    }
    match rig.command_0_1(0xa9)? {
        0x00 | 0xfa | 0xff => Ok(true),
        _ => Ok(false),
    }
}

#[test]
fn linux_finds_no_aux_port_in_a_few_accesses() {
    let mut rig = Rig::new();
    assert_eq!(linux_probe(&mut rig), Ok(false));
    // vm-superio's controller, and Vireo's before it had a keyboard, made
    // the driver poll 10,000 times here (then wait 250 ms for IRQ 12).
    assert!(rig.accesses < 30, "{} port accesses", rig.accesses);
    assert_eq!(rig.interrupts(), 0, "the driver had the interrupt off");
}

#[test]
fn atkbd_identifies_the_keyboard_through_irq_1() {
    let mut rig = Rig::new();
    linux_probe(&mut rig).unwrap();
    rig.flush();
    // i8042_enable_kbd_port: interface and interrupt on.
    rig.outb(COMMAND_OFFSET, CMD_WRITE_CTR);
    rig.outb(DATA_OFFSET, DEFAULT_CTR);
    assert_eq!(rig.interrupts(), 0);
    // atkbd_probe and friends: identify, reset-and-disable, LEDs, enable.
    assert_eq!(rig.keyboard_command(0xf2, 3), [0xfa, 0xab, 0x41]);
    assert_eq!(rig.keyboard_command(0xf5, 1), [0xfa]);
    assert_eq!(rig.keyboard_command(0xed, 1), [0xfa]);
    assert_eq!(rig.keyboard_command(0x00, 1), [0xfa]);
    assert_eq!(rig.keyboard_command(0xf4, 1), [0xfa]);
}

#[test]
fn ctrl_alt_del_is_typed_in_the_set_the_guest_reads() {
    let mut rig = Rig::new();
    rig.dev.ctrl_alt_del().unwrap();
    let got: Vec<u8> = (0..8)
        .map(|_| {
            assert_eq!(rig.interrupts(), 1);
            rig.inb(DATA_OFFSET)
        })
        .collect();
    assert_eq!(got, [0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d]);
    assert_eq!(rig.inb(COMMAND_OFFSET) & STATUS_OUTPUT_FULL, 0);
    // Without translation (i8042.direct), set 2.
    rig.outb(COMMAND_OFFSET, CMD_WRITE_CTR);
    rig.outb(DATA_OFFSET, DEFAULT_CTR & !CTR_TRANSLATE);
    rig.dev.ctrl_alt_del().unwrap();
    assert_eq!([rig.inb(DATA_OFFSET), rig.inb(DATA_OFFSET)], [0x14, 0x11]);
}

#[test]
fn keys_wait_while_the_keyboard_interface_is_disabled() {
    let mut rig = Rig::new();
    rig.outb(COMMAND_OFFSET, CMD_DISABLE_KBD);
    rig.dev.ctrl_alt_del().unwrap();
    assert_eq!(rig.inb(COMMAND_OFFSET) & STATUS_OUTPUT_FULL, 0);
    assert_eq!(rig.interrupts(), 0);
    rig.outb(COMMAND_OFFSET, CMD_ENABLE_KBD);
    assert_eq!(rig.interrupts(), 1);
    assert_eq!(rig.inb(DATA_OFFSET), 0x1d);
}

#[test]
fn a_command_answer_goes_before_an_unread_key() {
    let mut rig = Rig::new();
    rig.dev.ctrl_alt_del().unwrap();
    assert_eq!(rig.command_0_1(CMD_READ_CTR), Ok(DEFAULT_CTR));
    assert_eq!(rig.inb(DATA_OFFSET), 0x1d, "the key is still there");
}

#[test]
fn a_disabled_keyboard_refuses_keys() {
    let mut rig = Rig::new();
    rig.outb(DATA_OFFSET, 0xf5);
    assert_eq!(rig.dev.ctrl_alt_del(), Err(KeyboardError::Disabled));
}

#[test]
fn reset_command_and_output_port_reset_the_cpu() {
    let mut rig = Rig::new();
    rig.outb(COMMAND_OFFSET, CMD_DISABLE_KBD);
    // Linux's i8042_platform_init: A20 on through the output port, and the
    // "null command" 0xFF; neither resets.
    rig.outb(COMMAND_OFFSET, CMD_WRITE_OUTPUT_PORT);
    rig.outb(DATA_OFFSET, 0xdf);
    rig.outb(COMMAND_OFFSET, 0xff);
    assert!(rig.reset.read().is_err(), "no reset for other commands");
    rig.outb(COMMAND_OFFSET, 0xfe);
    assert_eq!(rig.reset.read().unwrap(), 1);
    rig.outb(COMMAND_OFFSET, CMD_WRITE_OUTPUT_PORT);
    rig.outb(DATA_OFFSET, 0xde);
    assert_eq!(rig.reset.read().unwrap(), 1);
}

#[test]
fn configuration_byte_reads_back_what_was_written() {
    let mut rig = Rig::new();
    assert_eq!(rig.command_0_1(CMD_READ_CTR), Ok(DEFAULT_CTR));
    rig.outb(COMMAND_OFFSET, CMD_WRITE_CTR);
    rig.outb(DATA_OFFSET, 0x30);
    assert_eq!(rig.command_0_1(CMD_READ_CTR), Ok(0x30));
    assert_eq!(rig.command_0_1(CMD_SELF_TEST), Ok(SELF_TEST_PASSED));
    assert_eq!(rig.command_0_1(CMD_TEST_KBD), Ok(INTERFACE_TEST_PASSED));
}
