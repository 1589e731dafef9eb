//! Boots the probe guest through /dev/kvm and checks what it reports about
//! its CPUs, memory map, memory and command line.

use std::time::Duration;

use vireo_tests::{hex, probe_elf, probe_linux64_elf, run_vmm, ProbeReport};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// The legacy 640 KiB–1 MiB window is RAM in the host but reserved in e820.
const LEGACY_HOLE: u64 = 0x10_0000 - 0x9_fc00;

/// The e820 map vireo-vmm must announce for `mem` bytes.
fn expected_e820(mem: u64) -> Vec<(u64, u64, u32)> {
    let low_end = mem.min(3 * GIB);
    let mut map = vec![
        (0, 0x9_fc00, 1),
        (0x9_fc00, 0x10_0000, 2),
        (0x10_0000, low_end, 1),
    ];
    if mem > 3 * GIB {
        map.push((4 * GIB, 4 * GIB + mem - 3 * GIB, 1));
    }
    map
}

fn boot_probe(elf: &std::path::Path, cpus: u8, mem: u64, boot: &str) {
    let cmdline = format!("probe test cpus={cpus} mem={mem}");
    let elf = elf.to_str().unwrap();
    let (cpus_s, mem_s) = (cpus.to_string(), format!("{}M", mem / MIB));
    let args = [
        "--kernel",
        elf,
        "--cpus",
        &cpus_s,
        "--memory",
        &mem_s,
        "--cmdline",
        &cmdline,
        "--serial",
        "stdio",
    ];
    let run = run_vmm(&args, Duration::from_secs(60));
    let ctx = format!(
        "cpus={cpus} mem={mem_s}\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(
        run.status.success(),
        "vireo-vmm failed: {:?}\n{ctx}",
        run.status
    );
    let report = ProbeReport::parse(&run.stdout);

    assert!(report.done_ok(), "probe did not finish ok\n{ctx}");
    assert_eq!(
        report.field("start", "boot").as_deref(),
        Some(boot),
        "{ctx}"
    );
    assert_eq!(
        report.all("cmdline").first().map(|w| w.join(" ")),
        Some(cmdline.clone()),
        "{ctx}"
    );

    let e820: Vec<(u64, u64, u32)> = report
        .all("e820")
        .iter()
        .map(|w| (hex(&w[0]), hex(&w[1]), w[2].parse().unwrap()))
        .collect();
    assert_eq!(e820, expected_e820(mem), "{ctx}");
    let total: u64 = report.field("ram", "total").unwrap().parse().unwrap();
    assert_eq!(total, mem - LEGACY_HOLE, "{ctx}");

    let online: u8 = report.field("cpus", "online").unwrap().parse().unwrap();
    assert_eq!(online, cpus, "{ctx}");
    let apic_ids: Vec<u32> = report
        .all("cpu")
        .iter()
        .map(|w| w[0].strip_prefix("apic=").unwrap().parse().unwrap())
        .collect();
    assert_eq!(apic_ids, (0..u32::from(cpus)).collect::<Vec<_>>(), "{ctx}");
    assert_eq!(
        report.field("mptable", "cpus"),
        Some(cpus.to_string()),
        "{ctx}"
    );

    let memtest = report.all("memtest");
    assert_eq!(
        memtest.first().and_then(|w| w.last()).map(String::as_str),
        Some("ok"),
        "{ctx}"
    );
}

macro_rules! probe_matrix {
    ($($name:ident: $cpus:expr, $mem:expr;)*) => {$(
        #[test]
        fn $name() {
            boot_probe(&probe_elf(), $cpus, $mem, "pvh");
        }
    )*};
}

probe_matrix! {
    pvh_1cpu_64m: 1, 64 * MIB;
    pvh_1cpu_1g: 1, GIB;
    pvh_1cpu_4g: 1, 4 * GIB;
    pvh_2cpu_64m: 2, 64 * MIB;
    pvh_2cpu_1g: 2, GIB;
    pvh_2cpu_4g: 2, 4 * GIB;
    pvh_8cpu_64m: 8, 64 * MIB;
    pvh_8cpu_1g: 8, GIB;
    pvh_8cpu_4g: 8, 4 * GIB;
}

#[test]
fn linux64_entry_boots_with_boot_params() {
    boot_probe(&probe_linux64_elf(), 2, 256 * MIB, "linux64");
}

#[test]
fn linux64_entry_sees_memory_above_4g() {
    boot_probe(&probe_linux64_elf(), 4, 5 * GIB, "linux64");
}
