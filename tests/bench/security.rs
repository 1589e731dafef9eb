//! `vireo-bench security`: what the confinement costs. The probe's boot,
//! virtio-blk and virtio-net rows with `--seccomp kill` against `off`
//! (goal: no measurable difference), and a jailed VM's start against an
//! unjailed one's (the jailer's namespaces, mounts and cgroup).

use std::path::{Path, PathBuf};

use crate::measure::Vmm;
use crate::{block, net, Failures, GUEST_MEMORY_MIB};

const UID: u32 = 4242;

pub fn bench_security(failures: &mut Failures) {
    println!("\n== security: seccomp kill vs off, jailed vs unjailed");
    let probe = vireo_tests::probe_elf();
    let modes = || {
        [
            Vmm::vireo_seccomp(&probe, GUEST_MEMORY_MIB, "kill"),
            Vmm::vireo_seccomp(&probe, GUEST_MEMORY_MIB, "off"),
        ]
    };
    crate::compare_probe(modes());
    block::bench_block(&modes());
    let cmdline = "probe.net=echo:10000";
    let contenders = [
        ("seccomp kill", net::vireo_args_seccomp(cmdline, "kill")),
        ("seccomp off", net::vireo_args_seccomp(cmdline, "off")),
    ];
    net::compare_net(
        failures,
        &contenders,
        "goal: 1.0x (filters cost nothing measurable)",
    );
    match jailed(&probe) {
        Ok(jail) => crate::compare_probe([jail, Vmm::vireo(&probe, GUEST_MEMORY_MIB)]),
        Err(why) => failures.add("jailed start", &why),
    }
    println!("goal: seccomp ratios 1.0x; a jailed start within a few ms of an unjailed one");
}

/// The probe under vireo-jailer, as tests/jail.rs runs it.
fn jailed(probe: &Path) -> Result<Vmm, String> {
    let jailer = vireo_tests::repo_root().join("target/release/vireo-jailer");
    if !jailer.exists() {
        return Err(format!("{} missing (make vmm)", jailer.display()));
    }
    let dir = vireo_tests::scratch_dir("bench-jail");
    let kernel: PathBuf = dir.join("probe.elf");
    std::fs::copy(probe, &kernel).map_err(|e| e.to_string())?;
    let mut args = vec![
        "--id=bench".to_string(),
        format!("--uid={UID}"),
        format!("--gid={UID}"),
        format!("--exec={}", vireo_tests::vmm_binary().display()),
        format!("--base={}", dir.join("jail").display()),
        format!("--file={}", kernel.display()),
    ];
    for lib in ["/lib/x86_64-linux-gnu", "/lib64"] {
        if Path::new(lib).exists() {
            args.push(format!("--ro-path={lib}"));
        }
    }
    let mem = format!("{GUEST_MEMORY_MIB}M");
    args.extend(["--", "--kernel"].map(String::from));
    args.push(kernel.display().to_string());
    args.extend(["--cpus", "1", "--memory", &mem, "--cmdline", ""].map(String::from));
    Ok(Vmm::custom(
        "jailed",
        &jailer.display().to_string(),
        args,
        GUEST_MEMORY_MIB,
    ))
}
