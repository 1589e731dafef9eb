//! The rig's make targets, as a new user runs them from the top level
//! (tests/rig/README.md): they must hand the rig the static musl vireo-vmm.
//! The top-level Makefile exports VIREO_VMM (the glibc build, for these cargo
//! tests), so a rig fragment reading that name got a dynamic binary and
//! `make rig-initramfs` / `make rig-test` failed with "is dynamically linked".

use std::process::Command;

/// The VMM path `make -n TARGET` would give build-rig-initramfs.sh.
fn rig_vmm_of(target: &str, extra: &[&str]) -> String {
    let out = Command::new("make")
        .arg("-n")
        .arg(target)
        .args(extra)
        .current_dir(vireo_tests::repo_root())
        // As from a plain shell: no VIREO_VMM from the environment.
        .env_remove("VIREO_VMM")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .expect("run make -n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "make -n {target} failed:\n{text}");
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("VIREO_VMM="))
        .unwrap_or_else(|| panic!("make -n {target} builds no rig initramfs:\n{text}"))
        .to_string()
}

#[test]
fn rig_targets_take_the_static_vmm() {
    for target in ["rig-initramfs", "rig-test", "rig-bench-initramfs"] {
        let vmm = rig_vmm_of(target, &[]);
        assert!(
            vmm.ends_with("x86_64-unknown-linux-musl/release/vireo-vmm"),
            "make {target} would put {vmm} into the rig, not the static musl build"
        );
    }
}

#[test]
fn rig_vmm_can_be_pointed_elsewhere() {
    assert_eq!(
        rig_vmm_of("rig-initramfs", &["RIG_VMM=/opt/other-vmm"]),
        "/opt/other-vmm"
    );
    // The name the README used to give still works on make's command line.
    assert_eq!(
        rig_vmm_of("rig-initramfs", &["VIREO_VMM=/opt/other-vmm"]),
        "/opt/other-vmm"
    );
}
