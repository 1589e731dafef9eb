//! The serial console on a Unix socket, and an orderly stop on SIGTERM.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vireo_tests::{api_call, probe_elf, scratch_dir, vmm_binary, wait_for, wait_with_deadline};

/// Reads from `stream` until `needle` shows up; returns what was read.
fn read_until(stream: &mut UnixStream, needle: &str, timeout: Duration) -> String {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        assert!(
            start.elapsed() < timeout,
            "no {needle:?} on the console; got {:?}",
            String::from_utf8_lossy(&seen)
        );
        if let Ok(n) = stream.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn connect(path: &std::path::Path, timeout: Duration) -> UnixStream {
    let start = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) if start.elapsed() > timeout => {
                panic!("cannot connect to {}: {e}", path.display())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The probe ticking on a socket console at `socket`, as the agent starts
/// VMs (handed fds are added by the caller).
fn ticking_probe(socket: &std::path::Path) -> Command {
    let mut cmd = Command::new(vmm_binary());
    cmd.arg("--kernel")
        .arg(probe_elf())
        .args(["--memory", "64M", "--cmdline", "probe.tick"])
        .arg("--serial")
        .arg(format!("socket:{}", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// What the VMM writes on its readiness pipe before closing it.
fn read_ready(ready: &mut UnixStream) -> String {
    let mut line = String::new();
    ready
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    ready.read_to_string(&mut line).unwrap_or_default();
    line
}

#[test]
fn socket_console_serves_successive_clients_and_sigterm_cleans_up() {
    let dir = scratch_dir("console-socket");
    let console = dir.join("console.sock");
    let api = dir.join("api.sock");
    let mut child = Command::new(vmm_binary())
        .arg("--kernel")
        .arg(probe_elf())
        .args(["--cmdline", "probe.tick", "--memory", "64M"])
        .arg(format!("--serial=socket:{}", console.display()))
        .arg("--api-socket")
        .arg(&api)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();

    let mut first = connect(&console, Duration::from_secs(10));
    read_until(&mut first, "PROBE tick", Duration::from_secs(30));
    drop(first);
    // A second client picks up where the first left off.
    let mut second = connect(&console, Duration::from_secs(10));
    let later = read_until(&mut second, "PROBE tick", Duration::from_secs(30));
    assert!(
        !later.contains("PROBE start"),
        "the second client should not see the boot again"
    );

    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(!console.exists(), "console socket left behind");
    assert!(!api.exists(), "API socket left behind");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A console client that connects and never reads while the guest prints
/// 10 MiB cannot stall the VM: pause, resume and shutdown each answer
/// within a second, the guest keeps running (its output is dropped and
/// counted once the client's socket and the VMM's queue are full), and the
/// VMM exits 0.
#[test]
fn a_console_client_that_never_reads_cannot_stall_the_vm() {
    const MIB: u64 = 10;
    let dir = scratch_dir("console-stall");
    let (console, api) = (dir.join("console.sock"), dir.join("api.sock"));
    let mut child = Command::new(vmm_binary())
        .arg("--kernel")
        .arg(probe_elf())
        .args([
            "--memory",
            "64M",
            "--cmdline",
            &format!("probe.spam={MIB} probe.tick"),
        ])
        .arg(format!("--serial=socket:{}", console.display()))
        .arg("--api-socket")
        .arg(&api)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _silent = connect(&console, Duration::from_secs(10));
    let stats = |field: &str| -> u64 {
        let (_, body) = api_call(&api, "GET", "/vm");
        let at = body
            .find(&format!("\"{field}\":"))
            .expect("console stats in GET /vm");
        body[at + field.len() + 3..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    // The guest gets through all of it although nobody reads.
    wait_for("10 MiB of guest output", Duration::from_secs(300), || {
        stats("written") >= MIB << 20
    });
    assert!(
        stats("dropped") > 0,
        "nothing was dropped, so nothing was tested"
    );
    for (method, path, code) in [("PUT", "/vm/pause", 204), ("PUT", "/vm/resume", 204)] {
        let start = Instant::now();
        assert_eq!(api_call(&api, method, path).0, code, "{path}");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{path} took {:?}",
            start.elapsed()
        );
    }
    let start = Instant::now();
    assert_eq!(api_call(&api, "PUT", "/vm/shutdown").0, 204);
    let status = wait_with_deadline(&mut child, Duration::from_secs(5));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "shutdown took {:?}",
        start.elapsed()
    );
    assert_eq!(status.code(), Some(0));
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--serial-client-fd` and `--ready-fd`, as the agent starts a VM: the
/// console connection exists before the VMM does, so the guest runs at
/// once (no --paused) and not a byte is lost; "ready" arrives on the pipe;
/// the socket still takes later clients.
#[test]
fn a_console_client_handed_over_at_spawn_sees_the_first_byte() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let dir = scratch_dir("console-handoff");
    let socket = dir.join("console.sock");
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let (mut ready, vmm_ready) = UnixStream::pair().unwrap();
    let fds = [theirs.as_raw_fd(), vmm_ready.as_raw_fd()];
    let mut cmd = ticking_probe(&socket);
    cmd.args(["--serial-client-fd", &fds[0].to_string()])
        .args(["--ready-fd", &fds[1].to_string()]);
    // SAFETY: fcntl is async-signal-safe; it clears close-on-exec on two
    // descriptors the child is to inherit.
    unsafe {
        cmd.pre_exec(move || {
            for fd in fds {
                libc::fcntl(fd, libc::F_SETFD, 0);
            }
            Ok(())
        });
    }
    let mut vmm = cmd.spawn().unwrap();
    drop((theirs, vmm_ready));
    assert_eq!(
        read_ready(&mut ready),
        "ready\n",
        "the VMM says it is up, then closes the pipe"
    );
    let seen = read_until(&mut ours, "PROBE tick", Duration::from_secs(30));
    assert!(
        seen.starts_with("PROBE start"),
        "the first byte reached the handed-over client: {seen:?}"
    );
    // A later client replaces it, as for any socket console.
    let mut later = connect(&socket, Duration::from_secs(5));
    read_until(&mut later, "PROBE tick", Duration::from_secs(30));
    let _ = vmm.kill();
    let _ = vmm.wait();
    let _ = std::fs::remove_dir_all(dir);
}

/// The handed-over client's supervisor dies while another process (the
/// jailer did) still holds a copy of the VMM's end, and the next client's
/// socket gets the same fd number in the VMM. epoll watches open file
/// descriptions, so the first connection's end of input stayed reported
/// under that number and the event loop blocked reading the new client:
/// the API then answered 503. It must go on answering, and the new client
/// must get the console.
#[test]
fn a_handed_over_client_that_leaves_does_not_stall_the_event_loop() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let dir = scratch_dir("console-handoff-leaves");
    let socket = dir.join("console.sock");
    let api = dir.join("api.sock");
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (mut ready, vmm_ready) = UnixStream::pair().unwrap();
    let (client_fd, ready_fd) = (theirs.as_raw_fd(), vmm_ready.as_raw_fd());
    // The client as fd 3, the VMM's lowest free number once it closes it:
    // the next client accepted gets 3 again.
    let mut cmd = ticking_probe(&socket);
    cmd.arg("--api-socket")
        .arg(&api)
        .args(["--serial-client-fd", "3", "--ready-fd", "4"]);
    // SAFETY: dup2 and fcntl are async-signal-safe; they place the two
    // descriptors the child inherits at 3 and 4, without close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            // Copies above 10 first (closed at exec), so neither dup2 can
            // overwrite the other's source or be a no-op keeping CLOEXEC.
            let client = libc::fcntl(client_fd, libc::F_DUPFD_CLOEXEC, 10);
            let ready = libc::fcntl(ready_fd, libc::F_DUPFD_CLOEXEC, 10);
            if client < 0 || ready < 0 || libc::dup2(client, 3) != 3 || libc::dup2(ready, 4) != 4 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut vmm = cmd.spawn().unwrap();
    drop(vmm_ready);
    assert_eq!(read_ready(&mut ready), "ready\n");
    // `theirs` stays open here, as the jailer's copy did.
    drop(ours);
    std::thread::sleep(Duration::from_millis(300));
    let mut later = connect(&socket, Duration::from_secs(5));
    read_until(&mut later, "PROBE tick", Duration::from_secs(30));
    for _ in 0..3 {
        let (status, body) = api_call(&api, "GET", "/vm");
        assert_eq!(status, 200, "the event loop stopped answering: {body}");
    }
    read_until(&mut later, "PROBE tick", Duration::from_secs(30));
    drop(theirs);
    let _ = vmm.kill();
    let _ = vmm.wait();
    let _ = std::fs::remove_dir_all(dir);
}
