//! The in-kernel GICv3 (KVM's vGIC).
//!
//! KVM wants it created and initialised after all vCPUs exist (it sizes the
//! redistributors by vCPU count) and before any of them runs.

use kvm_bindings::{
    kvm_create_device, kvm_device_attr, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
    KVM_DEV_ARM_VGIC_CTRL_INIT, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_DEV_ARM_VGIC_GRP_CTRL,
    KVM_DEV_ARM_VGIC_GRP_NR_IRQS, KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST,
};
use kvm_ioctls::{DeviceFd, VmFd};

use super::layout::{GicLayout, GIC_NR_IRQS};
use super::{Error, Result};

/// Creates the vGIC at `layout` and initialises it.
pub fn create(vm: &VmFd, layout: &GicLayout) -> Result<DeviceFd> {
    let mut device = kvm_create_device {
        type_: kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
        fd: 0,
        flags: 0,
    };
    let gic = vm.create_device(&mut device).map_err(Error::CreateGic)?;
    set_addr(
        &gic,
        KVM_VGIC_V3_ADDR_TYPE_DIST,
        layout.dist_addr,
        "distributor address",
    )?;
    // The legacy single-region attribute: KVM places one redistributor per
    // vCPU from this base, matching the FDT's one redistributor region.
    set_addr(
        &gic,
        KVM_VGIC_V3_ADDR_TYPE_REDIST,
        layout.redist_addr,
        "redistributor address",
    )?;
    let nr_irqs: u32 = GIC_NR_IRQS;
    let attr = attr_ptr(KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr_irqs);
    set_attr(&gic, &attr, "number of IRQs")?;
    let init = kvm_device_attr {
        group: KVM_DEV_ARM_VGIC_GRP_CTRL,
        attr: u64::from(KVM_DEV_ARM_VGIC_CTRL_INIT),
        ..Default::default()
    };
    set_attr(&gic, &init, "init")?;
    Ok(gic)
}

/// An attribute whose value the kernel reads from `value` by address, so
/// `value` must stay alive until the ioctl using the attribute returns
/// (every caller keeps it in a local of the same scope).
fn attr_ptr<T>(group: u32, attr: u32, value: &T) -> kvm_device_attr {
    kvm_device_attr {
        group,
        attr: u64::from(attr),
        addr: value as *const T as u64,
        flags: 0,
    }
}

fn set_addr(gic: &DeviceFd, kind: u32, addr: u64, what: &'static str) -> Result<()> {
    let attr = attr_ptr(KVM_DEV_ARM_VGIC_GRP_ADDR, kind, &addr);
    set_attr(gic, &attr, what)
}

fn set_attr(gic: &DeviceFd, attr: &kvm_device_attr, what: &'static str) -> Result<()> {
    gic.set_device_attr(attr)
        .map_err(|source| Error::GicAttr { what, source })
}
