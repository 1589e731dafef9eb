//! Saving and restoring the aarch64 state (`state.rs`) through KVM: vCPU
//! registers with KVM_GET_REG_LIST and KVM_{GET,SET}_ONE_REG (the timer's
//! counter and compare registers are among them), the run state with
//! KVM_{GET,SET}_MP_STATE, and the GICv3 through the vGIC device's
//! attributes. Every call needs the vCPUs out of KVM_RUN: the vGIC locks
//! them all for a redistributor or CPU interface access.

use kvm_bindings::{
    kvm_device_attr, kvm_mp_state, RegList, KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS,
    KVM_DEV_ARM_VGIC_GRP_DIST_REGS, KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO,
    KVM_DEV_ARM_VGIC_GRP_REDIST_REGS,
};
use kvm_ioctls::{DeviceFd, VcpuFd};

use super::layout::GIC_NR_IRQS;
use super::state::{
    clear_twin, cpu_attr, dist_offsets, icc_regs, level_info_attr, redist_offsets, reg_size,
    spi_level_words, GicCpuState, GicState, Reg, VcpuState, ICC_CTLR_EL1,
};

/// Register ids KVM may report for one vCPU: kvm-bindings' ceiling for a
/// `RegList` (KVM lists about 300 without SVE, which Vireo does not enable).
const REG_LIST_CAPACITY: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("KVM refused to {what}: {source}")]
    Kvm {
        what: String,
        source: kvm_ioctls::Error,
    },
    #[error("the saved state has {saved} vCPUs, the VM {built}")]
    VcpuCount { saved: usize, built: usize },
    #[error("saved vCPU {index} has MPIDR {saved:#x}, the VM's {built:#x}")]
    Mpidr {
        index: usize,
        saved: u64,
        built: u64,
    },
    #[error("the saved GIC has {saved} interrupts, this VMM's {GIC_NR_IRQS}")]
    NrIrqs { saved: u32 },
    #[error("saved register {id:#x} has {len} bytes, its id says {want}")]
    RegSize { id: u64, len: usize, want: usize },
}

type Result<T> = std::result::Result<T, PersistError>;

fn kvm(what: impl Into<String>) -> impl FnOnce(kvm_ioctls::Error) -> PersistError {
    let what = what.into();
    move |source| PersistError::Kvm { what, source }
}

/// A vCPU's registers and run state; `mpidr` is its MPIDR_EL1.
pub fn save_vcpu(fd: &VcpuFd, mpidr: u64) -> Result<VcpuState> {
    let mut list = RegList::new(REG_LIST_CAPACITY).map_err(|_| PersistError::Kvm {
        what: "size the register list".into(),
        source: kvm_ioctls::Error::new(libc::ENOMEM),
    })?;
    fd.get_reg_list(&mut list)
        .map_err(kvm("list the vCPU registers (KVM_GET_REG_LIST)"))?;
    let regs = list
        .as_slice()
        .iter()
        .map(|&id| {
            let mut value = vec![0u8; reg_size(id)];
            fd.get_one_reg(id, &mut value)
                .map_err(kvm(format!("read vCPU register {id:#x}")))?;
            Ok(Reg { id, value })
        })
        .collect::<Result<Vec<_>>>()?;
    let mp_state = fd
        .get_mp_state()
        .map_err(kvm("read the vCPU run state"))?
        .mp_state;
    Ok(VcpuState {
        mpidr,
        mp_state,
        regs,
    })
}

/// Puts a vCPU (initialised, never run) into `state`: every register in
/// the order KVM listed them, then the run state.
pub fn restore_vcpu(fd: &VcpuFd, state: &VcpuState) -> Result<()> {
    for reg in &state.regs {
        let want = reg_size(reg.id);
        if reg.value.len() != want {
            return Err(PersistError::RegSize {
                id: reg.id,
                len: reg.value.len(),
                want,
            });
        }
        fd.set_one_reg(reg.id, &reg.value)
            .map_err(kvm(format!("set vCPU register {:#x}", reg.id)))?;
    }
    let mp_state = kvm_mp_state {
        mp_state: state.mp_state,
    };
    fd.set_mp_state(mp_state)
        .map_err(kvm("set the vCPU run state"))
}

/// Checks the saved vCPUs match the VM's (count, MPIDRs) before anything
/// is written: the redistributors are addressed by MPIDR.
pub fn check_vcpus(saved: &[VcpuState], mpidrs: &[u64]) -> Result<()> {
    if saved.len() != mpidrs.len() {
        return Err(PersistError::VcpuCount {
            saved: saved.len(),
            built: mpidrs.len(),
        });
    }
    for (index, (vcpu, &built)) in saved.iter().zip(mpidrs).enumerate() {
        if vcpu.mpidr != built {
            return Err(PersistError::Mpidr {
                index,
                saved: vcpu.mpidr,
                built,
            });
        }
    }
    Ok(())
}

/// The GICv3's state; `mpidrs` are the vCPUs', in order.
pub fn save_gic(gic: &DeviceFd, mpidrs: &[u64]) -> Result<GicState> {
    let dist = dist_offsets(GIC_NR_IRQS)
        .into_iter()
        .map(|offset| {
            let value = get_u32(gic, KVM_DEV_ARM_VGIC_GRP_DIST_REGS, u64::from(offset))?;
            Ok((offset, value))
        })
        .collect::<Result<Vec<_>>>()?;
    let boot_mpidr = mpidrs.first().copied().unwrap_or_default();
    let spi_levels = spi_level_words(GIC_NR_IRQS)
        .map(|intid| {
            let attr = level_info_attr(boot_mpidr, intid);
            get_u32(gic, KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO, attr)
        })
        .collect::<Result<Vec<_>>>()?;
    let cpus = mpidrs
        .iter()
        .map(|&mpidr| save_gic_cpu(gic, mpidr))
        .collect::<Result<Vec<_>>>()?;
    Ok(GicState {
        nr_irqs: GIC_NR_IRQS,
        dist,
        spi_levels,
        cpus,
    })
}

fn save_gic_cpu(gic: &DeviceFd, mpidr: u64) -> Result<GicCpuState> {
    let redist = redist_offsets()
        .into_iter()
        .map(|offset| {
            let attr = cpu_attr(mpidr, u64::from(offset));
            Ok((
                offset,
                get_u32(gic, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, attr)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let ctlr = get_u64(
        gic,
        KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS,
        cpu_attr(mpidr, ICC_CTLR_EL1),
    )?;
    let icc = icc_regs(ctlr)
        .into_iter()
        .map(|reg| {
            let attr = cpu_attr(mpidr, reg);
            Ok((reg, get_u64(gic, KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS, attr)?))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(GicCpuState { mpidr, redist, icc })
}

/// Puts a freshly initialised vGIC into `state`: distributor, SPI line
/// levels, then each vCPU's redistributor and CPU interface. The vCPUs'
/// own registers (MPIDRs included) must already be restored.
pub fn restore_gic(gic: &DeviceFd, state: &GicState) -> Result<()> {
    if state.nr_irqs != GIC_NR_IRQS {
        return Err(PersistError::NrIrqs {
            saved: state.nr_irqs,
        });
    }
    for &(offset, value) in &state.dist {
        put_reg32(gic, KVM_DEV_ARM_VGIC_GRP_DIST_REGS, 0, offset, value)?;
    }
    let boot_mpidr = state.cpus.first().map_or(0, |c| c.mpidr);
    for (intid, &levels) in spi_level_words(state.nr_irqs).zip(&state.spi_levels) {
        let attr = level_info_attr(boot_mpidr, intid);
        set_u32(gic, KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO, attr, levels)?;
    }
    for cpu in &state.cpus {
        for &(offset, value) in &cpu.redist {
            put_reg32(
                gic,
                KVM_DEV_ARM_VGIC_GRP_REDIST_REGS,
                cpu.mpidr,
                offset,
                value,
            )?;
        }
        for &(reg, value) in &cpu.icc {
            let attr = cpu_attr(cpu.mpidr, reg);
            set_u64(gic, KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS, attr, value)?;
        }
    }
    Ok(())
}

/// Writes one distributor or redistributor register; a set-enable,
/// set-pending or set-active register's clear twin first takes the bits
/// that must end up off.
fn put_reg32(gic: &DeviceFd, group: u32, mpidr: u64, offset: u32, value: u32) -> Result<()> {
    let attr = |offset: u32| {
        if group == KVM_DEV_ARM_VGIC_GRP_DIST_REGS {
            u64::from(offset)
        } else {
            cpu_attr(mpidr, u64::from(offset))
        }
    };
    if let Some(clear) = clear_twin(offset) {
        set_u32(gic, group, attr(clear), !value)?;
    }
    set_u32(gic, group, attr(offset), value)
}

fn get_u32(gic: &DeviceFd, group: u32, attr: u64) -> Result<u32> {
    let mut value = 0u32;
    get_attr(gic, group, attr, &mut value)?;
    Ok(value)
}

fn get_u64(gic: &DeviceFd, group: u32, attr: u64) -> Result<u64> {
    let mut value = 0u64;
    get_attr(gic, group, attr, &mut value)?;
    Ok(value)
}

/// KVM_GET_DEVICE_ATTR into `value`, which must be the width the group's
/// registers have (u32: distributor, redistributor, line levels; u64: CPU
/// interface registers).
fn get_attr<T>(gic: &DeviceFd, group: u32, attr: u64, value: &mut T) -> Result<()> {
    let mut request = kvm_device_attr {
        group,
        attr,
        addr: value as *mut T as u64,
        flags: 0,
    };
    // SAFETY: `addr` points at `value`, a live, writable T of the width KVM
    // writes for this group (see above), borrowed for the whole call.
    unsafe { gic.get_device_attr(&mut request) }
        .map_err(kvm(format!("read vGIC attribute {group}:{attr:#x}")))
}

fn set_u32(gic: &DeviceFd, group: u32, attr: u64, value: u32) -> Result<()> {
    set_attr(gic, group, attr, &value)
}

fn set_u64(gic: &DeviceFd, group: u32, attr: u64, value: u64) -> Result<()> {
    set_attr(gic, group, attr, &value)
}

/// KVM_SET_DEVICE_ATTR from `value` (the kernel reads it during the call).
fn set_attr<T>(gic: &DeviceFd, group: u32, attr: u64, value: &T) -> Result<()> {
    let request = kvm_device_attr {
        group,
        attr,
        addr: value as *const T as u64,
        flags: 0,
    };
    gic.set_device_attr(&request)
        .map_err(kvm(format!("write vGIC attribute {group}:{attr:#x}")))
}
