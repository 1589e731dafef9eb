//! The Linux-guest figure: median of 5 rig runs of "launch vireo-vmm → the
//! guest's /init line", measured inside the QEMU rig (nested KVM).

use std::process::Command;

use crate::measure::median;
use crate::Failures;

pub fn bench_linux_in_rig(failures: &mut Failures) {
    let root = vireo_tests::repo_root();
    let script = root.join("tests/rig/run-rig.sh");
    println!("\n== Linux guest in the QEMU rig: 5 launches of vireo-vmm (cmdline quiet)");
    let out = Command::new(&script)
        .args(["bench-linux", "rig.runs=5"])
        .current_dir(&root)
        .output()
        .expect("run tests/rig/run-rig.sh");
    let console = String::from_utf8_lossy(&out.stdout);
    let times: Vec<f64> = console
        .lines()
        .filter_map(|l| l.split("ms_to_init=").nth(1))
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    if !out.status.success() || times.is_empty() {
        let why = format!("rig bench failed (exit {:?})", out.status.code());
        println!("{why}; console tail:");
        failures.add("Linux guest in the rig", &why);
        for l in console
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            println!("  {l}");
        }
        return;
    }
    println!("runs (ms): {times:?}");
    println!("median launch -> /init: {:.0} ms", median(times));
}
