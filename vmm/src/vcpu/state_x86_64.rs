//! An x86_64 vCPU's whole state, for snapshots and migration: what KVM
//! holds for it (registers, FPU/XSAVE, control registers, local APIC, MSRs
//! including the TSC and kvmclock's, pending events, run state, debug
//! registers) and the CPUID it was given. Saved while the vCPU is parked;
//! restored before its thread first runs. The order of the KVM calls is
//! the one Firecracker and QEMU use (the LAPIC before the MSRs that depend
//! on it, events last).

use kvm_bindings::{
    kvm_cpuid_entry2, kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs,
    kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, CpuId, Msrs,
};
use kvm_ioctls::{Kvm, VcpuFd};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("KVM refused to {what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("KVM restored {set} of the {wanted} saved MSRs")]
    Msrs { set: usize, wanted: usize },
    #[error("the saved state has {0} CPUID entries, more than KVM takes")]
    Cpuid(usize),
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> StateError {
    move |source| StateError::Kvm { what, source }
}

#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    pub cpuid: Vec<kvm_cpuid_entry2>,
    pub mp_state: kvm_mp_state,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub xsave: kvm_xsave,
    pub xcrs: kvm_xcrs,
    pub debugregs: kvm_debugregs,
    pub lapic: kvm_lapic_state,
    pub msrs: Vec<kvm_msr_entry>,
    pub events: kvm_vcpu_events,
    /// The TSC frequency the guest calibrated against, in kHz.
    pub tsc_khz: Option<u32>,
}

/// MSRs KVM reports it can save, fetched once per VM.
pub fn saved_msr_indices(kvm_fd: &Kvm) -> Result<Vec<u32>, StateError> {
    let list = kvm_fd
        .get_msr_index_list()
        .map_err(kvm("list the MSRs it can save"))?;
    Ok(list.as_slice().to_vec())
}

/// Reads the vCPU's state; it must not be running. `cpuid` is what the
/// vCPU was given (KVM_GET_CPUID2 reports more than that on some hosts).
pub fn save(
    fd: &VcpuFd,
    msr_indices: &[u32],
    cpuid: Vec<kvm_cpuid_entry2>,
) -> Result<VcpuState, StateError> {
    let mp_state = fd.get_mp_state().map_err(kvm("read the run state"))?;
    let regs = fd.get_regs().map_err(kvm("read the registers"))?;
    let sregs = fd.get_sregs().map_err(kvm("read the special registers"))?;
    let xsave = fd.get_xsave().map_err(kvm("read the XSAVE area"))?;
    let xcrs = fd.get_xcrs().map_err(kvm("read the XCRs"))?;
    let debugregs = fd
        .get_debug_regs()
        .map_err(kvm("read the debug registers"))?;
    let lapic = fd.get_lapic().map_err(kvm("read the local APIC"))?;
    let msrs = save_msrs(fd, msr_indices)?;
    let events = fd.get_vcpu_events().map_err(kvm("read pending events"))?;
    Ok(VcpuState {
        cpuid,
        mp_state,
        regs,
        sregs,
        xsave,
        xcrs,
        debugregs,
        lapic,
        msrs,
        events,
        tsc_khz: fd.get_tsc_khz().ok(),
    })
}

/// Every listed MSR KVM will read; one it refuses (listed by the host but
/// not meaningful for this vCPU) is left out rather than failing the save.
fn save_msrs(fd: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, StateError> {
    let mut saved = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(64)];
        let entries: Vec<kvm_msr_entry> = chunk
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).expect("at most 64 entries");
        let read = fd.get_msrs(&mut msrs).map_err(kvm("read the MSRs"))?;
        saved.extend_from_slice(&msrs.as_slice()[..read]);
        // KVM stops at the first MSR it refuses: skip that one, go on.
        rest = &rest[(read + 1).min(rest.len())..];
    }
    Ok(saved)
}

/// Writes `state` into a vCPU that has not run yet; `has_cpuid`: the
/// vCPU was already given the saved CPUID (`VmCore::preset_cpuid`).
pub fn restore(fd: &VcpuFd, state: &VcpuState, has_cpuid: bool) -> Result<(), StateError> {
    if let Some(khz) = state.tsc_khz {
        // A host without TSC scaling keeps its own rate; the guest's
        // kvmclock copes (the clock state says how far it went).
        let _ = fd.set_tsc_khz(khz);
    }
    if !has_cpuid {
        let cpuid =
            CpuId::from_entries(&state.cpuid).map_err(|_| StateError::Cpuid(state.cpuid.len()))?;
        fd.set_cpuid2(&cpuid).map_err(kvm("set the CPUID"))?;
    }
    fd.set_mp_state(state.mp_state)
        .map_err(kvm("set the run state"))?;
    fd.set_regs(&state.regs).map_err(kvm("set the registers"))?;
    fd.set_sregs(&state.sregs)
        .map_err(kvm("set the special registers"))?;
    // SAFETY: as in `save`: a plain 4 KiB XSAVE area.
    unsafe { fd.set_xsave(&state.xsave) }.map_err(kvm("set the XSAVE area"))?;
    fd.set_xcrs(&state.xcrs).map_err(kvm("set the XCRs"))?;
    fd.set_debug_regs(&state.debugregs)
        .map_err(kvm("set the debug registers"))?;
    fd.set_lapic(&state.lapic)
        .map_err(kvm("set the local APIC"))?;
    restore_msrs(fd, &state.msrs)?;
    fd.set_vcpu_events(&state.events)
        .map_err(kvm("set pending events"))?;
    Ok(())
}

fn restore_msrs(fd: &VcpuFd, entries: &[kvm_msr_entry]) -> Result<(), StateError> {
    for chunk in entries.chunks(64) {
        let msrs = Msrs::from_entries(chunk).expect("at most 64 entries");
        let set = fd.set_msrs(&msrs).map_err(kvm("set the MSRs"))?;
        if set != chunk.len() {
            return Err(StateError::Msrs {
                set,
                wanted: entries.len(),
            });
        }
    }
    Ok(())
}

/// Leaves and registers that list CPU features; the others (topology, APIC
/// ids, cache descriptions) may differ between hosts without harm.
const FEATURE_WORDS: [(u32, u32, &str); 9] = [
    (0x1, 0, "ecx"),
    (0x1, 0, "edx"),
    (0x7, 0, "ebx"),
    (0x7, 0, "ecx"),
    (0x7, 0, "edx"),
    (0xd, 1, "eax"),
    (0x8000_0001, 0, "ecx"),
    (0x8000_0001, 0, "edx"),
    (0x7, 1, "eax"),
];

/// Bits the hypervisor itself sets whatever the host says (and that KVM
/// emulates), so a host "lacking" them can still run the guest.
const EMULATED: [(u32, u32, &str, u32); 2] = [
    // leaf 1 ECX: hypervisor (31), x2APIC (21), TSC-deadline (24).
    (0x1, 0, "ecx", 1 << 31 | 1 << 21 | 1 << 24),
    // leaf 1 EDX: HTT (28), set from the vCPU count.
    (0x1, 0, "edx", 1 << 28),
];

/// Whether this host can run a guest that was given `saved` CPUID:
/// every feature bit the guest saw must be one this host's KVM offers.
/// Returns the features missing, named by leaf and register.
pub fn cpuid_missing(saved: &[kvm_cpuid_entry2], host: &[kvm_cpuid_entry2]) -> Vec<String> {
    let word = |entries: &[kvm_cpuid_entry2], leaf: u32, sub: u32, reg: &str| {
        let e = entries
            .iter()
            .find(|e| e.function == leaf && (e.index == sub || e.flags & 1 == 0))?;
        Some(match reg {
            "eax" => e.eax,
            "ebx" => e.ebx,
            "ecx" => e.ecx,
            _ => e.edx,
        })
    };
    let mut missing = Vec::new();
    for (leaf, sub, reg) in FEATURE_WORDS {
        let Some(guest) = word(saved, leaf, sub, reg) else {
            continue;
        };
        let emulated = EMULATED
            .iter()
            .filter(|e| (e.0, e.1, e.2) == (leaf, sub, reg))
            .fold(0, |m, e| m | e.3);
        let have = word(host, leaf, sub, reg).unwrap_or(0) | emulated;
        let lacking = guest & !have;
        if lacking != 0 {
            missing.push(format!("leaf {leaf:#x}.{sub} {reg} bits {lacking:#010x}"));
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ecx,
            edx,
            ..Default::default()
        }
    }

    #[test]
    fn a_guest_feature_the_host_lacks_is_named() {
        let host = [entry(1, 0, 0x0000_00ff, 0xffff_ffff)];
        let fine = [entry(1, 0, 0x8000_000f, 0x1000_0001)];
        assert!(cpuid_missing(&fine, &host).is_empty());
        let avx = [entry(1, 0, 1 << 28, 0)];
        assert_eq!(
            cpuid_missing(&avx, &host),
            ["leaf 0x1.0 ecx bits 0x10000000"]
        );
    }

    #[test]
    fn state_survives_a_serde_round_trip() {
        let mut state = VcpuState {
            cpuid: vec![entry(1, 0, 5, 6)],
            mp_state: Default::default(),
            regs: kvm_regs {
                rip: 0x1234,
                ..Default::default()
            },
            sregs: Default::default(),
            xsave: Default::default(),
            xcrs: Default::default(),
            debugregs: Default::default(),
            lapic: Default::default(),
            msrs: vec![kvm_msr_entry {
                index: 0x10,
                data: 99,
                ..Default::default()
            }],
            events: Default::default(),
            tsc_khz: Some(2_000_000),
        };
        state.xsave.region[7] = 0xdead;
        state.lapic.regs[0x20] = 3;
        let json = serde_json::to_string(&state).unwrap();
        let back: VcpuState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.regs.rip, 0x1234);
        assert_eq!(back.xsave.region[7], 0xdead);
        assert_eq!(back.lapic.regs[0x20], 3);
        assert_eq!((back.msrs[0].index, back.msrs[0].data), (0x10, 99));
        assert_eq!(back.cpuid[0].edx, 6);
        assert_eq!(back.tsc_khz, Some(2_000_000));
    }
}
