//! Intel MultiProcessor Specification (1.4) tables: find the floating
//! pointer, check the configuration table, count enabled processors.

use crate::phys;

/// BDA word holding the EBDA segment.
const EBDA_SEGMENT_PTR: u64 = 0x40E;
const BASE_MEMORY_LAST_KIB: u64 = 0x9FC00;
const BIOS_ROM: u64 = 0xF0000;
const BIOS_ROM_END: u64 = 0x10_0000;
const KIB: u64 = 1024;

const FLOATING_SIGNATURE: &[u8; 4] = b"_MP_";
const FLOATING_SIZE: u64 = 16;
const CONFIG_SIGNATURE: &[u8; 4] = b"PCMP";
/// Size of the configuration table header; entries follow it.
const CONFIG_HEADER_SIZE: u64 = 0x2C;

const ENTRY_PROCESSOR: u8 = 0;
const PROCESSOR_ENTRY_SIZE: u64 = 20;
const OTHER_ENTRY_SIZE: u64 = 8;
const LAST_KNOWN_ENTRY_TYPE: u8 = 4;
const PROCESSOR_ENABLED: u8 = 1;
/// MP spec default configurations (no table) all have two processors.
const DEFAULT_CONFIG_CPUS: u32 = 2;

/// What the MP table says about processors.
pub enum MpTable {
    /// No valid floating pointer anywhere it may be.
    None,
    /// Processor entries with the enabled flag.
    Cpus(u32),
}

pub fn scan() -> Result<MpTable, &'static str> {
    let Some(floating) = find_floating() else {
        return Ok(MpTable::None);
    };
    let config = u64::from(phys::read::<u32>(floating + 4));
    if config == 0 {
        return Ok(MpTable::Cpus(DEFAULT_CONFIG_CPUS));
    }
    count_enabled_cpus(config).map(MpTable::Cpus)
}

/// The areas the spec lists, in its order of preference.
fn find_floating() -> Option<u64> {
    let ebda = u64::from(phys::read::<u16>(EBDA_SEGMENT_PTR)) << 4;
    let ebda_area = if ebda != 0 { ebda..ebda + KIB } else { 0..0 };
    let areas = [
        ebda_area,
        BASE_MEMORY_LAST_KIB..BASE_MEMORY_LAST_KIB + KIB,
        BIOS_ROM..BIOS_ROM_END,
    ];
    areas
        .into_iter()
        .flat_map(|area| area.step_by(FLOATING_SIZE as usize))
        .find(|&addr| is_floating_pointer(addr))
}

fn is_floating_pointer(addr: u64) -> bool {
    if phys::read::<[u8; 4]>(addr) != *FLOATING_SIGNATURE {
        return false;
    }
    // Length is in 16-byte units; the checksum covers all of it.
    let len = u64::from(phys::read::<u8>(addr + 8)) * FLOATING_SIZE;
    len != 0 && phys::byte_sum(addr, len) == 0
}

fn count_enabled_cpus(config: u64) -> Result<u32, &'static str> {
    phys::check(config, CONFIG_HEADER_SIZE).map_err(|_| "bad mptable config address")?;
    if phys::read::<[u8; 4]>(config) != *CONFIG_SIGNATURE {
        return Err("bad mptable config signature");
    }
    let base_len = u64::from(phys::read::<u16>(config + 4));
    if base_len < CONFIG_HEADER_SIZE || phys::check(config, base_len).is_err() {
        return Err("bad mptable config length");
    }
    if phys::byte_sum(config, base_len) != 0 {
        return Err("bad mptable config checksum");
    }
    let walked = walk_entries(config + CONFIG_HEADER_SIZE, config + base_len)?;
    // The entry count is only a cross-check: like Linux, the walk follows
    // the table length, because some firmware (qboot) leaves the count 0.
    let entry_count = u32::from(phys::read::<u16>(config + 0x22));
    if entry_count != 0 && entry_count != walked.entries {
        return Err("mptable entry count mismatch");
    }
    Ok(walked.enabled_cpus)
}

struct Walked {
    entries: u32,
    enabled_cpus: u32,
}

/// Walk the entries in `[entry, end)`, which must be exactly filled.
fn walk_entries(mut entry: u64, end: u64) -> Result<Walked, &'static str> {
    let mut walked = Walked {
        entries: 0,
        enabled_cpus: 0,
    };
    while entry < end {
        let kind = phys::read::<u8>(entry);
        let size = match kind {
            ENTRY_PROCESSOR => PROCESSOR_ENTRY_SIZE,
            1..=LAST_KNOWN_ENTRY_TYPE => OTHER_ENTRY_SIZE,
            _ => return Err("unknown mptable entry type"),
        };
        if entry + size > end {
            return Err("mptable entries overrun table");
        }
        if kind == ENTRY_PROCESSOR && phys::read::<u8>(entry + 3) & PROCESSOR_ENABLED != 0 {
            walked.enabled_cpus += 1;
        }
        walked.entries += 1;
        entry += size;
    }
    Ok(walked)
}
