//! Vireo's VMM: one process per VM on the rust-vmm crates.
//!
//! The boot flow lives in [`vm`]; read it top to bottom to see every step.

pub mod api;
pub mod arch;
pub mod backends;
pub mod builder;
pub mod config;
pub mod console;
pub mod ctl;
pub mod device_manager;
pub mod devices;
pub mod disk_layers;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod memory;
pub mod migration;
pub mod reaper;
pub mod seccomp;
pub mod signals;
pub mod snapshot;
pub mod spin;
pub mod vcpu;
pub mod vm;
pub mod vmm;
