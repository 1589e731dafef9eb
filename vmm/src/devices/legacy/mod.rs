//! PC legacy devices: the 16550 serial console, the i8042 keyboard
//! controller (reset line, keyboard) and the CMOS real-time clock.

pub mod cmos;
pub mod i8042;
pub mod serial;

use vm_superio::Trigger;
use vmm_sys_util::eventfd::EventFd;

/// An interrupt line or notification backed by an eventfd (registered as a
/// KVM irqfd for interrupts, or watched by the event loop for resets).
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

impl EventFdTrigger {
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(Self(self.0.try_clone()?))
    }
}
