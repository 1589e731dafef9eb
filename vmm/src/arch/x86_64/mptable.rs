//! Intel MultiProcessor Specification 1.4 tables.
//!
//! Without ACPI, this is how a guest learns how many CPUs it has and how the
//! ISA interrupts reach the IOAPIC. The tables are built as bytes (all fields
//! little-endian, as the spec lays them out) and placed in the EBDA, where
//! Linux and the probe guest search for the floating pointer.

use vm_memory::{Bytes, GuestAddress};

use super::layout::{IOAPIC_ADDR, IOAPIC_PINS, LAPIC_ADDR};
use crate::memory::GuestRam;

const SPEC_REV_1_4: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const FLOATING_POINTER_LEN: usize = 16;
const HEADER_LEN: usize = 44;

// Entry types and flags from the spec.
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const CPU_ENABLED: u8 = 1;
const CPU_BOOT_PROCESSOR: u8 = 2;
const IOAPIC_ENABLED: u8 = 1;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
/// Polarity and trigger "conform to the bus" (ISA: active high, edge).
const INT_FLAGS_CONFORM: u16 = 0;
const ALL_LOCAL_APICS: u8 = 0xff;
/// CPUID family 6 signature and the FPU/APIC feature bits the spec expects.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201;

#[derive(Debug, thiserror::Error)]
pub enum MpTableError {
    #[error("{0} vCPUs do not fit in an MP table (at most 254)")]
    TooManyCpus(u8),
    #[error("the MP table does not fit in guest memory at {0:#x}")]
    Write(u64),
}

/// Little-endian byte writer; the MP table is a flat run of packed structs.
#[derive(Default)]
struct Table(Vec<u8>);

impl Table {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
}

/// The byte that makes the sum of `bytes` (with it) zero.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

fn entries(cpus: u8) -> (Table, u16) {
    let ioapic_id = cpus;
    let mut t = Table::default();
    let mut count = 0u16;
    for cpu in 0..cpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BOOT_PROCESSOR } else { 0 };
        t.u8(ENTRY_PROCESSOR).u8(cpu).u8(APIC_VERSION).u8(flags);
        t.u32(CPU_SIGNATURE).u32(CPU_FEATURES).bytes(&[0; 8]);
        count += 1;
    }
    t.u8(ENTRY_BUS).u8(0).bytes(b"ISA   ");
    t.u8(ENTRY_IOAPIC)
        .u8(ioapic_id)
        .u8(IOAPIC_VERSION)
        .u8(IOAPIC_ENABLED);
    t.u32(IOAPIC_ADDR);
    count += 2;
    // Every pin wired straight through: KVM routes GSI n to IOAPIC pin n.
    for pin in 0..IOAPIC_PINS {
        t.u8(ENTRY_IO_INTERRUPT)
            .u8(INT_TYPE_INT)
            .u16(INT_FLAGS_CONFORM);
        t.u8(0).u8(pin).u8(ioapic_id).u8(pin);
        count += 1;
    }
    for (lint, kind) in [(0u8, INT_TYPE_EXTINT), (1, INT_TYPE_NMI)] {
        t.u8(ENTRY_LOCAL_INTERRUPT).u8(kind).u16(INT_FLAGS_CONFORM);
        t.u8(0).u8(0).u8(ALL_LOCAL_APICS).u8(lint);
        count += 1;
    }
    (t, count)
}

/// Builds the floating pointer and configuration table for `cpus` CPUs,
/// laid out to sit at guest address `base`.
pub fn build(base: u64, cpus: u8) -> Result<Vec<u8>, MpTableError> {
    if cpus == 0 || cpus > 254 {
        return Err(MpTableError::TooManyCpus(cpus));
    }
    let config_addr = base + FLOATING_POINTER_LEN as u64;
    let (body, count) = entries(cpus);
    let table_len = (HEADER_LEN + body.0.len()) as u16;

    let mut header = Table::default();
    header.bytes(b"PCMP").u16(table_len).u8(SPEC_REV_1_4).u8(0);
    header.bytes(b"VIREO   ").bytes(b"VIREO-VMM   ");
    header
        .u32(0)
        .u16(0)
        .u16(count)
        .u32(LAPIC_ADDR)
        .u16(0)
        .u8(0)
        .u8(0);
    header.bytes(&body.0);
    header.0[7] = checksum(&header.0);

    let mut fp = Table::default();
    fp.bytes(b"_MP_")
        .u32(config_addr as u32)
        .u8(1)
        .u8(SPEC_REV_1_4);
    fp.u8(0).bytes(&[0; 5]);
    fp.0[10] = checksum(&fp.0);

    fp.bytes(&header.0);
    Ok(fp.0)
}

/// Writes the MP table for `cpus` CPUs at `base` in guest memory.
pub fn write(mem: &GuestRam, base: u64, cpus: u8) -> Result<(), MpTableError> {
    let bytes = build(base, cpus)?;
    mem.write_slice(&bytes, GuestAddress(base))
        .map_err(|_| MpTableError::Write(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn checksums_and_counts_are_valid() {
        for cpus in [1u8, 2, 8, 254] {
            let t = build(0x9fc00, cpus).unwrap();
            assert_eq!(&t[0..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0);
            let cfg = &t[16..];
            assert_eq!(&cfg[0..4], b"PCMP");
            let len = u16::from_le_bytes([cfg[4], cfg[5]]) as usize;
            assert_eq!(len, cfg.len());
            assert_eq!(sum(cfg), 0);
            let count = u16::from_le_bytes([cfg[34], cfg[35]]) as usize;
            assert_eq!(count, cpus as usize + 2 + IOAPIC_PINS as usize + 2);
            // Processor entries come first, 20 bytes each, all enabled.
            for i in 0..cpus as usize {
                let e = &cfg[HEADER_LEN + i * 20..];
                assert_eq!(e[0], ENTRY_PROCESSOR);
                assert_eq!(e[1], i as u8);
                assert_ne!(e[3] & CPU_ENABLED, 0);
            }
        }
    }

    #[test]
    fn floating_pointer_points_past_itself() {
        let t = build(0x9fc00, 2).unwrap();
        let ptr = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        assert_eq!(ptr, 0x9fc00 + 16);
    }

    #[test]
    fn zero_or_too_many_cpus_are_refused() {
        assert!(build(0, 0).is_err());
        assert!(build(0, 255).is_err());
    }
}
