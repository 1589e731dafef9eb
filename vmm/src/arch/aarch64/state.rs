//! The saved state of an aarch64 VM: each vCPU's registers and run state,
//! and the in-kernel GICv3's — distributor, redistributors, CPU interfaces.
//!
//! Plain data and the register maps only, so it is built and unit-tested on
//! every host; `persist.rs` reads and writes it through KVM on aarch64.
//! Which registers, and the order they go back in, follow the kernel's
//! vGIC documentation (Documentation/virt/kvm/devices/arm-vgic-v3.rst) and
//! what Firecracker and Cloud Hypervisor learnt: vCPU registers, MP state,
//! then the distributor, the redistributors and the ICC_* registers.

use serde::{Deserialize, Serialize};

/// KVM_MP_STATE_RUNNABLE: the vCPU runs (or may).
pub const MP_STATE_RUNNABLE: u32 = 0;
/// KVM_MP_STATE_STOPPED: powered off, waiting for a PSCI CPU_ON.
pub const MP_STATE_STOPPED: u32 = 5;

// The uapi's register id fields (include/uapi/linux/kvm.h), spelt out here
// because kvm-bindings defines them only when building for arm64.
const KVM_REG_SIZE_SHIFT: u32 = 52;
const KVM_REG_SIZE_MASK: u64 = 0x00f0_0000_0000_0000;
/// vGIC attribute: the vCPU's affinity in bits 63..32.
const VGIC_MPIDR_SHIFT: u32 = 32;
/// KVM_DEV_ARM_VGIC_LINE_LEVEL_INFO, the kind of LEVEL_INFO attribute
/// (bits 31..10; 0 is the only kind).
const VGIC_LINE_LEVEL_INFO: u64 = 0;
const VGIC_LINE_LEVEL_INFO_SHIFT: u32 = 10;

/// One vCPU register as KVM_GET_ONE_REG gives it: its id (which also says
/// its size) and its bytes in host order, kept as hex in the state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reg {
    pub id: u64,
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
}

/// One vCPU: every register KVM_GET_REG_LIST names (core, FP/SIMD, system,
/// timer, firmware pseudo-registers), in KVM's order, and its run state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuState {
    /// MPIDR_EL1, also saved among `regs`; kept apart to check the vCPU
    /// order and to address its redistributor.
    pub mpidr: u64,
    /// [`MP_STATE_RUNNABLE`] or [`MP_STATE_STOPPED`].
    pub mp_state: u32,
    pub regs: Vec<Reg>,
}

/// The GICv3: 32-bit registers as (offset, value) pairs in restore order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GicState {
    /// Interrupts the distributor was sized for (checked on restore).
    pub nr_irqs: u32,
    pub dist: Vec<(u32, u32)>,
    /// Line levels of the SPIs, 32 per word from INTID 32 (level-triggered
    /// inputs KVM holds apart from the pending bits).
    pub spi_levels: Vec<u32>,
    /// One per vCPU, in vCPU order.
    pub cpus: Vec<GicCpuState>,
}

/// One vCPU's redistributor and CPU interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GicCpuState {
    pub mpidr: u64,
    /// Redistributor registers, offsets from its RD_base (SGI_base at +64 KiB).
    pub redist: Vec<(u32, u32)>,
    /// ICC_* system registers: (KVM_DEV_ARM_VGIC_SYSREG encoding, value).
    pub icc: Vec<(u64, u64)>,
}

/// Bytes of the register `id` (KVM_REG_SIZE_*: 2^n bytes).
pub fn reg_size(id: u64) -> usize {
    1 << ((id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT)
}

// --- distributor (GICD_*) offsets ---
const GICD_CTLR: u32 = 0x0000;
const GICD_IGROUPR: u32 = 0x0080;
const GICD_ISENABLER: u32 = 0x0100;
const GICD_ICENABLER: u32 = 0x0180;
const GICD_ISPENDR: u32 = 0x0200;
const GICD_ISACTIVER: u32 = 0x0300;
const GICD_IPRIORITYR: u32 = 0x0400;
const GICD_ICFGR: u32 = 0x0C00;
const GICD_IROUTER: u32 = 0x6000;

/// The SGI_base frame of a redistributor, 64 KiB after RD_base.
const GICR_SGI_BASE: u32 = 0x1_0000;
const GICR_CTLR: u32 = 0x0000;

/// Interrupts handled per redistributor (SGIs and PPIs); the distributor's
/// registers for them are reserved under affinity routing.
const PRIVATE_IRQS: u32 = 32;

/// Offsets of the `bits`-per-interrupt register array at `base` that cover
/// interrupts `first..last`, one 32-bit word each.
fn per_irq(base: u32, bits: u32, first: u32, last: u32) -> impl Iterator<Item = u32> {
    let per_word = 32 / bits;
    (first / per_word..last.div_ceil(per_word)).map(move |word| base + word * 4)
}

/// Distributor registers saved for `nr_irqs` interrupts, in restore order:
/// the control register, then the SPIs' group, configuration, priority,
/// routing, and last their enable, pending and active bits.
pub fn dist_offsets(nr_irqs: u32) -> Vec<u32> {
    let spis = |base, bits| per_irq(base, bits, PRIVATE_IRQS, nr_irqs);
    let mut offsets = vec![GICD_CTLR];
    offsets.extend(spis(GICD_IGROUPR, 1));
    offsets.extend(spis(GICD_ICFGR, 2));
    offsets.extend(spis(GICD_IPRIORITYR, 8));
    // GICD_IROUTER<n> is 64 bits; the vGIC's user accesses are 32 bits wide.
    offsets.extend((PRIVATE_IRQS..nr_irqs).flat_map(|irq| {
        let at = GICD_IROUTER + irq * 8;
        [at, at + 4]
    }));
    offsets.extend(spis(GICD_ISENABLER, 1));
    offsets.extend(spis(GICD_ISPENDR, 1));
    offsets.extend(spis(GICD_ISACTIVER, 1));
    offsets
}

/// Redistributor registers saved per vCPU, in restore order: GICR_CTLR,
/// then the SGI frame's registers for the 32 private interrupts laid out as
/// the distributor's (IGROUPR0, ICFGR0/1, IPRIORITYR0-7, then ISENABLER0,
/// ISPENDR0, ISACTIVER0). No LPI registers: the VM has no ITS.
pub fn redist_offsets() -> Vec<u32> {
    let private = |base, bits| per_irq(GICR_SGI_BASE + base, bits, 0, PRIVATE_IRQS);
    let mut offsets = vec![GICR_CTLR];
    offsets.extend(private(GICD_IGROUPR, 1));
    offsets.extend(private(GICD_ICFGR, 2));
    offsets.extend(private(GICD_IPRIORITYR, 8));
    offsets.extend(private(GICD_ISENABLER, 1));
    offsets.extend(private(GICD_ISPENDR, 1));
    offsets.extend(private(GICD_ISACTIVER, 1));
    offsets
}

/// The "clear" twin of a set-enable, set-pending or set-active register
/// (in the distributor or a redistributor's SGI frame): a restore writes
/// the bits that must be off there first, since a set register only sets.
pub fn clear_twin(offset: u32) -> Option<u32> {
    let frame = offset & !0xffff;
    let within = offset & 0xffff;
    let set_ranges = [GICD_ISENABLER, GICD_ISPENDR, GICD_ISACTIVER];
    set_ranges
        .iter()
        .any(|&base| (base..base + 0x80).contains(&within))
        .then_some(frame + within + (GICD_ICENABLER - GICD_ISENABLER))
}

/// KVM_DEV_ARM_VGIC_SYSREG(op0, op1, CRn, CRm, op2): a CPU interface
/// register's encoding in a vGIC attribute (the low 16 bits of a
/// KVM_REG_ARM64_SYSREG id).
pub const fn icc_sysreg(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
    (op0 << 14) | (op1 << 11) | (crn << 7) | (crm << 3) | op2
}

pub const ICC_SRE_EL1: u64 = icc_sysreg(3, 0, 12, 12, 5);
pub const ICC_CTLR_EL1: u64 = icc_sysreg(3, 0, 12, 12, 4);
const ICC_IGRPEN0_EL1: u64 = icc_sysreg(3, 0, 12, 12, 6);
const ICC_IGRPEN1_EL1: u64 = icc_sysreg(3, 0, 12, 12, 7);
const ICC_PMR_EL1: u64 = icc_sysreg(3, 0, 4, 6, 0);
const ICC_BPR0_EL1: u64 = icc_sysreg(3, 0, 12, 8, 3);
const ICC_BPR1_EL1: u64 = icc_sysreg(3, 0, 12, 12, 3);

const fn icc_ap0r(n: u64) -> u64 {
    icc_sysreg(3, 0, 12, 8, 4 + n)
}

const fn icc_ap1r(n: u64) -> u64 {
    icc_sysreg(3, 0, 12, 9, n)
}

/// The CPU interface registers, in restore order (SRE first: it decides
/// how the others are seen). The active-priority registers that exist
/// depend on the priority bits ICC_CTLR_EL1.PRIbits reports: one of each
/// for 5 bits, two for 6, four for 7.
pub fn icc_regs(icc_ctlr: u64) -> Vec<u64> {
    let pri_bits = ((icc_ctlr >> 8) & 0x7) + 1;
    let aprs = match pri_bits {
        7.. => 4,
        6 => 2,
        _ => 1,
    };
    let mut regs = vec![
        ICC_SRE_EL1,
        ICC_CTLR_EL1,
        ICC_IGRPEN0_EL1,
        ICC_IGRPEN1_EL1,
        ICC_PMR_EL1,
        ICC_BPR0_EL1,
        ICC_BPR1_EL1,
    ];
    regs.extend((0..aprs).map(icc_ap0r));
    regs.extend((0..aprs).map(icc_ap1r));
    regs
}

/// A vCPU's affinity as vGIC attributes carry it: Aff3.Aff2.Aff1.Aff0 in
/// bits 63..32 (MPIDR_EL1 keeps Aff3 apart, in bits 39..32).
pub const fn vgic_mpidr(mpidr: u64) -> u64 {
    let packed = (mpidr & 0xff_ffff) | ((mpidr >> 8) & 0xff00_0000);
    packed << VGIC_MPIDR_SHIFT
}

/// The attribute of a redistributor register or ICC_* register of `mpidr`.
pub const fn cpu_attr(mpidr: u64, offset_or_sysreg: u64) -> u64 {
    vgic_mpidr(mpidr) | offset_or_sysreg
}

/// The LEVEL_INFO attribute for the 32 interrupts from `intid`.
pub const fn level_info_attr(mpidr: u64, intid: u32) -> u64 {
    vgic_mpidr(mpidr) | (VGIC_LINE_LEVEL_INFO << VGIC_LINE_LEVEL_INFO_SHIFT) | intid as u64
}

/// First INTIDs of the SPIs' 32-interrupt words, for LEVEL_INFO.
pub fn spi_level_words(nr_irqs: u32) -> impl Iterator<Item = u32> {
    (PRIVATE_IRQS..nr_irqs).step_by(32)
}

/// Register values as lowercase hex of their bytes (a u128 FP register or
/// an odd-sized one reads back exactly, and the file stays readable).
/// Hex text in `state.json`; plain bytes in the binary encoding of the
/// migration's State frame (snapshot/binary.rs).
mod hex_bytes {
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return bytes.serialize(s);
        }
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if !d.is_human_readable() {
            return Vec::<u8>::deserialize(d);
        }
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(D::Error::custom("odd number of hex digits"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| D::Error::custom(format!("bad hex at {i}")))
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
