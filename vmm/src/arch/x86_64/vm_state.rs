//! The VM-wide state KVM keeps on x86_64: the two PICs and the IOAPIC of
//! the in-kernel irqchip, the PIT, and the kvmclock epoch.

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

use super::Error;

#[derive(Serialize, Deserialize)]
pub struct VmState {
    pub pic_master: kvm_irqchip,
    pub pic_slave: kvm_irqchip,
    pub ioapic: kvm_irqchip,
    pub pit: kvm_pit_state2,
    pub clock: kvm_clock_data,
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

fn chip(vm: &VmFd, chip_id: u32) -> Result<kvm_irqchip, Error> {
    let mut chip = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    vm.get_irqchip(&mut chip)
        .map_err(kvm("read the interrupt controllers"))?;
    Ok(chip)
}

/// Reads the VM's state; its vCPUs must be paused.
pub fn save(vm: &VmFd) -> Result<VmState, Error> {
    Ok(VmState {
        pic_master: chip(vm, KVM_IRQCHIP_PIC_MASTER)?,
        pic_slave: chip(vm, KVM_IRQCHIP_PIC_SLAVE)?,
        ioapic: chip(vm, KVM_IRQCHIP_IOAPIC)?,
        pit: vm.get_pit2().map_err(kvm("read the PIT"))?,
        clock: vm.get_clock().map_err(kvm("read the clock"))?,
    })
}

/// Writes `state` into a VM whose vCPUs have not run yet.
pub fn restore(vm: &VmFd, state: &VmState) -> Result<(), Error> {
    for chip in [&state.pic_master, &state.pic_slave, &state.ioapic] {
        vm.set_irqchip(chip)
            .map_err(kvm("set the interrupt controllers"))?;
    }
    vm.set_pit2(&state.pit).map_err(kvm("set the PIT"))?;
    // Only the clock value is ours to set: KVM rejects the flags it
    // reported (TSC_STABLE and the like).
    let clock = kvm_clock_data {
        clock: state.clock.clock,
        ..Default::default()
    };
    vm.set_clock(&clock).map_err(kvm("set the clock"))
}
