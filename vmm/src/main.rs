//! `vireo-vmm`: boot one VM from the command line, restore one from a
//! snapshot, or receive one from a migration.
//!
//! Exit codes: 0 the guest powered off or reset, the API shut it down, or
//! it migrated away; 1 the VM could not be built or started (bad arguments,
//! files, host); 2 the VM failed while running.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vireo_vmm::builder::{Launch, Overrides, Resume};
use vireo_vmm::config::{parse_vcpus, DiskConfig, MemorySize, NetConfig, SerialOutput, VmConfig};
use vireo_vmm::migration::transport::TlsFiles;
use vireo_vmm::seccomp::{self, Mode};
use vireo_vmm::vmm::{self, Outcome};

/// Boot a Linux kernel (ELF vmlinux with or without a PVH note, or bzImage)
/// in a KVM virtual machine, or resume one saved in a snapshot, or receive
/// one from a migration.
#[derive(Parser, Debug)]
#[command(name = "vireo-vmm", version)]
struct Args {
    /// Kernel image: ELF vmlinux (PVH entry if present, else 64-bit entry) or bzImage.
    #[arg(long, value_name = "PATH", required_unless_present_any = ["restore", "incoming"])]
    kernel: Option<PathBuf>,
    /// Resume the VM saved in this snapshot directory (PUT /vm/snapshot);
    /// --disk, --net, --serial and --api-socket, when given, replace the saved ones.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["kernel", "incoming"])]
    restore: Option<PathBuf>,
    /// Wait for a migrating VM on tcp://ADDR:PORT, tls://ADDR:PORT or unix:PATH,
    /// then run it; --disk, --net, --serial and --api-socket as for --restore.
    #[arg(long, value_name = "URL", conflicts_with_all = ["kernel", "restore"])]
    incoming: Option<String>,
    /// With --restore or --incoming: leave the VM paused once it is here
    /// (PUT /vm/resume runs it).
    #[arg(long)]
    paused: bool,
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
    /// Serial console: stdio (the default), file:PATH, socket:PATH or none.
    #[arg(long, value_name = "SPEC")]
    serial: Option<SerialOutput>,
    /// Unix socket for the REST API (JSON over HTTP/1.1).
    #[arg(long, value_name = "PATH")]
    api_socket: Option<PathBuf>,
    /// A virtio-blk disk: path=FILE[,format=raw|qcow2][,readonly=on][,direct=on][,id=NAME][,backing-dir=DIR]; repeat for more disks.
    #[arg(long, value_name = "path=FILE[,format=qcow2][,readonly=on][,id=NAME]")]
    disk: Vec<DiskConfig>,
    /// A virtio-net device on a tap, a macvtap link or a passed tap fd; repeat for more.
    #[arg(
        long,
        value_name = "tap=NAME|macvtap=NAME|fd=N[,mac=MAC][,mtu=N][,id=NAME]"
    )]
    net: Vec<NetConfig>,
    /// PEM certificate this VMM presents on tls:// migration channels.
    #[arg(long, value_name = "PATH")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PATH")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate the other end of a tls:// migration must be signed by.
    #[arg(long, value_name = "PATH")]
    tls_ca: Option<PathBuf>,
    /// seccomp filters per thread: kill (a forbidden system call ends the
    /// VMM, naming it), log (allowed and logged by the kernel) or off.
    #[arg(long, value_name = "off|log|kill", default_value_t = Mode::Kill)]
    seccomp: Mode,
}

impl Args {
    fn tls(&self) -> TlsFiles {
        TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
        }
    }

    fn launch(self) -> Launch {
        let overrides = Overrides {
            disks: (!self.disk.is_empty()).then_some(self.disk.clone()),
            nets: (!self.net.is_empty()).then_some(self.net.clone()),
            serial: self.serial.clone(),
            api_socket: self.api_socket.clone(),
        };
        if let Some(dir) = self.restore {
            return Launch::Restore(Resume {
                dir,
                overrides,
                paused: self.paused,
            });
        }
        if let Some(url) = self.incoming {
            let resume = Resume {
                dir: PathBuf::new(),
                overrides,
                paused: self.paused,
            };
            return Launch::Incoming { url, resume };
        }
        Launch::Boot(VmConfig {
            kernel: self.kernel.unwrap_or_default(),
            initrd: self.initrd,
            cmdline: self.cmdline,
            vcpus: self.cpus,
            memory: self.memory,
            serial: self.serial.unwrap_or(SerialOutput::Stdio),
            api_socket: self.api_socket,
            disks: self.disk,
            nets: self.net,
        })
    }
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
    let tls = args.tls();
    if let Err(e) = seccomp::init(args.seccomp) {
        eprintln!("vireo-vmm: error: {e}");
        return ExitCode::from(1);
    }
    match vmm::run(args.launch(), tls) {
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
