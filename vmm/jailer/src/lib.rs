//! `vireo-jailer`: starts one vireo-vmm confined, in the manner of
//! Firecracker's jailer (docs/security.md#the-jail).
//!
//! As root it makes the VM's cgroup (cpu, memory, io limits), then forks a
//! child into new mount, PID, IPC and UTS namespaces; the child builds the
//! jail directory from bind mounts of exactly the files the VM uses,
//! pivot_roots into it, mounts a /proc that shows only its own namespace,
//! sets rlimits, drops every capability and its groups, becomes the VM's
//! uid/gid with no_new_privs, and execs vireo-vmm with its paths rewritten
//! to their places in the jail. The parent waits, passes SIGTERM/SIGINT
//! on, removes the cgroup and the jail directory, and exits as the VMM did.
//!
//! A management layer (the node agent) describes the VM in a [`JailSpec`]
//! and runs [`JailSpec::command`]:
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! use vireo_jailer::JailSpec;
//!
//! let mut spec = JailSpec::new("vm-42", 10042, 10042, "/usr/bin/vireo-vmm");
//! spec.files.push(PathBuf::from("/var/lib/vireo/kernels/vmlinux"));
//! spec.rw_dirs.push(PathBuf::from("/var/lib/vireo/vms/vm-42"));
//! spec.memory_max = Some(1 << 30);
//! spec.cpu_max = Some("200000 100000".into());
//! spec.vmm_args = ["--kernel", "/var/lib/vireo/kernels/vmlinux",
//!     "--disk", "path=/var/lib/vireo/vms/vm-42/root.qcow2,format=qcow2",
//!     "--api-socket", "/var/lib/vireo/vms/vm-42/api.sock"]
//!     .map(String::from).to_vec();
//! let status = spec.command(Path::new("/usr/bin/vireo-jailer")).status();
//! ```

pub mod cgroup;
mod clone;
mod jail;
mod privs;
pub mod rewrite;
pub mod run;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Everything the jailer needs to start one VM. Host paths are absolute.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct JailSpec {
    /// The VM's id: 1-64 of [A-Za-z0-9_-]; names the jail and the cgroup.
    #[arg(long)]
    pub id: String,
    /// The uid the VMM runs as (not 0).
    #[arg(long)]
    pub uid: u32,
    /// The gid the VMM runs as (not 0).
    #[arg(long)]
    pub gid: u32,
    /// The vireo-vmm binary; bound read-only at /vireo-vmm. A dynamically
    /// linked one also needs its library directories (--ro-path).
    #[arg(long, value_name = "PATH")]
    pub exec: PathBuf,
    /// Where jails are made: BASE/ID/root.
    #[arg(long, value_name = "DIR", default_value = "/run/vireo/jail")]
    pub base: PathBuf,
    /// A file the VM reads (kernel, initrd, read-only disk): bound
    /// read-only at /vm/NAME.
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// A file the VM writes (a disk image): bound read-write at /vm/NAME.
    #[arg(long = "rw-file", value_name = "PATH")]
    pub rw_files: Vec<PathBuf>,
    /// A file only the VM's uid may read (a private key): copied into the
    /// jail's own memory-backed root at /vm/NAME, owned by the VM's uid,
    /// mode 0400. The copy is no host file: it goes with the jail's mount
    /// namespace when the VMM ends, however it ends.
    #[arg(long = "private-file", value_name = "PATH")]
    pub private_files: Vec<PathBuf>,
    /// A directory the VM reads (backing chains): read-only at /vm/NAME.
    #[arg(long = "dir", value_name = "PATH")]
    pub dirs: Vec<PathBuf>,
    /// A directory the VM writes (its sockets, snapshots, images).
    #[arg(long = "rw-dir", value_name = "PATH")]
    pub rw_dirs: Vec<PathBuf>,
    /// A host path bound read-only at the same path (shared libraries of
    /// a dynamically linked vireo-vmm); arguments are not rewritten.
    #[arg(long = "ro-path", value_name = "PATH")]
    pub ro_paths: Vec<PathBuf>,
    /// Device nodes made in the jail's /dev, owned by the VM's uid
    /// (default /dev/kvm, and /dev/net/tun when the host has it).
    #[arg(long = "device", value_name = "PATH")]
    pub devices: Vec<PathBuf>,
    /// cgroup cpu.max: "QUOTA PERIOD" in µs, or "max PERIOD".
    #[arg(long, value_name = "QUOTA PERIOD")]
    pub cpu_max: Option<String>,
    /// cgroup memory.max in bytes (guest RAM counts: leave headroom).
    #[arg(long, value_name = "BYTES")]
    pub memory_max: Option<u64>,
    /// cgroup io.max lines: "MAJ:MIN rbps=N wbps=N riops=N wiops=N".
    #[arg(long = "io-max", value_name = "LINE")]
    pub io_max: Vec<String>,
    /// The cgroup (under the hierarchy's root) VM groups are made in.
    #[arg(long, value_name = "NAME", default_value = "vireo")]
    pub cgroup_parent: String,
    /// RLIMIT_NOFILE of the VMM.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub nofile: u64,
    /// RLIMIT_FSIZE of the VMM in bytes (the largest file it may grow).
    #[arg(long, value_name = "BYTES")]
    pub fsize: Option<u64>,
    /// Join this network namespace (a file under /run/netns) first.
    #[arg(long, value_name = "PATH")]
    pub netns: Option<PathBuf>,
    /// Inherited descriptors to leave open for the VMM (`--net fd=N`).
    #[arg(long = "keep-fd", value_name = "N")]
    pub keep_fds: Vec<i32>,
    /// vireo-vmm's arguments, with host paths; rewritten for the jail.
    #[arg(last = true, value_name = "VMM ARGS")]
    pub vmm_args: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("invalid jail: {0}")]
    Invalid(String),
    #[error("{what}: {err}")]
    Os { what: String, err: std::io::Error },
}

impl JailError {
    /// The last OS error, with what was being done.
    pub(crate) fn last(what: impl Into<String>) -> Self {
        JailError::Os {
            what: what.into(),
            err: std::io::Error::last_os_error(),
        }
    }

    pub(crate) fn io(what: impl Into<String>, err: std::io::Error) -> Self {
        JailError::Os {
            what: what.into(),
            err,
        }
    }
}

impl JailSpec {
    /// A spec with the defaults the command line has.
    pub fn new(id: &str, uid: u32, gid: u32, exec: impl Into<PathBuf>) -> Self {
        JailSpec {
            id: id.into(),
            uid,
            gid,
            exec: exec.into(),
            base: PathBuf::from("/run/vireo/jail"),
            cgroup_parent: "vireo".into(),
            nofile: 4096,
            ..Default::default()
        }
    }

    /// The `vireo-jailer` command that starts this VM.
    pub fn command(&self, jailer: &Path) -> Command {
        let mut cmd = Command::new(jailer);
        cmd.args(self.to_args());
        cmd
    }

    /// This spec as `vireo-jailer` arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            format!("--id={}", self.id),
            format!("--uid={}", self.uid),
            format!("--gid={}", self.gid),
            format!("--exec={}", self.exec.display()),
            format!("--base={}", self.base.display()),
            format!("--cgroup-parent={}", self.cgroup_parent),
            format!("--nofile={}", self.nofile),
        ];
        let paths = [
            ("--file", &self.files),
            ("--rw-file", &self.rw_files),
            ("--private-file", &self.private_files),
            ("--dir", &self.dirs),
            ("--rw-dir", &self.rw_dirs),
            ("--ro-path", &self.ro_paths),
            ("--device", &self.devices),
        ];
        for (flag, list) in paths {
            a.extend(list.iter().map(|p| format!("{flag}={}", p.display())));
        }
        a.extend(self.cpu_max.iter().map(|v| format!("--cpu-max={v}")));
        a.extend(self.memory_max.iter().map(|v| format!("--memory-max={v}")));
        a.extend(self.io_max.iter().map(|v| format!("--io-max={v}")));
        a.extend(self.fsize.iter().map(|v| format!("--fsize={v}")));
        a.extend(
            self.netns
                .iter()
                .map(|p| format!("--netns={}", p.display())),
        );
        a.extend(self.keep_fds.iter().map(|fd| format!("--keep-fd={fd}")));
        a.push("--".into());
        a.extend(self.vmm_args.iter().cloned());
        a
    }

    /// Refuses what would make the jail unsafe or ambiguous.
    pub fn validate(&self) -> Result<(), JailError> {
        let bad = |m: String| Err(JailError::Invalid(m));
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return bad(format!("id '{}': use 1-64 of A-Z a-z 0-9 - _", self.id));
        }
        if self.uid == 0 || self.gid == 0 {
            return bad("the VMM may not run as uid or gid 0".into());
        }
        if self.cgroup_parent.is_empty() || self.cgroup_parent.contains("..") {
            return bad(format!("cgroup parent '{}'", self.cgroup_parent));
        }
        let all = self
            .exposed()
            .chain(self.ro_paths.iter())
            .chain([&self.exec, &self.base]);
        for p in all {
            if !p.is_absolute() || p.components().any(|c| c.as_os_str() == "..") {
                return bad(format!(
                    "{}: paths must be absolute, without '..'",
                    p.display()
                ));
            }
        }
        Ok(())
    }

    fn exposed(&self) -> impl Iterator<Item = &PathBuf> {
        self.files
            .iter()
            .chain(&self.rw_files)
            .chain(&self.private_files)
            .chain(&self.dirs)
            .chain(&self.rw_dirs)
    }

    /// The jail's root directory on the host.
    pub fn root(&self) -> PathBuf {
        self.base.join(&self.id).join("root")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        spec: JailSpec,
    }

    fn sample() -> JailSpec {
        let mut s = JailSpec::new("vm-1", 1000, 1000, "/usr/bin/vireo-vmm");
        s.files.push("/k/vmlinux".into());
        s.rw_files.push("/d/disk.raw".into());
        s.private_files.push("/etc/vireo/tls/node.key".into());
        s.rw_dirs.push("/run/vm-1".into());
        s.memory_max = Some(64 << 20);
        s.cpu_max = Some("50000 100000".into());
        s.io_max.push("8:0 rbps=1048576".into());
        s.keep_fds.push(3);
        s.vmm_args = vec!["--kernel".into(), "/k/vmlinux".into()];
        s
    }

    #[test]
    fn the_command_line_gives_the_spec_back() {
        let s = sample();
        let mut argv = vec!["vireo-jailer".to_string()];
        argv.extend(s.to_args());
        let parsed = Cli::try_parse_from(argv).unwrap().spec;
        assert_eq!(parsed, s);
    }

    #[test]
    fn unsafe_specs_are_refused() {
        assert!(sample().validate().is_ok());
        let mut s = sample();
        s.uid = 0;
        assert!(s.validate().is_err());
        let mut s = sample();
        s.id = "../etc".into();
        assert!(s.validate().is_err());
        let mut s = sample();
        s.files.push("relative/file".into());
        assert!(s.validate().is_err());
        let mut s = sample();
        s.rw_dirs.push("/a/../etc".into());
        assert!(s.validate().is_err());
        let mut s = sample();
        s.private_files.push("key".into());
        assert!(s.validate().is_err());
    }
}
