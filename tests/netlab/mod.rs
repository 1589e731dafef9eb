//! A throwaway network namespace and a frame echo on an AF_PACKET socket,
//! for the virtio-net tests. The namespace (and every link in it) is
//! deleted when the guard drops, also when a test panics.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vireo_tests::{probe_elf, run_captured, vmm_binary, RunResult};

/// The probe's EtherType (firmware/probe/src/net.rs).
pub const ETHERTYPE: u16 = 0x88b5;

/// A network namespace named uniquely for this process and `tag`.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!("vireo-{}-{tag}", std::process::id());
        // A namespace left by a killed run of this pid would make `add` fail.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run("ip", &["netns", "add", &name]);
        Self { name }
    }

    /// Runs `ip ARGS` inside the namespace; panics on failure.
    pub fn ip(&self, args: &str) {
        let mut all = vec!["-n", &self.name];
        all.extend(args.split_whitespace());
        run("ip", &all);
    }

    /// An interface's MAC address, read inside the namespace.
    pub fn mac(&self, ifname: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "cat"])
            .arg(format!("/sys/class/net/{ifname}/address"))
            .output()
            .unwrap();
        assert!(out.status.success(), "no interface {ifname}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Runs the probe in vireo-vmm inside the namespace.
    /// `inherit` is an fd the VMM gets (for `--net fd=N`); only the child
    /// sees it without close-on-exec.
    pub fn run_probe(
        &self,
        cmdline: &str,
        net: &str,
        inherit: Option<RawFd>,
        timeout: Duration,
    ) -> RunResult {
        let mut cmd = self.probe_command(cmdline, net, inherit);
        cmd.args(["--serial", "stdio"]);
        run_captured(&mut cmd, timeout)
    }

    /// The vireo-vmm command line `run_probe` runs, for callers that add
    /// their own options (serial, API socket) and spawn it themselves.
    pub fn probe_command(&self, cmdline: &str, net: &str, inherit: Option<RawFd>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(vmm_binary())
            .args(["--kernel", probe_elf().to_str().unwrap()])
            .args(["--memory", "64M", "--cmdline", cmdline])
            .args(["--net", net]);
        if let Some(fd) = inherit {
            // SAFETY: fcntl is async-signal-safe; it touches only the child's fd table.
            unsafe {
                cmd.pre_exec(move || match libc::fcntl(fd, libc::F_SETFD, 0) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
        }
        cmd
    }
}

/// A namespace with a bridge joining the tap `vtap0` and `veth0`; the
/// echo listens on its peer `veth1`.
pub fn bridge_with_tap(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.ip("link add br0 type bridge");
    ns.ip("tuntap add dev vtap0 mode tap");
    ns.ip("link add veth0 type veth peer name veth1");
    ns.ip("link set vtap0 master br0");
    ns.ip("link set veth0 master br0");
    for dev in ["br0", "vtap0", "veth0", "veth1"] {
        ns.ip(&format!("link set {dev} up"));
    }
    ns
}

/// Opens the tap `name` inside namespace `ns` the way a management layer
/// would before passing it to the VMM: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR.
pub fn open_tap(ns: &Netns, name: &str) -> File {
    let (ns, name) = (ns.name.clone(), name.to_string());
    std::thread::spawn(move || -> Result<File, String> {
        enter_netns(&ns)?;
        let tun = File::options()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| e.to_string())?;
        // struct ifreq: the name, then the flags (short), padded to 40 bytes.
        let mut req = [0u8; 40];
        req[..name.len()].copy_from_slice(name.as_bytes());
        let flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        req[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes the 40-byte ifreq we own.
        if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, req.as_mut_ptr()) } != 0 {
            return Err(os_err("TUNSETIFF"));
        }
        Ok(tun)
    })
    .join()
    .unwrap()
    .expect("open the tap")
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn run(cmd: &str, args: &[&str]) {
    let status = Command::new(cmd).args(args).status().unwrap();
    assert!(status.success(), "{cmd} {} failed", args.join(" "));
}

/// What the echo saw: the sequence numbers, in arrival order.
pub struct EchoLog {
    pub seqs: Vec<u32>,
    pub error: Option<String>,
}

/// A running echo; `finish` stops it and returns what it saw.
pub struct EchoThread {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<EchoLog>,
}

impl EchoThread {
    /// Call once the guest is done: an echo still waiting for frames then
    /// gives up instead of waiting out its timeout.
    pub fn finish(self) -> EchoLog {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// Echoes every probe frame that arrives on `ifname` in namespace `ns`
/// back to its sender (from `own_mac`, the interface's address; payload
/// unchanged) until `count` have come, `timeout` passes or it is finished.
pub fn spawn_echo(ns: &Netns, ifname: &str, count: usize, timeout: Duration) -> EchoThread {
    let own_mac = parse_mac(&ns.mac(ifname)).expect("interface MAC");
    let (ns, ifname) = (ns.name.clone(), ifname.to_string());
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut log = EchoLog {
            seqs: Vec::with_capacity(count),
            error: None,
        };
        let to = Echo {
            ifname: &ifname,
            own_mac,
            count,
            timeout,
            stop: &stopped,
        };
        if let Err(e) = echo(&ns, &to, &mut log.seqs) {
            log.error = Some(e);
        }
        log
    });
    EchoThread { stop, thread }
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// This thread only: enter namespace `ns`.
pub fn enter_netns(ns: &str) -> Result<(), String> {
    let f = File::open(format!("/run/netns/{ns}")).map_err(|e| e.to_string())?;
    // SAFETY: setns on an fd we own; it changes only this thread's namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(os_err("setns"));
    }
    Ok(())
}

/// An AF_PACKET socket for the probe's EtherType, bound to `ifname`.
fn packet_socket(ifname: &str) -> Result<OwnedFd, String> {
    packet_socket_for(ifname, ETHERTYPE)
}

/// An AF_PACKET socket for `ethertype` (ETH_P_ALL: every frame, also the
/// ones the host sends on the link), bound to `ifname`, 200 ms receive
/// timeout.
pub fn packet_socket_for(ifname: &str, ethertype: u16) -> Result<OwnedFd, String> {
    let proto = ethertype.to_be();
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    if fd < 0 {
        return Err(os_err("socket(AF_PACKET)"));
    }
    // SAFETY: the fd is new and ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = CString::new(ifname).unwrap();
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(os_err(ifname));
    }
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = index as i32;
    // SAFETY: addr is a sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(os_err("bind"));
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: a timeval of the size given.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    Ok(fd)
}

struct Echo<'a> {
    ifname: &'a str,
    own_mac: [u8; 6],
    count: usize,
    timeout: Duration,
    stop: &'a AtomicBool,
}

fn echo(ns: &str, to: &Echo, seqs: &mut Vec<u32>) -> Result<(), String> {
    enter_netns(ns)?;
    let sock = packet_socket(to.ifname)?;
    let (count, timeout) = (to.count, to.timeout);
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    while seqs.len() < count {
        if start.elapsed() > timeout {
            return Err(format!("timeout after {} frames", seqs.len()));
        }
        if to.stop.load(Ordering::SeqCst) {
            return Err(format!("the guest stopped after {} frames", seqs.len()));
        }
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ) {
                continue;
            }
            return Err(format!("recv: {e}"));
        }
        let frame = &mut buf[..n as usize];
        if frame.len() < 18 {
            continue;
        }
        seqs.push(u32::from_be_bytes(frame[14..18].try_into().unwrap()));
        // Back to the sender, from us.
        let sender: [u8; 6] = frame[6..12].try_into().unwrap();
        frame[..6].copy_from_slice(&sender);
        frame[6..12].copy_from_slice(&to.own_mac);
        // SAFETY: frame is readable for its length.
        let sent = unsafe { libc::send(sock.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if sent != frame.len() as isize {
            return Err(os_err("send"));
        }
    }
    Ok(())
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    Some(mac)
}
