use std::sync::{Arc, Mutex};

use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::*;
use crate::devices::virtio::{read_config_bytes, ActivateError, Interrupt, INT_VRING};
use crate::memory::GuestRam;

/// What the fake device saw, shared with the test.
#[derive(Default)]
struct Seen {
    activated: Option<(u64, usize)>,
    resets: usize,
}

struct Fake(Arc<Mutex<Seen>>);

const FAKE_FEATURES: u64 = VIRTIO_F_VERSION_1 | 1 << 9;

impl VirtioDevice for Fake {
    fn device_type(&self) -> u32 {
        42
    }
    fn features(&self) -> u64 {
        FAKE_FEATURES
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16]
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&[1, 2, 3, 4, 5, 6, 7, 8], offset, data);
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(
        &mut self,
        features: u64,
        queues: Vec<ActiveQueue>,
        interrupt: Arc<Interrupt>,
        _mem: GuestRam,
    ) -> Result<(), ActivateError> {
        self.0.lock().unwrap().activated = Some((features, queues.len()));
        interrupt.trigger(INT_VRING);
        Ok(())
    }
    fn reset(&mut self) {
        self.0.lock().unwrap().resets += 1;
    }
    fn pause(&mut self) {}
    fn resume(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn transport() -> (MmioTransport, Arc<Mutex<Seen>>, EventFd) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mem = GuestRam::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let t = MmioTransport::new(Box::new(Fake(seen.clone())), mem, irq.try_clone().unwrap());
    (t.unwrap(), seen, irq)
}

fn rd(t: &mut MmioTransport, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

fn wr(t: &mut MmioTransport, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

/// The driver side of 3.1.1 up to FEATURES_OK, offering `features`.
fn negotiate(t: &mut MmioTransport, features: u64) {
    wr(t, reg::STATUS, status::ACKNOWLEDGE);
    wr(t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    for sel in 0..2 {
        wr(t, reg::DRIVER_FEATURES_SEL, sel);
        wr(t, reg::DRIVER_FEATURES, feature_bank(features, sel));
    }
    wr(
        t,
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
}

fn setup_queue(t: &mut MmioTransport) {
    wr(t, reg::QUEUE_SEL, 0);
    wr(t, reg::QUEUE_NUM, 16);
    wr(t, reg::QUEUE_DESC_LOW, 0x1000);
    wr(t, reg::QUEUE_DRIVER_LOW, 0x2000);
    wr(t, reg::QUEUE_DEVICE_LOW, 0x3000);
    wr(t, reg::QUEUE_READY, 1);
}

const ALL_OK: u32 = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;

#[test]
fn identifies_as_modern_virtio_mmio() {
    let (mut t, _, _) = transport();
    assert_eq!(rd(&mut t, reg::MAGIC), 0x7472_6976);
    assert_eq!(rd(&mut t, reg::VERSION), 2);
    assert_eq!(rd(&mut t, reg::DEVICE_ID), 42);
    wr(&mut t, reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(rd(&mut t, reg::DEVICE_FEATURES), 1);
    wr(&mut t, reg::DEVICE_FEATURES_SEL, 0);
    assert_eq!(rd(&mut t, reg::DEVICE_FEATURES), 1 << 9);
    assert_eq!(rd(&mut t, reg::QUEUE_NUM_MAX), 16);
    assert_eq!(rd(&mut t, reg::SHM_LEN_LOW), u32::MAX);
    let mut b = [0u8; 2];
    t.read(CONFIG_OFFSET + 2, &mut b);
    assert_eq!(b, [3, 4]);
}

#[test]
fn full_negotiation_activates_the_device() {
    let (mut t, seen, irq) = transport();
    negotiate(&mut t, VIRTIO_F_VERSION_1);
    assert_ne!(rd(&mut t, reg::STATUS) & status::FEATURES_OK, 0);
    setup_queue(&mut t);
    assert_eq!(rd(&mut t, reg::QUEUE_READY), 1);
    wr(&mut t, reg::STATUS, ALL_OK);
    assert_eq!(rd(&mut t, reg::STATUS), ALL_OK);
    assert_eq!(
        seen.lock().unwrap().activated,
        Some((VIRTIO_F_VERSION_1, 1))
    );
    assert_eq!(irq.read().unwrap(), 1);
    assert_eq!(rd(&mut t, reg::INTERRUPT_STATUS), INT_VRING);
    wr(&mut t, reg::INTERRUPT_ACK, INT_VRING);
    assert_eq!(rd(&mut t, reg::INTERRUPT_STATUS), 0);
    // Queue layout is frozen once the driver is running.
    wr(&mut t, reg::QUEUE_NUM, 4);
    assert_eq!(rd(&mut t, reg::QUEUE_NUM), 16);
}

#[test]
fn features_must_be_a_subset_and_include_version_1() {
    for bad in [1 << 9, VIRTIO_F_VERSION_1 | 1 << 3] {
        let (mut t, _, _) = transport();
        negotiate(&mut t, bad);
        assert_eq!(rd(&mut t, reg::STATUS) & status::FEATURES_OK, 0, "{bad:#x}");
    }
}

#[test]
fn out_of_order_status_needs_reset() {
    let (mut t, seen, _) = transport();
    wr(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER_OK);
    assert_ne!(rd(&mut t, reg::STATUS) & status::NEEDS_RESET, 0);
    assert!(seen.lock().unwrap().activated.is_none());
    wr(&mut t, reg::STATUS, 0);
    assert_eq!(rd(&mut t, reg::STATUS), 0);
    assert_eq!(seen.lock().unwrap().resets, 1);
}

#[test]
fn driver_ok_with_a_queue_outside_memory_needs_reset() {
    let (mut t, seen, _) = transport();
    negotiate(&mut t, VIRTIO_F_VERSION_1);
    setup_queue(&mut t);
    wr(&mut t, reg::QUEUE_DEVICE_HIGH, 0x10);
    wr(&mut t, reg::STATUS, ALL_OK);
    assert_ne!(rd(&mut t, reg::STATUS) & status::NEEDS_RESET, 0);
    assert!(seen.lock().unwrap().activated.is_none());
}

#[test]
fn notify_signals_the_queue_eventfd_only_when_running() {
    let (mut t, _, _) = transport();
    wr(&mut t, reg::QUEUE_NOTIFY, 0);
    negotiate(&mut t, VIRTIO_F_VERSION_1);
    setup_queue(&mut t);
    wr(&mut t, reg::STATUS, ALL_OK);
    wr(&mut t, reg::QUEUE_NOTIFY, 0);
    wr(&mut t, reg::QUEUE_NOTIFY, 7);
    assert_eq!(t.notify[0].read().unwrap(), 1);
}

#[test]
fn odd_widths_are_harmless() {
    let (mut t, _, _) = transport();
    let mut wide = [0xffu8; 8];
    t.read(reg::MAGIC, &mut wide);
    assert_eq!(wide, [0; 8]);
    t.write(reg::STATUS, &[1]);
    assert_eq!(rd(&mut t, reg::STATUS), 0);
}
