//! vCPU register ids (KVM_{GET,SET}_ONE_REG) and the boot register state.

use std::mem::offset_of;

use kvm_bindings::{
    kvm_regs, PSR_MODE_EL1h, KVM_REG_ARM64, KVM_REG_ARM64_SYSREG, KVM_REG_ARM64_SYSREG_CRM_SHIFT,
    KVM_REG_ARM64_SYSREG_CRN_SHIFT, KVM_REG_ARM64_SYSREG_OP0_SHIFT, KVM_REG_ARM64_SYSREG_OP1_SHIFT,
    KVM_REG_ARM64_SYSREG_OP2_SHIFT, KVM_REG_ARM_CORE, KVM_REG_SIZE_U64, PSR_A_BIT, PSR_D_BIT,
    PSR_F_BIT, PSR_I_BIT,
};
use kvm_ioctls::VcpuFd;

use super::{Error, Result};

/// Id of the 64-bit core register at byte `offset` of `struct kvm_regs`.
/// KVM numbers core registers by their offset in 32-bit words.
pub const fn core_reg_id(offset: usize) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE as u64 | (offset / 4) as u64
}

/// Id of general purpose register `Xn` (n < 31).
pub const fn xreg_id(n: usize) -> u64 {
    core_reg_id(offset_of!(kvm_regs, regs.regs) + n * 8)
}

/// Id of the system register with encoding `op0, op1, CRn, CRm, op2`, as
/// the MRS/MSR instructions name it.
pub const fn sys_reg_id(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
    KVM_REG_ARM64
        | KVM_REG_SIZE_U64
        | KVM_REG_ARM64_SYSREG as u64
        | (op0 << KVM_REG_ARM64_SYSREG_OP0_SHIFT)
        | (op1 << KVM_REG_ARM64_SYSREG_OP1_SHIFT)
        | (crn << KVM_REG_ARM64_SYSREG_CRN_SHIFT)
        | (crm << KVM_REG_ARM64_SYSREG_CRM_SHIFT)
        | (op2 << KVM_REG_ARM64_SYSREG_OP2_SHIFT)
}

pub const X0: u64 = xreg_id(0);
pub const PC: u64 = core_reg_id(offset_of!(kvm_regs, regs.pc));
pub const PSTATE: u64 = core_reg_id(offset_of!(kvm_regs, regs.pstate));
pub const MPIDR_EL1: u64 = sys_reg_id(3, 0, 0, 0, 5);

/// The boot protocol's entry state: EL1 using SP_EL1, with debug, SError,
/// IRQ and FIQ masked until the kernel has set up its vectors.
pub const BOOT_PSTATE: u64 = (PSR_MODE_EL1h | PSR_D_BIT | PSR_A_BIT | PSR_I_BIT | PSR_F_BIT) as u64;

/// Writes a 64-bit register.
pub fn set_u64(vcpu: &VcpuFd, id: u64, value: u64) -> Result<()> {
    // The kernel copies the register from host memory, in host byte order.
    vcpu.set_one_reg(id, &value.to_ne_bytes())
        .map(drop)
        .map_err(|source| Error::SetReg { id, source })
}

/// Reads a 64-bit register.
pub fn get_u64(vcpu: &VcpuFd, id: u64) -> Result<u64> {
    let mut bytes = [0u8; 8];
    vcpu.get_one_reg(id, &mut bytes)
        .map_err(|source| Error::GetReg { id, source })?;
    Ok(u64::from_ne_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values as the KVM API documentation spells them out:
    // 0x6030 0000 0010 <index into kvm_regs as u32> for core registers,
    // 0x6030 0000 0013 <op0:2 op1:3 CRn:4 CRm:4 op2:3> for system registers.
    #[test]
    fn core_register_ids() {
        assert_eq!(X0, 0x6030_0000_0010_0000);
        assert_eq!(xreg_id(30), 0x6030_0000_0010_003c);
        assert_eq!(PC, 0x6030_0000_0010_0040);
        assert_eq!(PSTATE, 0x6030_0000_0010_0042);
    }

    #[test]
    fn system_register_ids() {
        assert_eq!(MPIDR_EL1, 0x6030_0000_0013_c005);
        // CNTVCT_EL0: op0 3, op1 3, CRn 14, CRm 0, op2 2.
        assert_eq!(sys_reg_id(3, 3, 14, 0, 2), 0x6030_0000_0013_df02);
    }

    #[test]
    fn boot_pstate_is_el1h_all_masked() {
        assert_eq!(BOOT_PSTATE, 0x3c5);
    }
}
