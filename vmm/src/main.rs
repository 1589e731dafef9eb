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
    /// Leave the VM paused once it is built, restored or here (PUT
    /// /vm/resume runs it): a supervisor attaches to the console first.
    #[arg(long)]
    paused: bool,
    /// Write how the VMM ended to this file as JSON (`exit_code`, `outcome`,
    /// `message`) just before it exits: a supervisor that is not our parent
    /// cannot wait for our status. No file means the VMM was killed.
    #[arg(long, value_name = "PATH")]
    exit_file: Option<PathBuf>,
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
    /// An inherited, connected Unix socket that is the --serial socket's
    /// first client from the start (a supervisor's: no output is lost, so
    /// the VM need not start --paused).
    #[arg(long, value_name = "FD")]
    serial_client_fd: Option<i32>,
    /// An inherited pipe or socket that gets "ready" once the VM runs and
    /// the API answers; closed unwritten if the VMM fails first.
    #[arg(long, value_name = "FD")]
    ready_fd: Option<i32>,
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
    // A VMM's reaper is this binary run again (reaper.rs): nothing else.
    if let Some(code) = vireo_vmm::reaper::run_if_reaper() {
        return code;
    }
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // --help and --version print and succeed; real usage errors exit 1.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let tls = args.tls();
    // Before anything of the VM's is open (see reaper.rs); without one the
    // VM is only destroyed before the exit instead of after it.
    if let Err(e) = vireo_vmm::reaper::start() {
        eprintln!("vireo-vmm: warning: no reaper process, the exit waits for KVM: {e}");
    }
    if let Err(e) = seccomp::init(args.seccomp) {
        eprintln!("vireo-vmm: error: {e}");
        return ExitCode::from(1);
    }
    let exit_file = args.exit_file.clone();
    let handoff = match handoff::take(args.serial_client_fd, args.ready_fd) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vireo-vmm: error: {e}");
            return ExitCode::from(1);
        }
    };
    // A fresh boot takes --paused here; restore and incoming carry it in `Resume`.
    let paused_boot = args.paused && args.kernel.is_some();
    let (code, record) = match vmm::run_handed(args.launch(), tls, paused_boot, handoff) {
        Ok(Outcome::Failed(reason)) => {
            eprintln!("vireo-vmm: the VM failed: {reason}");
            (2, exit_record::failed(2, "failed", &reason))
        }
        Ok(outcome) => {
            let code = outcome.exit_code();
            (code, exit_record::ended(code, &outcome))
        }
        Err(e) => {
            eprintln!("vireo-vmm: error: {e}");
            (1, exit_record::failed(1, "not_started", &e.to_string()))
        }
    };
    if let Some(path) = exit_file {
        exit_record::write(&path, &record);
    }
    ExitCode::from(code as u8)
}

/// `--serial-client-fd` and `--ready-fd`: inherited fds, checked and owned.
mod handoff {
    use std::fs::File;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;

    use vireo_vmm::vmm::Handoff;

    pub fn take(serial_client: Option<i32>, ready: Option<i32>) -> Result<Handoff, String> {
        if serial_client.is_some() && serial_client == ready {
            return Err("--serial-client-fd and --ready-fd must differ".into());
        }
        let serial_client = serial_client
            .map(|fd| owned(fd, "--serial-client-fd"))
            .transpose()?
            .map(UnixStream::from);
        if let Some(s) = &serial_client {
            if s.peer_addr().is_err() || s.set_nonblocking(false).is_err() {
                return Err("--serial-client-fd is not a connected Unix socket".into());
            }
        }
        let ready = ready.map(|fd| owned(fd, "--ready-fd")).transpose()?;
        Ok(Handoff {
            serial_client,
            ready: ready.map(File::from),
        })
    }

    /// Takes `fd` if it is open and not stdin/stdout/stderr; marks it
    /// close-on-exec (the VMM starts nothing that should inherit it).
    fn owned(fd: i32, flag: &str) -> Result<OwnedFd, String> {
        // SAFETY: F_GETFD/F_SETFD only read and set the descriptor's flags.
        let open = fd > 2 && unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0;
        if !open {
            return Err(format!("{flag} {fd}: not an open inherited descriptor"));
        }
        // SAFETY: the fd is open (checked above), was inherited for us
        // alone, and nothing else in this process owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// `--exit-file`: how this VMM ended, for a supervisor that re-adopted it
/// (and so cannot wait for its status).
mod exit_record {
    use std::path::Path;

    use serde_json::{json, Value};
    use vireo_vmm::vmm::Outcome;

    pub fn ended(code: i32, outcome: &Outcome) -> Value {
        let name = match outcome {
            Outcome::GuestReset => "guest_reset",
            Outcome::GuestPowerOff => "guest_power_off",
            Outcome::ApiShutdown => "api_shutdown",
            Outcome::Signalled => "signalled",
            Outcome::MigratedAway => "migrated_away",
            Outcome::Failed(_) => "failed",
        };
        json!({"exit_code": code, "outcome": name, "message": null})
    }

    pub fn failed(code: i32, outcome: &str, message: &str) -> Value {
        json!({"exit_code": code, "outcome": outcome, "message": message})
    }

    /// Written whole or not at all (temporary file, then rename); a failure
    /// is only reported: the exit status still says it.
    pub fn write(path: &Path, record: &Value) {
        let tmp = path.with_extension("tmp");
        let written =
            std::fs::write(&tmp, record.to_string()).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            eprintln!(
                "vireo-vmm: cannot write the exit file {}: {e}",
                path.display()
            );
        }
    }
}
