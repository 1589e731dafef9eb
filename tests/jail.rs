//! vireo-jailer, checked from the host: a jailed probe boots and its disk
//! and network work; the VMM runs as its own uid with no capabilities,
//! sees only its own PID namespace and only the jail's files (and cannot
//! write outside it); a `--private-file` (a key) is its own copy, 0400,
//! gone with the jail; its cgroup's memory limit stops it.

// Shared with virtio_net.rs, which uses the parts this file does not.
#[allow(dead_code)]
#[path = "netlab/mod.rs"]
mod netlab;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netlab::{bridge_with_tap, open_tap, spawn_echo};
use vireo_tests::{
    first_child, probe_elf, proc_status_field, processes_in, repo_root, run_captured, scratch_dir,
    vmm_binary, wait_for, wait_with_deadline, ProbeReport,
};

const UID: u32 = 4242;

fn jailer_binary() -> PathBuf {
    let path = std::env::var_os("VIREO_JAILER")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release/vireo-jailer"));
    assert!(path.exists(), "{}: run `make vmm`", path.display());
    path
}

fn chown(path: &Path) {
    std::os::unix::fs::chown(path, Some(UID), Some(UID)).unwrap();
}

/// A jailer command for VM `id` with `dir` (holding the probe) exposed:
/// the probe read-only, `dir/run` read-write and owned by the VM's uid.
fn jailer(id: &str, dir: &Path, extra: &[String], vmm_args: &[String]) -> Command {
    let kernel = dir.join("probe.elf");
    std::fs::copy(probe_elf(), &kernel).unwrap();
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    chown(&run);
    let mut cmd = Command::new(jailer_binary());
    cmd.arg(format!("--id={id}"))
        .args([format!("--uid={UID}"), format!("--gid={UID}")])
        .arg(format!("--exec={}", vmm_binary().display()))
        .arg(format!("--base={}", dir.join("jail").display()))
        .arg(format!("--file={}", kernel.display()))
        .arg(format!("--rw-dir={}", run.display()));
    // A dynamically linked vireo-vmm (the glibc build) needs its libraries.
    for lib in ["/lib/x86_64-linux-gnu", "/lib64"] {
        if Path::new(lib).exists() {
            cmd.arg(format!("--ro-path={lib}"));
        }
    }
    cmd.args(extra)
        .arg("--")
        .arg("--kernel")
        .arg(&kernel)
        .args(vmm_args);
    cmd
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_jailed_probe_boots_and_its_disk_and_net_work() {
    let dir = scratch_dir("jail-boot");
    let disk = dir.join("disk.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    chown(&disk);
    let ns = bridge_with_tap("jail");
    let tap = open_tap(&ns, "vtap0");
    let fd = tap.as_raw_fd();
    let echo = spawn_echo(&ns, "veth1", 1000, Duration::from_secs(120));
    let extra = vec![
        format!("--rw-file={}", disk.display()),
        format!("--keep-fd={fd}"),
    ];
    let vmm_args = vec![
        "--memory".into(),
        "64M".into(),
        "--disk".into(),
        format!("path={},format=raw", disk.display()),
        "--net".into(),
        format!("fd={fd},mac=02:76:69:72:65:6f"),
        "--cmdline".into(),
        "probe.blk=write:7:4 probe.net=echo:1000".into(),
    ];
    let mut cmd = jailer("boot", &dir, &extra, &vmm_args);
    // SAFETY: fcntl only touches the child's descriptor table.
    unsafe {
        cmd.pre_exec(move || match libc::fcntl(fd, libc::F_SETFD, 0) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
    let run = run_captured(&mut cmd, Duration::from_secs(120));
    let log = echo.finish();
    let context = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.status.success(), "{context}");
    let report = ProbeReport::parse(&run.stdout);
    assert!(report.done_ok(), "{context}");
    assert!(run.stdout.contains("PROBE blk write mib=4 ok"), "{context}");
    assert!(
        run.stdout.contains("PROBE net echo count=1000 ok"),
        "{context}"
    );
    assert_eq!(log.seqs.len(), 1000, "{context}");
    // What the guest wrote reached the image on the host.
    let bytes = std::fs::read(&disk).unwrap();
    assert!(bytes[..4 << 20].iter().any(|&b| b != 0), "{context}");
    assert!(
        !dir.join("jail/boot").exists(),
        "the jail directory is left"
    );
}

/// A running jailed VM: the jailer's child is the VMM.
struct Jailed {
    jailer: Child,
    dir: PathBuf,
}

impl Jailed {
    fn start(dir: PathBuf, id: &str, extra: &[String], vmm_args: &[String]) -> Self {
        let jailer = jailer(id, &dir, extra, vmm_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self { jailer, dir }
    }

    /// The VMM's pid on the host.
    fn vmm_pid(&self) -> u32 {
        first_child(self.jailer.id(), Duration::from_secs(20))
    }
}

impl Drop for Jailed {
    fn drop(&mut self) {
        // SIGTERM is passed on to the VMM, which stops in order.
        let _ = Command::new("kill")
            .arg(self.jailer.id().to_string())
            .status();
        let _ = wait_with_deadline(&mut self.jailer, Duration::from_secs(20));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_jail_confines_the_vmm() {
    let outside = scratch_dir("jail-outside");
    let dir = scratch_dir("jail-confined");
    let socket = dir.join("run/api.sock");
    let mut vmm_args = strings(&[
        "--memory",
        "64M",
        "--cmdline",
        "probe.tick",
        "--serial",
        "none",
    ]);
    vmm_args.extend(["--api-socket".to_string(), socket.display().to_string()]);
    // A private key as a node's is kept: root's, 0600.
    let key = outside.join("node.key");
    write_private(&key, b"a node's private key");
    let private = [format!("--private-file={}", key.display())];
    let jail_dir = dir.join("jail");
    let vm = Jailed::start(dir, "confined", &private, &vmm_args);
    let pid = vm.vmm_pid();
    wait_for("the API socket", Duration::from_secs(20), || {
        socket.exists()
    });
    // Its own uid and gid, no groups, no capabilities, no_new_privs, seccomp.
    let ids = format!("{UID} {UID} {UID} {UID}");
    assert_eq!(proc_status_field(pid, "Uid"), ids);
    assert_eq!(proc_status_field(pid, "Gid"), ids);
    assert_eq!(proc_status_field(pid, "Groups"), "");
    for caps in ["CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status_field(pid, caps), "0000000000000000", "{caps}");
    }
    assert_eq!(proc_status_field(pid, "NoNewPrivs"), "1");
    // The API socket can exist a moment before the main thread installs its
    // filter (it does so before the guest runs, not before the socket).
    wait_for(
        "seccomp on the main thread",
        Duration::from_secs(20),
        || proc_status_field(pid, "Seccomp") == "2",
    );
    // PID 1 of its own namespace, whose /proc shows nothing else.
    let nspid = proc_status_field(pid, "NSpid");
    assert_eq!(nspid, format!("{pid} 1"));
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    // (No reaper either: vmm/src/reaper.rs starts none in a namespace.)
    assert_eq!(
        processes_in(&root.join("proc")),
        [("1".to_string(), "vireo-vmm".to_string())]
    );
    // Its root holds only the jail: no /etc, /home, /tmp of the host.
    let mut top: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    top.sort();
    assert_eq!(top, ["dev", "lib", "lib64", "proc", "vireo-vmm", "vm"]);
    assert!(std::fs::File::open(root.join("etc/passwd")).is_err());
    // The key is a copy in the jail that the VM's uid alone may read.
    use std::os::unix::fs::MetadataExt;
    let copy = std::fs::metadata(root.join("vm/node.key")).unwrap();
    assert_eq!(
        (copy.uid(), copy.gid(), copy.mode() & 0o777),
        (UID, UID, 0o400)
    );
    assert_eq!(
        std::fs::read(root.join("vm/node.key")).unwrap(),
        b"a node's private key"
    );
    // Asked to write outside the jail, it cannot, and the host is unchanged.
    let target = outside.join("snap");
    let (code, _) = vireo_tests::api_call(&socket, "PUT", "/vm/pause");
    assert_eq!(code, 204);
    let body = format!(r#"{{"dir":"{}"}}"#, target.display());
    let (code, reply) = vireo_tests::api_call_with(&socket, "PUT", "/vm/snapshot", &body);
    assert!(code >= 400, "{code} {reply}");
    assert!(!target.exists());
    // The copy lived in the jail's tmpfs: nothing of the jail is left.
    let _ = Command::new("kill")
        .arg(vm.jailer.id().to_string())
        .status();
    wait_for("the jail to be removed", Duration::from_secs(20), || {
        std::fs::read_dir(&jail_dir).is_ok_and(|mut d| d.next().is_none())
    });
    drop(vm);
    let _ = std::fs::remove_dir_all(&outside);
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn the_memory_limit_stops_the_vmm() {
    let dir = scratch_dir("jail-oom");
    let extra = vec![format!("--memory-max={}", 96 << 20)];
    let vmm_args = strings(&["--memory", "256M", "--cmdline", "probe.dirty=200"]);
    let mut cmd = jailer("oom", &dir, &extra, &vmm_args);
    let run = run_captured(&mut cmd, Duration::from_secs(120));
    assert_eq!(
        run.status.code(),
        Some(128 + libc::SIGKILL),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("the VMM was stopped by its cgroup's memory limit"),
        "{}",
        run.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unsafe_jails_are_refused() {
    let dir = scratch_dir("jail-refused");
    let mut cmd = jailer("root", &dir, &[], &[]);
    cmd.arg("--uid=0");
    let run = run_captured(&mut cmd, Duration::from_secs(20));
    // --uid after -- goes to the VMM; build the refusal properly instead.
    let _ = run;
    let mut cmd = Command::new(jailer_binary());
    cmd.args(["--id=x", "--uid=0", "--gid=0", "--exec=/bin/true", "--"]);
    let run = run_captured(&mut cmd, Duration::from_secs(20));
    assert_eq!(run.status.code(), Some(1));
    assert!(
        run.stderr.contains("may not run as uid or gid 0"),
        "{}",
        run.stderr
    );
}
