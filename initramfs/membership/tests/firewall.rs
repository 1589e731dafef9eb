//! The totem port's nftables rules, loaded for real in a network namespace
//! of this test's own (needs root and nft): a datagram from a nodelist
//! address reaches the port, one from any other address does not, and
//! other ports are untouched.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use vireo_membership::{config, firewall};

const CONF: &str = "totem {\n\tversion: 2\n\tcluster_name: fw\n\ttransport: udpu\n\tinterface {\n\t\tlinknumber: 0\n\t\tmcastport: 5405\n\t}\n}\n\
nodelist {\n\tnode {\n\t\tring0_addr: 10.77.0.1\n\t\tnodeid: 1\n\t}\n\tnode {\n\t\tring0_addr: 10.77.0.2\n\t\tnodeid: 2\n\t}\n}\n\
quorum {\n\tprovider: corosync_votequorum\n}\n";

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether a datagram from `from` reaches `to`.
fn delivered(from: &str, to: SocketAddr) -> bool {
    let rx = UdpSocket::bind(to).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let tx = UdpSocket::bind(format!("{from}:0")).unwrap();
    tx.send_to(b"totem?", to).unwrap();
    let mut buf = [0u8; 16];
    rx.recv_from(&mut buf).is_ok()
}

#[test]
fn only_nodelist_addresses_reach_the_totem_port() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (a network namespace, nft)"
    );
    // A thread of its own: unshare(CLONE_NEWNET) moves only this thread,
    // and the programs it starts, into the new namespace.
    std::thread::spawn(|| {
        // SAFETY: unshare on the calling thread only.
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "{}",
            std::io::Error::last_os_error()
        );
        run(&["ip", "link", "set", "lo", "up"]);
        run(&["ip", "addr", "add", "10.77.0.1/8", "dev", "lo"]);
        let totem: SocketAddr = "10.77.0.1:5405".parse().unwrap();
        let other: SocketAddr = "10.77.0.1:5406".parse().unwrap();
        assert!(
            delivered("10.77.0.9", totem),
            "without rules everything passes"
        );
        let conf = config::parse(CONF).unwrap();
        firewall::apply(&conf).unwrap();
        assert!(delivered("10.77.0.2", totem), "a member is refused");
        assert!(delivered("10.77.0.1", totem), "this node is refused");
        assert!(!delivered("10.77.0.9", totem), "a stranger gets through");
        assert!(delivered("10.77.0.9", other), "another port is blocked");
        // Applying again replaces the table (a node left: 10.77.0.2 is out).
        let smaller = CONF.replace("ring0_addr: 10.77.0.2", "ring0_addr: 10.77.0.3");
        firewall::apply(&config::parse(&smaller).unwrap()).unwrap();
        assert!(!delivered("10.77.0.2", totem));
        assert!(delivered("10.77.0.3", totem));
        firewall::remove().unwrap();
        assert!(delivered("10.77.0.9", totem), "rules left behind");
    })
    .join()
    .unwrap();
}

/// `nft list set` of the daemon's members, or "" without the table.
fn members_set() -> String {
    let out = Command::new("nft")
        .args(["list", "set", "inet", firewall::TABLE, "members"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_daemon_keeps_the_rules_in_step_with_its_nodelist() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
    let dir = std::env::temp_dir().join(format!("vireo-fw-daemon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("corosync.conf");
    std::fs::write(&conf, CONF).unwrap();
    let dir2 = dir.clone();
    std::thread::spawn(move || {
        // SAFETY: unshare on the calling thread only (see above).
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        run(&["ip", "link", "set", "lo", "up"]);
        run(&["ip", "addr", "add", "10.77.0.1/8", "dev", "lo"]);
        let mut daemon = Command::new(env!("CARGO_BIN_EXE_vireo-membershipd"))
            .args(["-f", "-c"])
            .arg(&conf)
            .env("VIREO_MEMBERSHIP_FIREWALL", "on")
            .env("VIREO_MEMBERSHIP_SOCKET", dir2.join("status.sock"))
            .env("VIREO_MEMBERSHIP_GROUP_SOCKET", dir2.join("groups.sock"))
            .env("VIREO_MEMBERSHIP_STATE_DIR", &dir2)
            .env("VIREO_MEMBERSHIP_JOIN_PORT", "0")
            .spawn()
            .unwrap();
        wait_until("the rules at start", || members_set().contains("10.77.0.2"));
        // The nodelist changes (10.77.0.2 out, 10.77.0.3 in) and is re-read.
        std::fs::write(&conf, CONF.replace("10.77.0.2", "10.77.0.3")).unwrap();
        run(&["kill", "-HUP", &daemon.id().to_string()]);
        wait_until("the rules after the reload", || {
            let set = members_set();
            set.contains("10.77.0.3") && !set.contains("10.77.0.2")
        });
        // Stopped: the table goes with it.
        run(&["kill", "-TERM", &daemon.id().to_string()]);
        daemon.wait().unwrap();
        assert_eq!(members_set(), "", "rules left behind");
    })
    .join()
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
