//! Fuzz harness (feature `fuzz`): the virtio-mmio register file driven by
//! a sequence of guest reads and writes, over a device that accepts
//! whatever it is given.

use std::sync::Arc;

use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::mmio::MmioTransport;
use super::{read_config_bytes, ActivateError, ActiveQueue, Interrupt, VirtioDevice};
use super::{INT_VRING, VIRTIO_F_VERSION_1};
use crate::devices::bus::BusDevice;
use crate::memory::GuestRam;

struct Device;

impl VirtioDevice for Device {
    fn device_type(&self) -> u32 {
        2
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | 1 << 28 | 1 << 29 | 1 << 9
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16, 256]
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&[7; 60], offset, data);
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(
        &mut self,
        _features: u64,
        _queues: Vec<ActiveQueue>,
        interrupt: Arc<Interrupt>,
        _mem: GuestRam,
    ) -> Result<(), ActivateError> {
        interrupt.trigger(INT_VRING);
        Ok(())
    }
    fn reset(&mut self) {}
    fn pause(&mut self) {}
    fn resume(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Records of 7 bytes: `[op][offset u16][value u32]`, op bit 0 = write,
/// bits 1-2 the access size (1, 2, 4 or 8 bytes); offsets wrap at 0x200
/// (the registers and the start of config space).
pub fn registers(data: &[u8]) {
    let mem = GuestRam::from_ranges(&[(GuestAddress(0), 0x10000)]).expect("RAM");
    let irq = EventFd::new(EFD_NONBLOCK).expect("eventfd");
    let Ok(mut t) = MmioTransport::new(Box::new(Device), mem, irq) else {
        return;
    };
    for op in data.chunks_exact(7) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]])) % 0x200;
        let size = 1 << ((op[0] >> 1) & 3);
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&op[3..7]);
        if op[0] & 1 != 0 {
            t.write(offset, &bytes[..size]);
        } else {
            t.read(offset, &mut bytes[..size]);
        }
    }
}
