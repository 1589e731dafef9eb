//! The virtio-mmio transport, version 2 (virtio 1.2, 4.2.2): the register
//! file a driver uses to discover a device, negotiate features, describe
//! its queues and notify them. One transport per device, one page each.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::{status, ActiveQueue, Interrupt, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::devices::bus::BusDevice;
use crate::memory::GuestRam;

/// "virt", little-endian.
const MAGIC: u32 = 0x7472_6976;
const VERSION: u32 = 2;
/// No PCI vendor: Linux ignores the value, 0 avoids claiming anyone's ID.
const VENDOR_ID: u32 = 0;
/// Where the device-specific configuration space begins.
pub const CONFIG_OFFSET: u64 = 0x100;
/// Size of one transport's register window.
pub const MMIO_LEN: u64 = 0x1000;
/// QueueNotify's offset: the VMM may let KVM turn writes there straight
/// into the queue's eventfd (an ioeventfd), skipping the exit to this thread.
pub const QUEUE_NOTIFY_OFFSET: u64 = reg::QUEUE_NOTIFY;

mod reg {
    pub const MAGIC: u64 = 0x00;
    pub const VERSION: u64 = 0x04;
    pub const DEVICE_ID: u64 = 0x08;
    pub const VENDOR_ID: u64 = 0x0c;
    pub const DEVICE_FEATURES: u64 = 0x10;
    pub const DEVICE_FEATURES_SEL: u64 = 0x14;
    pub const DRIVER_FEATURES: u64 = 0x20;
    pub const DRIVER_FEATURES_SEL: u64 = 0x24;
    pub const QUEUE_SEL: u64 = 0x30;
    pub const QUEUE_NUM_MAX: u64 = 0x34;
    pub const QUEUE_NUM: u64 = 0x38;
    pub const QUEUE_READY: u64 = 0x44;
    pub const QUEUE_NOTIFY: u64 = 0x50;
    pub const INTERRUPT_STATUS: u64 = 0x60;
    pub const INTERRUPT_ACK: u64 = 0x64;
    pub const STATUS: u64 = 0x70;
    pub const QUEUE_DESC_LOW: u64 = 0x80;
    pub const QUEUE_DESC_HIGH: u64 = 0x84;
    pub const QUEUE_DRIVER_LOW: u64 = 0x90;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x94;
    pub const QUEUE_DEVICE_LOW: u64 = 0xa0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0xa4;
    pub const SHM_LEN_LOW: u64 = 0xb0;
    pub const SHM_BASE_HIGH: u64 = 0xbc;
    pub const CONFIG_GENERATION: u64 = 0xfc;
}

pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestRam,
    interrupt: Arc<Interrupt>,
    queues: Vec<Queue>,
    /// One per queue; a QueueNotify write signals it, the device's worker waits on it.
    notify: Vec<EventFd>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
}

impl MmioTransport {
    /// Wraps `device`; `irqfd` must already be registered on the device's GSI.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestRam,
        irqfd: EventFd,
    ) -> std::io::Result<Self> {
        let sizes = device.queue_max_sizes().to_vec();
        let queues = sizes
            .iter()
            .map(|&max| Queue::new(max).map_err(std::io::Error::other))
            .collect::<Result<_, _>>()?;
        // Blocking eventfds: the worker sleeps in read() until notified.
        let notify = sizes
            .iter()
            .map(|_| EventFd::new(0))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            device,
            mem,
            interrupt: Arc::new(Interrupt::new(irqfd)),
            queues,
            notify,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
        })
    }

    pub fn status(&self) -> u32 {
        self.status
    }

    pub fn device(&self) -> &dyn VirtioDevice {
        &*self.device
    }

    pub fn device_mut(&mut self) -> &mut dyn VirtioDevice {
        &mut *self.device
    }

    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    pub fn memory(&self) -> &GuestRam {
        &self.mem
    }

    /// The registers, for `persist.rs`.
    pub fn parts(&self) -> super::persist::TransportParts<'_> {
        super::persist::TransportParts {
            status: self.status,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            queues: &self.queues,
        }
    }

    /// Sets the registers from saved state (`persist.rs` checked the queues).
    pub fn set_parts(
        &mut self,
        state: &super::persist::MmioState,
        queues: Vec<Queue>,
    ) -> Result<(), super::persist::PersistError> {
        if queues.len() != self.queues.len() {
            return Err(super::persist::PersistError::QueueCount {
                saved: queues.len(),
                found: self.queues.len(),
            });
        }
        self.status = state.status;
        self.device_features_sel = state.device_features_sel;
        self.driver_features_sel = state.driver_features_sel;
        self.driver_features = state.driver_features;
        self.queue_sel = state.queue_sel;
        self.queues = queues;
        Ok(())
    }

    /// Parks the device's worker (the VM is pausing).
    pub fn pause(&mut self) {
        self.device.pause();
    }

    /// Runs the device's parked worker again.
    pub fn resume(&mut self) -> std::io::Result<()> {
        self.device.resume()
    }

    /// Stops the device's worker for good (the VM is going away).
    pub fn stop(&mut self) {
        self.device.reset();
    }

    /// The eventfd of each queue, in queue order, for ioeventfd registration.
    pub fn notify_eventfds(&self) -> &[EventFd] {
        &self.notify
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        let q = |t: &mut Self, f: fn(&Queue) -> u32| t.selected().map_or(0, |q| f(q));
        match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device.device_type(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => feature_bank(self.device.features(), self.device_features_sel),
            reg::QUEUE_NUM_MAX => q(self, |q| q.max_size().into()),
            reg::QUEUE_NUM => q(self, |q| q.size().into()),
            reg::QUEUE_READY => q(self, |q| q.ready().into()),
            reg::INTERRUPT_STATUS => self.interrupt.status(),
            reg::STATUS => self.status,
            // No shared memory regions: length and base read as all ones (4.2.2).
            reg::SHM_LEN_LOW..=reg::SHM_BASE_HIGH => u32::MAX,
            // The configuration space never changes behind the driver's back.
            reg::CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32) {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::DRIVER_FEATURES => self.write_driver_features(value),
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NOTIFY => self.notify_queue(value),
            reg::INTERRUPT_ACK => self.interrupt.ack(value),
            reg::STATUS => self.write_status(value),
            _ => self.write_queue_reg(offset, value),
        }
    }

    /// Feature writes count only between DRIVER and FEATURES_OK (3.1.1).
    fn write_driver_features(&mut self, value: u32) {
        if self.status & (status::DRIVER | status::FEATURES_OK) != status::DRIVER {
            return;
        }
        let shift = match self.driver_features_sel {
            0 => 0,
            1 => 32,
            _ => return,
        };
        self.driver_features &= !(0xffff_ffffu64 << shift);
        self.driver_features |= u64::from(value) << shift;
    }

    /// Queue layout is writable only after FEATURES_OK and before DRIVER_OK.
    fn write_queue_reg(&mut self, offset: u64, value: u32) {
        if self.status & (status::FEATURES_OK | status::DRIVER_OK) != status::FEATURES_OK {
            return;
        }
        let Some(q) = self.selected() else { return };
        match offset {
            reg::QUEUE_NUM => q.set_size(value as u16),
            reg::QUEUE_READY => q.set_ready(value == 1),
            reg::QUEUE_DESC_LOW => q.set_desc_table_address(Some(value), None),
            reg::QUEUE_DESC_HIGH => q.set_desc_table_address(None, Some(value)),
            reg::QUEUE_DRIVER_LOW => q.set_avail_ring_address(Some(value), None),
            reg::QUEUE_DRIVER_HIGH => q.set_avail_ring_address(None, Some(value)),
            reg::QUEUE_DEVICE_LOW => q.set_used_ring_address(Some(value), None),
            reg::QUEUE_DEVICE_HIGH => q.set_used_ring_address(None, Some(value)),
            _ => {}
        }
    }

    fn notify_queue(&mut self, index: u32) {
        if self.status & status::DRIVER_OK == 0 {
            return;
        }
        if let Some(fd) = self.notify.get(index as usize) {
            let _ = fd.write(1);
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            return self.reset();
        }
        let added = value & !self.status;
        // The driver only ever adds bits (3.1.1); clearing one is a bad sequence.
        if value & self.status != self.status || !self.transition_allowed(added) {
            self.status |= status::NEEDS_RESET;
            return;
        }
        if added & status::FEATURES_OK != 0 && !self.features_acceptable() {
            // Left clear: the driver reads the status back and gives up (3.1.1 step 6).
            self.status = value & !status::FEATURES_OK;
            return;
        }
        self.status = value;
        if added & status::DRIVER_OK != 0 {
            self.activate();
        }
    }

    /// Each step needs the one before it: ACKNOWLEDGE → DRIVER → FEATURES_OK → DRIVER_OK.
    fn transition_allowed(&self, added: u32) -> bool {
        let have = self.status | added;
        let needs = [
            (status::DRIVER, status::ACKNOWLEDGE),
            (status::FEATURES_OK, status::DRIVER),
            (status::DRIVER_OK, status::FEATURES_OK),
        ];
        needs
            .iter()
            .all(|&(bit, prereq)| added & bit == 0 || have & prereq != 0)
    }

    fn features_acceptable(&self) -> bool {
        let offered = self.device.features();
        self.driver_features & !offered == 0 && self.driver_features & VIRTIO_F_VERSION_1 != 0
    }

    fn activate(&mut self) {
        match self.take_ready_queues() {
            Some(queues) => {
                let result = self.device.activate(
                    self.driver_features,
                    queues,
                    self.interrupt.clone(),
                    self.mem.clone(),
                );
                if result.is_err() {
                    self.status |= status::NEEDS_RESET;
                }
            }
            None => self.status |= status::NEEDS_RESET,
        }
    }

    /// Copies of every queue, each checked to lie in guest memory; None if any
    /// queue is not ready or is malformed.
    fn take_ready_queues(&self) -> Option<Vec<ActiveQueue>> {
        self.queues
            .iter()
            .zip(&self.notify)
            .map(|(q, fd)| {
                if !q.is_valid(&self.mem) {
                    return None;
                }
                Some(ActiveQueue {
                    queue: Queue::try_from(q.state()).ok()?,
                    notify: fd.try_clone().ok()?,
                })
            })
            .collect()
    }

    fn reset(&mut self) {
        self.device.reset();
        self.queues.iter_mut().for_each(QueueT::reset);
        self.interrupt.clear();
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
    }
}

fn feature_bank(features: u64, sel: u32) -> u32 {
    match sel {
        0 => features as u32,
        1 => (features >> 32) as u32,
        _ => 0,
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_OFFSET {
            return self.device.read_config(offset - CONFIG_OFFSET, data);
        }
        // Registers are 32-bit wide and read only whole (4.2.2.2).
        let value = match data.len() {
            4 => self.read_reg(offset),
            _ => 0,
        };
        let n = data.len().min(4);
        data[..n].copy_from_slice(&value.to_le_bytes()[..n]);
        data[n..].fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_OFFSET {
            return self.device.write_config(offset - CONFIG_OFFSET, data);
        }
        if let Ok(bytes) = <[u8; 4]>::try_from(data) {
            self.write_reg(offset, u32::from_le_bytes(bytes));
        }
    }
}

#[cfg(test)]
#[path = "mmio_tests.rs"]
mod tests;
