//! Hands the probe's linker script to the linker by absolute path, so the
//! build works from any working directory (`--manifest-path`).

use std::env;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let script = dir.join("link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    // Absolute addresses: the image runs where it is loaded (1 MiB) and its
    // 16/32-bit boot code needs plain 32-bit absolute relocations.
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    // Fewer, simpler segments for simple loaders: code and read-only data
    // in one, all writable data (GOT included) in the other.
    println!("cargo:rustc-link-arg-bins=--no-rosegment");
    println!("cargo:rustc-link-arg-bins=-znorelro");
}
