//! Node-to-node mutual TLS (issue 17): three nodes formed by `vireo cluster
//! create` and `vireo cluster join` (which make the cluster CA and give
//! every node a certificate it signed), their agents serving TLS with
//! those certificates. Checked: only the creating node keeps the CA key;
//! a request for node 1's VM made to node 3 is forwarded (node 3 presents
//! its certificate, node 1 asks for one); a client without a certificate
//! of the cluster's is refused on the node-to-node routes (plain HTTP: 400;
//! TLS without a client certificate: 403; a self-signed client certificate:
//! the handshake fails); a live migration, asked through `vireo vm migrate`
//! run on node 3 (the CLI trusts the cluster CA it finds there), moves the
//! VM over mutual TLS (control calls and the VMMs' `tls://` channel) and
//! its guest goes on. The VMMs run jailed (`--jail on`), as on a cluster
//! node: the destination's, checked from the host, is a uid of its own in
//! its own mount and PID namespaces, with the node's TLS files in its jail
//! (the key a copy of its own), and the source's jail is gone. A user known to one node only acts on another's VM
//! through it (the node vouches for her), and nobody else can vouch.
//!
//! Needs root, /dev/kvm, VIREO_VMM and VIREO_PROBE (`make test-cluster`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use vireo_cluster_tests::agents::{
    client_config, exchange, parse_response, relay, request_text, vmm_copies, vmm_processes,
    Fencing, ADMIN_TOKEN,
};
use vireo_cluster_tests::formation::cli;
use vireo_cluster_tests::ha_lab::{counters, Lab};
use vireo_cluster_tests::wait_until;

const WAIT: Duration = Duration::from_secs(60);

/// What the probe's disk-writing counter prints.
const GEN: &str = "blk stress gen=";

fn cmdline(proc_dir: &Path) -> String {
    let c = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&c).replace('\0', " ")
}

/// `Key:` of /proc/PID/status.
fn status_field(proc_dir: &Path, key: &str) -> String {
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key));
    line.map_or(String::new(), |l| l[key.len()..].trim().to_string())
}

#[test]
fn nodes_call_each_other_over_mutual_tls_and_other_clients_are_refused_there() {
    let lab = Lab::start_tls(Fencing {
        watchdog_timeout_ms: 4000,
        margin_ms: 1500,
    });
    for (i, node) in lab.c.nodes.iter().enumerate() {
        let tls = node.dir.join("tls");
        assert!(tls.join("node.crt").exists() && tls.join("ca.crt").exists());
        assert_eq!(tls.join("ca.key").exists(), i == 0, "node {i}");
    }
    let namespaces = lab.namespaces();
    let w = lab.watch();
    let uuid = lab.start_seen_by(&w, 0, "mover", 2);

    // Forwarded: node 3 asks node 1, over mutual TLS.
    let vm = lab.agent(2).ok("GET", "/vms/mover", None, 200).unwrap();
    assert_eq!(
        (vm["state"].as_str(), vm["uuid"].as_str()),
        (Some("running"), Some(uuid.as_str()))
    );

    // The console WebSocket of node 1's VM, opened on node 3 (whose agent
    // opens it on node 1's with its own certificate).
    console_over_tls(&lab, 2, "mover");
    users_of_one_node_act_through_it(&lab);

    // Clients without a cluster certificate, on node 1's node-to-node routes.
    let owner = lab.agent(0);
    let (ns, addr) = (owner.namespace.as_str(), owner.addr);
    let forwarded = request_text(
        addr,
        "GET",
        "/vms/mover",
        None,
        &[("x-vireo-forwarded", "3")],
    );
    let plain = parse_response(&exchange(ns, addr, forwarded.clone(), None).unwrap()).unwrap();
    assert!(
        plain.0 == 400 && plain.1.contains("HTTPS only"),
        "{plain:?}"
    );
    let user = owner.tls.clone();
    let no_cert = parse_response(&exchange(ns, addr, forwarded.clone(), user.clone()).unwrap());
    let (status, text) = no_cert.unwrap();
    assert!(
        status == 403 && text.contains("cluster CA"),
        "{status} {text}"
    );
    let incoming = request_text(addr, "POST", "/cluster/incoming", Some("{}"), &[]);
    let (status, text) =
        parse_response(&exchange(ns, addr, incoming, user.clone()).unwrap()).unwrap();
    assert!(
        status == 403 && text.contains("cluster CA"),
        "{status} {text}"
    );
    // The same requests are a user's own without the header: allowed.
    let own = request_text(addr, "GET", "/vms/mover", None, &[]);
    let (status, _) = parse_response(&exchange(ns, addr, own, user).unwrap()).unwrap();
    assert_eq!(status, 200);
    // A self-signed client certificate: no handshake.
    let intruder = rcgen::generate_simple_self_signed(vec!["node9".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(intruder.key_pair.serialize_der().into());
    let ca = lab.c.nodes[0].dir.join("tls/ca.crt");
    let forged = client_config(&ca, Some((vec![intruder.cert.der().clone()], key))).unwrap();
    let refused = exchange(ns, addr, forwarded, Some(forged));
    assert!(refused.is_err(), "{refused:?}");
    eprintln!("self-signed client certificate: {}", refused.unwrap_err());

    // The migration, by the CLI on node 3 (it trusts the cluster CA there).
    let before = std::fs::read_to_string(owner.console_log(&uuid)).unwrap();
    let last_before = *counters(&before, GEN)
        .last()
        .expect("generations on node 1");
    let host = format!("https://{}", lab.agent(2).addr);
    let out = cli(
        &lab.c.nodes[2],
        &["vm", "migrate", "mover", "node3", "--json", "--host", &host],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let result: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    eprintln!("migration over mutual TLS: {result}");
    assert_eq!(result["node"], "node3", "{result}");
    lab.wait_running_on(&w, &["mover"], &[2], "mover runs on node 3");
    assert_eq!(vmm_copies(&namespaces, &uuid), vec![2]);
    the_vmm_is_jailed_with_the_nodes_tls_files(&lab, &uuid);
    // The source's jail went with its VMM, the copy of node 1's key in it too.
    let source_jail = owner.dir.join("run/jail").join(&uuid);
    wait_until(WAIT, "node 1's jail to be removed", || {
        (!source_jail.exists())
            .then_some(())
            .ok_or(format!("{} still there", source_jail.display()))
    })
    .unwrap();
    let log = lab.agent(2).console_log(&uuid);
    let there = wait_until(WAIT, "the guest to write on at node 3", || {
        let g = counters(&std::fs::read_to_string(&log).unwrap_or_default(), GEN);
        (g.len() > 1).then_some(g.clone()).ok_or(format!("{g:?}"))
    })
    .unwrap()
    .0;
    assert!(there[0] >= last_before, "{there:?} after {last_before}");
}

/// Node 3's VMM of `uuid` took the VM on a tls:// channel with the node's
/// certificate and CA (bound read-only into its jail) and key (a copy in
/// the jail's tmpfs, the VM uid's, 0400), and runs confined: as a uid of
/// its own, not root, PID 1 of its PID namespace, in a mount namespace
/// other than the host's. All checked from the host through /proc.
fn the_vmm_is_jailed_with_the_nodes_tls_files(lab: &Lab, uuid: &str) {
    let vmms = vmm_processes(uuid);
    assert_eq!(vmms.len(), 1, "{vmms:?}");
    let vmm = &vmms[0];
    let line = cmdline(vmm);
    for arg in [
        "--incoming tls://",
        "--tls-cert /vm/node.crt",
        "--tls-key /vm/node.key",
        "--tls-ca /vm/ca.crt",
    ] {
        assert!(line.contains(arg), "{arg} in {line}");
    }
    let tls = lab.c.nodes[2].dir.join("tls");
    let jailer = cmdline(&Path::new("/proc").join(status_field(vmm, "PPid:")));
    for arg in [
        format!("--file={}", tls.join("node.crt").display()),
        format!("--file={}", tls.join("ca.crt").display()),
        format!("--private-file={}", tls.join("node.key").display()),
    ] {
        assert!(jailer.contains(&arg), "{arg} in {jailer}");
    }
    let uids: Vec<u32> = status_field(vmm, "Uid:")
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    assert!(
        uids.len() == 4 && uids.iter().all(|&u| u == uids[0] && u >= 1_000_000),
        "{uids:?}"
    );
    let nspid = status_field(vmm, "NSpid:");
    assert!(
        nspid.ends_with("\t1") || nspid.ends_with(" 1"),
        "NSpid: {nspid}"
    );
    let mnt = |p: &Path| std::fs::read_link(p.join("ns/mnt")).unwrap();
    assert_ne!(mnt(vmm), mnt(Path::new("/proc/self")), "mount namespace");
    // The key in the jail: the node's, readable by the VM's uid alone.
    let key = vmm.join("root/vm/node.key");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uids[0], 0o400));
    assert_eq!(
        std::fs::read(&key).unwrap(),
        std::fs::read(tls.join("node.key")).unwrap()
    );
    eprintln!(
        "node 3's VMM: uid {}, NSpid {nspid}, mount namespace {:?}",
        uids[0],
        mnt(vmm)
    );
}

/// A user whom only node 3 knows (an operator who logged in there) acts on
/// node 1's VM through node 3, which vouches for her over mutual TLS; node
/// 1 itself does not know her session (401). A client without a cluster
/// certificate cannot vouch for anybody: an operator's token with a header
/// claiming an admin stays an operator (403 on the users).
fn users_of_one_node_act_through_it(lab: &Lab) {
    let (node1, node3) = (lab.agent(0), lab.agent(2));
    let olga = serde_json::json!({"name": "olga", "password": "olga-pw-1", "role": "operator"});
    node3
        .ok("POST", "/auth/users", Some(&olga.to_string()), 201)
        .unwrap();
    let login = r#"{"user": "olga", "password": "olga-pw-1"}"#;
    let session = node3.ok("POST", "/auth/login", Some(login), 200).unwrap();
    let session = session["token"].as_str().unwrap();
    let (status, text) = node3
        .call_as(session, "GET", "/vms/mover", None, &[])
        .unwrap();
    assert_eq!(status, 200, "olga through node 3: {text}");
    let (status, text) = node1
        .call_as(session, "GET", "/vms/mover", None, &[])
        .unwrap();
    assert_eq!(status, 401, "olga's node-3 session at node 1: {text}");

    let operator = node1
        .ok("POST", "/auth/tokens", Some(r#"{"role": "operator"}"#), 201)
        .unwrap();
    let operator = operator["token"].as_str().unwrap();
    let admin = br#"{"user":"eve","role":"admin","tenant":null}"#;
    let claim: String = admin.iter().map(|b| format!("{b:02x}")).collect();
    let claimed = [("x-vireo-caller", claim.as_str())];
    let (status, text) = node1
        .call_as(operator, "GET", "/auth/users", None, &claimed)
        .unwrap();
    assert_eq!(status, 403, "an operator claiming to be an admin: {text}");
}

/// Node `via`'s console WebSocket of `vm` (another node's), over TLS as a
/// user's browser opens it: the answer names the owner, and the probe's
/// counter lines arrive through the two nodes' mutual TLS.
fn console_over_tls(lab: &Lab, via: usize, vm: &str) {
    let agent = lab.agent(via);
    let config = agent.tls.clone().expect("a TLS lab");
    let at = relay(&agent.namespace, agent.addr).unwrap();
    let tcp = std::net::TcpStream::connect(at).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let name = rustls::pki_types::ServerName::from(agent.addr.ip());
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let stream = rustls::StreamOwned::new(conn, tcp);
    let url = format!(
        "wss://{}/vms/{vm}/console?replay=2048&token={ADMIN_TOKEN}",
        agent.addr
    );
    let (mut ws, answer) =
        tungstenite::client(url.as_str(), stream).unwrap_or_else(|e| panic!("{url}: {e}"));
    let from = answer
        .headers()
        .get("x-vireo-node")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(from.as_deref(), Some("1"), "the answering node");
    let mut seen = String::new();
    while !seen.contains(GEN) {
        match ws.read() {
            Ok(tungstenite::Message::Binary(b)) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(_) => {}
            Err(e) => panic!("the console closed: {e} after {seen:?}"),
        }
    }
    eprintln!(
        "console of {vm} through node {} over mutual TLS: {} bytes",
        via + 1,
        seen.len()
    );
}
