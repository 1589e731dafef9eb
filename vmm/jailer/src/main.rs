//! `vireo-jailer [OPTIONS] -- VMM ARGS`: see the library (lib.rs) and
//! docs/security.md. Exit status: the VMM's (128 + N when signal N ended
//! it); 1 when the jail could not be built.

use std::process::ExitCode;

use clap::Parser;
use vireo_jailer::JailSpec;

/// Start one vireo-vmm in a jail: own uid/gid, mount/PID/IPC/UTS
/// namespaces, pivot_root into bind mounts of its files, no capabilities,
/// rlimits and a cgroup with the VM's CPU, memory and I/O limits.
#[derive(Parser)]
#[command(name = "vireo-jailer", version)]
struct Cli {
    #[command(flatten)]
    spec: JailSpec,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match vireo_jailer::run::run(&cli.spec) {
        Ok(status) => ExitCode::from(u8::try_from(status).unwrap_or(1)),
        Err(e) => {
            eprintln!("vireo-jailer: {}: {e}", cli.spec.id);
            ExitCode::from(1)
        }
    }
}
