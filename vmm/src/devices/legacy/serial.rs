//! The 16550 UART console (vm-superio), wired to stdout, a file, a Unix
//! socket client, or nothing.

use serde::{Deserialize, Serialize};
use vm_superio::serial::{NoEvents, SerialState};
use vm_superio::Serial;

use super::EventFdTrigger;
pub use crate::console::ConsoleOutput;
use crate::devices::bus::BusDevice;

/// COM1's ports.
pub const COM1_PORT_BASE: u64 = 0x3f8;
pub const COM1_PORT_LEN: u64 = 8;

pub struct SerialConsole(Serial<EventFdTrigger, NoEvents, ConsoleOutput>);

/// See [`SerialConsole::registers`].
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct SerialRegisters {
    pub ier: u8,
    pub iir: u8,
    pub lcr: u8,
    pub mcr: u8,
    pub lsr: u8,
    pub rx_queued: usize,
}

impl SerialConsole {
    /// `interrupt` is the serial IRQ's irqfd.
    pub fn new(interrupt: EventFdTrigger, output: ConsoleOutput) -> Self {
        Self(Serial::new(interrupt, output))
    }

    /// Sends the console somewhere else from now on.
    pub fn set_output(&mut self, output: ConsoleOutput) {
        *self.0.writer_mut() = output;
    }

    /// The registers a stalled console is judged by: interrupt enable and
    /// identification (pending interrupts), line and modem control, line
    /// status; read from the device's state, so nothing is acknowledged.
    pub fn registers(&self) -> SerialRegisters {
        let s = self.0.state();
        SerialRegisters {
            ier: s.interrupt_enable,
            iir: s.interrupt_identification,
            lcr: s.line_control,
            mcr: s.modem_control,
            lsr: s.line_status,
            rx_queued: s.in_buffer.len(),
        }
    }

    /// Queues bytes typed by the user for the guest to read; returns how many
    /// fit in the receive FIFO (the rest are dropped, as on real hardware).
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.0.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

/// vm-superio's `SerialState`, field for field (it has no serde of its own).
#[derive(Serialize, Deserialize)]
#[serde(remote = "SerialState")]
struct SerialStateDef {
    baud_divisor_low: u8,
    baud_divisor_high: u8,
    interrupt_enable: u8,
    interrupt_identification: u8,
    line_control: u8,
    line_status: u8,
    modem_control: u8,
    modem_status: u8,
    scratch: u8,
    in_buffer: Vec<u8>,
}

/// The UART's registers and the input the guest has not read yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialSnapshot(#[serde(with = "SerialStateDef")] pub SerialState);

impl SerialConsole {
    pub fn save(&self) -> SerialSnapshot {
        SerialSnapshot(self.0.state())
    }

    /// The saved registers, keeping this console's interrupt line and output.
    pub fn restore(&mut self, saved: &SerialSnapshot) -> std::io::Result<()> {
        let interrupt = self.0.interrupt_evt().try_clone()?;
        let output = self.0.writer_mut().clone();
        self.0 = Serial::from_state(&saved.0, interrupt, NoEvents, output)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        Ok(())
    }
}

impl BusDevice for SerialConsole {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let Some(b) = data.first_mut() {
            *b = self.0.read(offset as u8);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(&b) = data.first() {
            // Output errors (a closed stdout) must not stop the guest.
            let _ = self.0.write(offset as u8, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[test]
    fn bytes_written_by_the_guest_reach_the_file() {
        use crate::config::SerialOutput;
        use crate::console::Console;
        let path = std::env::temp_dir().join(format!("vireo-serial-{}", std::process::id()));
        let console = Console::open(&SerialOutput::File(path.clone())).unwrap();
        let irq = EventFdTrigger(EventFd::new(EFD_NONBLOCK).unwrap());
        let mut com1 = SerialConsole::new(irq, console.output());
        for b in b"hi\n" {
            com1.write(0, &[*b]);
        }
        // Dropping the console writes out what is queued.
        drop(console);
        assert_eq!(std::fs::read(&path).unwrap(), b"hi\n");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn input_is_readable_and_raises_the_interrupt() {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let irq = EventFdTrigger(evt.try_clone().unwrap());
        let mut com1 = SerialConsole::new(irq, ConsoleOutput::discard());
        com1.write(1, &[0x01]); // IER: received-data interrupt on
        assert_eq!(com1.enqueue_input(b"a"), 1);
        assert!(evt.read().unwrap() >= 1);
        let mut b = [0u8];
        com1.read(0, &mut b);
        assert_eq!(&b, b"a");
    }
}
