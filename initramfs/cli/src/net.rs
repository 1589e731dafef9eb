//! `vireo net ...`: the node's networks and their DHCP leases.

use std::fmt::Write as _;

use clap::Subcommand;
use vireo_agent::net_types::{
    Forward, Lease, MacvtapMode, NetworkInfo, NetworkKind, NetworkSpec, Protocol, Reservation,
};

use crate::http::Client;
use crate::storage::Conn;

/// A kind or mode as the API spells it (`nat`, `vepa`), through serde so
/// the CLI cannot drift from the agent's types.
fn api_enum<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|e| format!("'{s}': {e}"))
}

#[derive(Subcommand)]
pub enum NetCommand {
    /// Every network: kind, bridge, subnet, whether it is up, guest ports.
    List,
    /// One network, with its guest ports.
    Show { name: String },
    /// Create a network (bridge over --uplink; nat with --subnet; isolated;
    /// private; macvtap on --uplink with --mode; overlay with --vni and --peer).
    Create {
        name: String,
        /// bridge, nat, isolated, private, macvtap or overlay.
        #[arg(long, value_parser = api_enum::<NetworkKind>)]
        kind: NetworkKind,
        #[arg(long)]
        uplink: Option<String>,
        #[arg(long)]
        vlan: Option<u16>,
        /// IPv4 subnet, e.g. 10.10.0.0/24 (the node is its first address).
        #[arg(long)]
        subnet: Option<String>,
        /// DHCP pool FIRST-LAST (default: the whole subnet but the gateway).
        #[arg(long)]
        dhcp_range: Option<String>,
        /// No DHCP server on this network.
        #[arg(long)]
        no_dhcp: bool,
        /// A static lease MAC=IP (repeatable).
        #[arg(long = "reserve")]
        reservations: Vec<String>,
        /// macvtap mode: bridge, vepa, private or passthru.
        #[arg(long, value_parser = api_enum::<MacvtapMode>)]
        mode: Option<MacvtapMode>,
        /// Overlay: the VXLAN id, the same on every node.
        #[arg(long)]
        vni: Option<u32>,
        /// Overlay: the other node's address.
        #[arg(long = "peer")]
        peers: Vec<String>,
        /// Overlay: a multicast group instead of a peer.
        #[arg(long)]
        group: Option<String>,
        /// Define it on every node of the cluster (each makes its own).
        #[arg(long)]
        cluster: bool,
    },
    /// Delete a network (refused while a VM names it).
    Delete { name: String },
    /// The DHCP leases the node handed out on a network.
    Leases { name: String },
    /// Port forwards of a nat network: add, list, remove.
    Forward {
        #[command(subcommand)]
        command: ForwardCommand,
    },
}

#[derive(Subcommand)]
pub enum ForwardCommand {
    /// `vireo net forward add NET --tenant T --node-port 20022 --to VM:22`
    Add {
        network: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        node_port: u16,
        /// VM:PORT or IP:PORT.
        #[arg(long)]
        to: String,
        #[arg(long)]
        udp: bool,
    },
    List {
        network: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    Remove {
        network: String,
        node_port: u16,
    },
}

pub fn run(conn: &Conn, command: NetCommand) -> Result<(), String> {
    let client = Client::new(&conn.host);
    let text = match command {
        NetCommand::List => {
            let nets: Vec<NetworkInfo> = client.json("GET", "/networks", None)?;
            output(conn, &nets, network_table)?
        }
        NetCommand::Show { name } => {
            let net: NetworkInfo = client.json("GET", &format!("/networks/{name}"), None)?;
            output(conn, &net, network_details)?
        }
        NetCommand::Create { .. } => {
            let spec = spec_of(command)?;
            let body = serde_json::to_value(&spec).map_err(|e| e.to_string())?;
            let net: NetworkInfo = client.json("POST", "/networks", Some(&body))?;
            output(conn, &net, network_details)?
        }
        NetCommand::Delete { name } => {
            client.call("DELETE", &format!("/networks/{name}"), None)?;
            format!("network '{name}' deleted\n")
        }
        NetCommand::Leases { name } => {
            let leases: Vec<Lease> =
                client.json("GET", &format!("/networks/{name}/leases"), None)?;
            output(conn, &leases, |l| lease_table(l))?
        }
        NetCommand::Forward { command } => forward(conn, &client, command)?,
    };
    crate::print_out(&text)
}

fn output<T: serde::Serialize + ?Sized>(
    conn: &Conn,
    value: &T,
    table: impl Fn(&T) -> String,
) -> Result<String, String> {
    match conn.json {
        true => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        false => Ok(table(value)),
    }
}

fn forward(conn: &Conn, client: &Client, command: ForwardCommand) -> Result<String, String> {
    match command {
        ForwardCommand::Add {
            network,
            tenant,
            node_port,
            to,
            udp,
        } => {
            let fwd = Forward {
                tenant,
                node_port,
                to,
                protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
                ip: None,
            };
            let body = serde_json::to_value(&fwd).map_err(|e| e.to_string())?;
            let added: Forward = client.json(
                "POST",
                &format!("/networks/{network}/forwards"),
                Some(&body),
            )?;
            output(conn, &added, |f| forward_table(std::slice::from_ref(f)))
        }
        ForwardCommand::List { network, tenant } => {
            let query = tenant.map(|t| format!("?tenant={t}")).unwrap_or_default();
            let all: Vec<Forward> =
                client.json("GET", &format!("/networks/{network}/forwards{query}"), None)?;
            output(conn, &all, |f| forward_table(f))
        }
        ForwardCommand::Remove { network, node_port } => {
            client.call(
                "DELETE",
                &format!("/networks/{network}/forwards/{node_port}"),
                None,
            )?;
            Ok(format!("forward of node port {node_port} removed\n"))
        }
    }
}

fn forward_table(all: &[Forward]) -> String {
    let mut out = format!(
        "{:<12} {:<6} {:<10} {:<22} GUEST\n",
        "TENANT", "PROTO", "NODE PORT", "TO"
    );
    for f in all {
        let _ = writeln!(
            out,
            "{:<12} {:<6} {:<10} {:<22} {}",
            f.tenant,
            format!("{:?}", f.protocol).to_lowercase(),
            f.node_port,
            f.to,
            f.ip.as_deref().unwrap_or("-")
        );
    }
    out
}

/// `A<sep>B` given to `flag`, or an error that shows the expected form.
fn pair(text: &str, sep: char, flag: &str, form: &str) -> Result<(String, String), String> {
    text.split_once(sep)
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .ok_or_else(|| format!("{flag} {text}: write it as {form}"))
}

fn spec_of(command: NetCommand) -> Result<NetworkSpec, String> {
    let NetCommand::Create {
        name,
        kind,
        uplink,
        vlan,
        subnet,
        dhcp_range,
        no_dhcp,
        reservations,
        mode,
        vni,
        peers,
        group,
        cluster,
    } = command
    else {
        unreachable!("spec_of is only called for create");
    };
    let dhcp_range = dhcp_range
        .map(|r| pair(&r, '-', "--dhcp-range", "FIRST-LAST"))
        .transpose()?;
    let reservations = reservations
        .iter()
        .map(|r| pair(r, '=', "--reserve", "MAC=IP").map(|(mac, ip)| Reservation { mac, ip }))
        .collect::<Result<_, _>>()?;
    Ok(NetworkSpec {
        name,
        kind,
        uplink,
        vlan,
        subnet,
        dhcp_range,
        dhcp: no_dhcp.then_some(false),
        reservations,
        macvtap_mode: mode,
        vni,
        peers,
        group,
        cluster,
    })
}

fn kind_name(k: NetworkKind) -> String {
    format!("{k:?}").to_lowercase()
}

fn network_table(nets: &Vec<NetworkInfo>) -> String {
    let mut out = format!(
        "{:<13} {:<9} {:<16} {:<19} {:<7} PORTS\n",
        "NAME", "KIND", "BRIDGE", "SUBNET", "STATE"
    );
    for n in nets {
        let _ = writeln!(
            out,
            "{:<13} {:<9} {:<16} {:<19} {:<7} {}",
            n.spec.name,
            kind_name(n.spec.kind),
            n.bridge.as_deref().unwrap_or("-"),
            n.spec.subnet.as_deref().unwrap_or("-"),
            if n.active { "up" } else { "down" },
            n.ports.len()
        );
    }
    out
}

fn network_details(n: &NetworkInfo) -> String {
    let mut out = String::new();
    let s = &n.spec;
    let _ = writeln!(out, "name:     {}", s.name);
    let _ = writeln!(out, "kind:     {}", kind_name(s.kind));
    let _ = writeln!(out, "state:    {}", if n.active { "up" } else { "down" });
    let rows = [
        ("bridge:  ", n.bridge.clone()),
        ("uplink:  ", s.uplink.clone()),
        ("vlan:    ", s.vlan.map(|v| v.to_string())),
        ("subnet:  ", s.subnet.clone()),
        ("gateway: ", n.gateway.clone()),
        (
            "mode:    ",
            s.macvtap_mode.map(|m| format!("{m:?}").to_lowercase()),
        ),
    ];
    for (label, value) in rows {
        if let Some(v) = value {
            let _ = writeln!(out, "{label} {v}");
        }
    }
    for r in &s.reservations {
        let _ = writeln!(out, "reserve:  {} = {}", r.mac, r.ip);
    }
    for p in &n.ports {
        let tenant = p
            .tenant
            .as_deref()
            .map(|t| format!(" tenant {t}"))
            .unwrap_or_default();
        let _ = writeln!(out, "port:     {} {} ({}){tenant}", p.ifname, p.mac, p.vm);
    }
    out
}

fn lease_table(leases: &[Lease]) -> String {
    let mut out = format!("{:<17} {:<15} {:<10} HOSTNAME\n", "MAC", "IP", "EXPIRES");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for l in leases {
        let left = match l.expires.checked_sub(now) {
            Some(s) => format!("in {}m", s / 60),
            None => "expired".into(),
        };
        let _ = writeln!(
            out,
            "{:<17} {:<15} {:<10} {}",
            l.mac,
            l.ip,
            left,
            l.hostname.as_deref().unwrap_or("-")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_arguments_become_a_spec() {
        let cmd = NetCommand::Create {
            name: "lab".into(),
            kind: NetworkKind::Nat,
            uplink: Some("eth0".into()),
            vlan: None,
            subnet: Some("10.8.0.0/24".into()),
            dhcp_range: Some("10.8.0.10-10.8.0.20".into()),
            no_dhcp: false,
            reservations: vec!["02:00:00:00:00:01=10.8.0.5".into()],
            mode: None,
            vni: None,
            peers: Vec::new(),
            group: None,
            cluster: false,
        };
        let spec = spec_of(cmd).unwrap();
        assert_eq!(spec.kind, NetworkKind::Nat);
        assert_eq!(
            spec.dhcp_range,
            Some(("10.8.0.10".into(), "10.8.0.20".into()))
        );
        assert_eq!(spec.reservations[0].ip, "10.8.0.5");
        assert_eq!(spec.dhcp, None);
        assert_eq!(api_enum::<MacvtapMode>("vepa"), Ok(MacvtapMode::Vepa));
        assert!(api_enum::<NetworkKind>("lan").is_err());
    }
}
