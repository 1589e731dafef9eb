//! vireo: the command-line client of a Vireo node's agent.

mod backup;
mod cluster;
mod cluster_admin;
mod cluster_nodes;
mod format;
mod http;
mod login;
mod net;
mod node_net;
mod progress;
mod storage;
mod token;
mod vm;
mod vm_console;
mod vm_migrate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vireo_agent::types::{ErrorBody, NodeInfo, VmmSelftest};

const DEFAULT_PORT: u16 = 8006;

#[derive(Parser)]
#[command(name = "vireo", version, about = "Vireo hypervisor node client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    trust: token::Trust,
}

#[derive(Subcommand)]
enum Command {
    /// The node itself.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// The node's VMs: define, start, shutdown, console, ...
    Vm(Box<vm::VmArgs>),
    /// Log in to the node's agent; the session token is kept for it.
    Login {
        #[command(flatten)]
        conn: storage::Conn,
        #[command(flatten)]
        args: login::LoginArgs,
    },
    /// API tokens: create (the secret is shown once), list, delete.
    Token {
        #[command(flatten)]
        conn: storage::Conn,
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// The cluster this node is a member of.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Storage pools: directories and NFS exports.
    Pool {
        #[command(flatten)]
        conn: storage::Conn,
        #[command(subcommand)]
        command: storage::PoolCommand,
    },
    /// Volumes: create, resize, convert, clone, snapshots, upload, download.
    Vol {
        #[command(flatten)]
        conn: storage::Conn,
        #[command(subcommand)]
        command: storage::VolCommand,
    },
    /// Back up a VM (`vireo backup VM --storage POOL`), list, restore, verify.
    Backup {
        #[command(flatten)]
        conn: storage::Conn,
        #[command(flatten)]
        args: backup::BackupArgs,
    },
    /// VM templates: mark one, clone it.
    Template {
        #[command(flatten)]
        conn: storage::Conn,
        #[command(subcommand)]
        command: backup::TemplateCommand,
    },
    /// Networks: bridge, nat, isolated, private, macvtap; DHCP leases.
    Net {
        #[command(flatten)]
        conn: storage::Conn,
        #[command(subcommand)]
        command: net::NetCommand,
    },
    /// Long operations on the node: follow or cancel them.
    Task {
        #[command(flatten)]
        conn: storage::Conn,
        #[command(subcommand)]
        command: backup::TaskCommand,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Membership and quorum, laid out as `corosync-quorumtool -s` prints them.
    Status {
        /// The membership service's status socket.
        #[arg(long, env = "VIREO_MEMBERSHIP_SOCKET", default_value = cluster::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the service's JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Form a new cluster with this node as its first member; prints the token.
    Create {
        /// The cluster's name.
        #[arg(value_name = "NAME")]
        cluster: String,
        #[command(flatten)]
        at: cluster_admin::Where,
        #[command(flatten)]
        me: cluster_admin::Identity,
        /// totem.token in ms (corosync's default, 3000, when not given).
        #[arg(long)]
        token_ms: Option<u32>,
    },
    /// Join the cluster of the member at ADDR[:PORT].
    Join {
        member: String,
        #[arg(long, env = "VIREO_JOIN_TOKEN")]
        token: String,
        #[command(flatten)]
        at: cluster_admin::Where,
        #[command(flatten)]
        me: cluster_admin::Identity,
    },
    /// Print the token that lets other nodes join.
    Token {
        #[command(flatten)]
        at: cluster_admin::Where,
    },
    /// Every node of the cluster: state, uptime, load, CPU, memory, disk, VMs.
    Nodes {
        /// A member's agent: HOST or HOST:PORT (port 8006 by default).
        #[arg(long, env = "VIREO_HOST", default_value = "127.0.0.1")]
        host: String,
        #[arg(long)]
        json: bool,
    },
    /// Leave the cluster: every member drops this node from its nodelist.
    Leave {
        #[command(flatten)]
        at: cluster_admin::Where,
        /// The membership service's group socket.
        #[arg(long, env = "VIREO_MEMBERSHIP_GROUP_SOCKET", default_value = vireo_cluster::client::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// What the node is: name, CPUs, memory, kernel, KVM.
    Info {
        /// The node's agent: HOST or HOST:PORT (port 8006 by default).
        #[arg(long, env = "VIREO_HOST", default_value = "127.0.0.1")]
        host: String,
        /// Print the agent's JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Boot the probe guest under vireo-vmm on the node and print its
    /// report; fails unless the probe finished ok.
    Selftest {
        /// The node's agent: HOST or HOST:PORT (port 8006 by default).
        #[arg(long, env = "VIREO_HOST", default_value = "127.0.0.1")]
        host: String,
        /// Print the agent's JSON instead of the report.
        #[arg(long)]
        json: bool,
    },
    /// Maintenance: NODE takes no new VMs, and every running VM of it is
    /// live-migrated away, each to the other online node with the most
    /// free memory.
    Drain {
        /// The node to empty: its name or id.
        node: String,
        /// Any node's agent: HOST or HOST:PORT (port 8006 by default).
        #[arg(long, env = "VIREO_HOST", default_value = "127.0.0.1")]
        host: String,
        /// shared: every node sees the disks; copy: they go along.
        #[arg(long, default_value = "shared", value_parser = ["shared", "copy"])]
        disks: String,
        /// Print JSON (what moved where).
        #[arg(long)]
        json: bool,
    },
    /// The node's own bonds and VLANs, made at boot before vmbr0.
    Net {
        #[command(flatten)]
        conn: storage::Conn,
        #[command(subcommand)]
        command: node_net::NodeNetCommand,
    },
    /// End maintenance: NODE takes new VMs again.
    Undrain {
        /// The node: its name or id.
        node: String,
        /// Any node's agent: HOST or HOST:PORT (port 8006 by default).
        #[arg(long, env = "VIREO_HOST", default_value = "127.0.0.1")]
        host: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    token::set_trust(cli.trust);
    let result = match cli.command {
        Command::Node {
            command: NodeCommand::Info { host, json },
        } => node_info(&host, json),
        Command::Node {
            command: NodeCommand::Selftest { host, json },
        } => node_selftest(&host, json),
        Command::Node {
            command:
                NodeCommand::Drain {
                    node,
                    host,
                    disks,
                    json,
                },
        } => vm_migrate::drain(&host, &node, &disks, json),
        Command::Node {
            command: NodeCommand::Undrain { node, host },
        } => vm_migrate::undrain(&host, &node),
        Command::Node {
            command: NodeCommand::Net { conn, command },
        } => node_net::run(&conn, command),
        Command::Cluster {
            command: ClusterCommand::Status { socket, json },
        } => cluster::status_text(&socket, json).and_then(|text| print_out(&text)),
        Command::Cluster { command } => cluster_command(command).and_then(|t| print_out(&t)),
        Command::Pool { conn, command } => storage::pool(&conn, command),
        Command::Vol { conn, command } => storage::vol(&conn, command),
        Command::Backup { conn, args } => backup::backup(&conn, args),
        Command::Template { conn, command } => backup::template(&conn, command),
        Command::Task { conn, command } => backup::tasks(&conn, command),
        Command::Vm(args) => vm::run(*args),
        Command::Net { conn, command } => net::run(&conn, command),
        Command::Login { conn, args } => login::run(&conn, args),
        Command::Token { conn, command } => token::run(&conn, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vireo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cluster_command(c: ClusterCommand) -> Result<String, String> {
    match c {
        ClusterCommand::Create {
            cluster,
            at,
            me,
            token_ms,
        } => cluster_admin::create(&at, &me, &cluster, token_ms),
        ClusterCommand::Join {
            member,
            token,
            at,
            me,
        } => cluster_admin::join(&at, &me, &member, &token),
        ClusterCommand::Token { at } => cluster_admin::token(&at),
        ClusterCommand::Leave { at, socket } => cluster_admin::leave(&at, &socket),
        ClusterCommand::Status { socket, json } => cluster::status_text(&socket, json),
        ClusterCommand::Nodes { host, json } => {
            cluster_nodes::nodes(&host, json).map(|()| String::new())
        }
    }
}

fn node_info(host: &str, json: bool) -> Result<(), String> {
    let body = call(&base_url(host), "GET", "/node", Duration::from_secs(10))?;
    let info: NodeInfo = serde_json::from_str(&body)
        .map_err(|e| format!("unexpected answer from the agent: {e}"))?;
    let text = match json {
        true => serde_json::to_string_pretty(&info).map_err(|e| e.to_string())? + "\n",
        false => format::node_info(&info),
    };
    print_out(&text)
}

fn node_selftest(host: &str, json: bool) -> Result<(), String> {
    // The agent's own limit is 120 s; an emulated node needs a few.
    let body = call(
        &base_url(host),
        "POST",
        "/selftest/vmm",
        Duration::from_secs(150),
    )?;
    let r: VmmSelftest = serde_json::from_str(&body)
        .map_err(|e| format!("unexpected answer from the agent: {e}"))?;
    let text = match json {
        true => serde_json::to_string_pretty(&r).map_err(|e| e.to_string())? + "\n",
        false => format::selftest(&r),
    };
    print_out(&text)?;
    match r.ok {
        true => Ok(()),
        false => Err("the VMM selftest failed".into()),
    }
}

/// Writes to stdout; a closed pipe (`vireo ... | head`) is not an error.
pub(crate) fn print_out(text: &str) -> Result<(), String> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("stdout: {e}")),
        _ => Ok(()),
    }
}

/// METHOD base+path; the body on 2xx, else the agent's error message.
fn call(base: &str, method: &str, path: &str, timeout: Duration) -> Result<String, String> {
    request(base, method, path, None, timeout)
}

/// METHOD base+path with an optional JSON body; the answer's body on 2xx,
/// else the agent's error message.
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<String, String> {
    let config = token::config_builder(base)
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let url = format!("{base}{path}");
    let json = "application/json";
    let sent = match (method, body) {
        ("POST", Some(b)) => agent.post(&url).content_type(json).send(b),
        ("POST", None) => agent.post(&url).send_empty(),
        ("PUT", b) => agent.put(&url).content_type(json).send(b.unwrap_or("")),
        ("DELETE", _) => agent.delete(&url).call(),
        _ => agent.get(&url).call(),
    };
    let mut resp = sent.map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = resp.status();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("reading the answer from {url}: {e}"))?;
    if status.is_success() {
        return Ok(body);
    }
    Err(format!("{url}: {}", error_text(&body, status.as_u16())))
}

/// The agent's error message, or the bare status.
pub fn error_text(body: &str, status: u16) -> String {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(e) => format!("{} ({})", e.error, e.status),
        Err(_) => format!("HTTP {status}"),
    }
}

/// HOST, HOST:PORT, [V6] or [V6]:PORT → http://HOST:PORT; an
/// `https://` prefix keeps HTTPS.
pub fn base_url(host: &str) -> String {
    if let Some(rest) = host.strip_prefix("https://") {
        return base_url(rest).replacen("http://", "https://", 1);
    }
    let host = host.trim_start_matches("http://").trim_end_matches('/');
    let has_port = match host.rsplit_once(':') {
        Some((h, p)) => p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']')),
        None => false,
    };
    if has_port {
        format!("http://{host}")
    } else if host.contains(':') && !host.starts_with('[') {
        format!("http://[{host}]:{DEFAULT_PORT}")
    } else {
        format!("http://{host}:{DEFAULT_PORT}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn urls() {
        assert_eq!(base_url("node1"), "http://node1:8006");
        assert_eq!(base_url("10.0.2.15:18006"), "http://10.0.2.15:18006");
        assert_eq!(base_url("http://node1:9000/"), "http://node1:9000");
        assert_eq!(base_url("::1"), "http://[::1]:8006");
        assert_eq!(base_url("[::1]"), "http://[::1]:8006");
        assert_eq!(base_url("[fe80::1]:8006"), "http://[fe80::1]:8006");
        assert_eq!(base_url("https://node1"), "https://node1:8006");
    }

    #[test]
    fn unreachable_is_an_error() {
        // Port 1 on loopback: nothing listens there.
        let e = call(
            "http://127.0.0.1:1",
            "GET",
            "/node",
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(e.contains("cannot reach"), "{e}");
    }
}
