//! `vireo-vmm`: boot one VM from the command line.
//!
//! Exit codes: 0 the guest powered off or reset, or the API shut it down;
//! 1 the VM could not be built or started (bad arguments, files, host);
//! 2 the VM failed while running.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vireo_vmm::config::{parse_vcpus, DiskConfig, MemorySize, NetConfig, SerialOutput, VmConfig};
use vireo_vmm::vmm::{self, Outcome};

/// Boot a Linux kernel (ELF vmlinux with or without a PVH note, or bzImage)
/// in a KVM virtual machine.
#[derive(Parser, Debug)]
#[command(name = "vireo-vmm", version)]
struct Args {
    /// Kernel image: ELF vmlinux (PVH entry if present, else 64-bit entry) or bzImage.
    #[arg(long, value_name = "PATH")]
    kernel: PathBuf,
    /// Initial ramdisk handed to the kernel.
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(
        long,
        value_name = "STR",
        default_value = "console=ttyS0 reboot=k panic=-1"
    )]
    cmdline: String,
    /// Number of vCPUs (1-254).
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_vcpus)]
    cpus: u8,
    /// Guest memory, e.g. 512M, 4G.
    #[arg(long, value_name = "SIZE", default_value = "512M")]
    memory: MemorySize,
    /// Serial console: stdio, file:PATH, socket:PATH or none.
    #[arg(long, value_name = "SPEC", default_value = "stdio")]
    serial: SerialOutput,
    /// Unix socket for the REST API (JSON over HTTP/1.1).
    #[arg(long, value_name = "PATH")]
    api_socket: Option<PathBuf>,
    /// A virtio-blk disk: path=FILE[,format=raw|qcow2][,readonly=on][,direct=on][,id=NAME]; repeat for more disks.
    #[arg(long, value_name = "path=FILE[,format=qcow2][,readonly=on][,id=NAME]")]
    disk: Vec<DiskConfig>,
    /// A virtio-net device on a tap, a macvtap link or a passed tap fd; repeat for more.
    #[arg(
        long,
        value_name = "tap=NAME|macvtap=NAME|fd=N[,mac=MAC][,mtu=N][,id=NAME]"
    )]
    net: Vec<NetConfig>,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // --help and --version print and succeed; real usage errors exit 1.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let config = VmConfig {
        kernel: args.kernel,
        initrd: args.initrd,
        cmdline: args.cmdline,
        vcpus: args.cpus,
        memory: args.memory,
        serial: args.serial,
        api_socket: args.api_socket,
        disks: args.disk,
        nets: args.net,
    };
    match vmm::run(config) {
        Ok(Outcome::Failed(reason)) => {
            eprintln!("vireo-vmm: the VM failed: {reason}");
            ExitCode::from(2)
        }
        Ok(outcome) => ExitCode::from(outcome.exit_code() as u8),
        Err(e) => {
            eprintln!("vireo-vmm: error: {e}");
            ExitCode::from(1)
        }
    }
}
