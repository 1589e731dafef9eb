//! `vireo node net ...`: the node's own bonds and VLANs, kept on its state
//! disk and made by vireo-init at the next boot, before vmbr0.

use clap::Subcommand;
use vireo_agent::net_types::{NodeBond, NodeNetwork, NodeVlan};

use crate::http::Client;
use crate::storage::Conn;

#[derive(Subcommand)]
pub enum NodeNetCommand {
    /// The stored settings.
    Show,
    /// Replace the stored settings (checked by the agent; made at the next
    /// boot, never on the running node).
    Set {
        /// A bond NAME:MODE:NIC1,NIC2 (active-backup, balance-rr or
        /// 802.3ad; repeatable).
        #[arg(long = "bond", value_parser = parse_bond)]
        bonds: Vec<NodeBond>,
        /// A VLAN sub-interface LINK.ID of a NIC or a bond (repeatable).
        #[arg(long = "vlan", value_parser = parse_vlan)]
        vlans: Vec<NodeVlan>,
        /// The link vmbr0 sits on (a NIC, a bond or LINK.ID).
        #[arg(long)]
        uplink: Option<String>,
    },
    /// Forget the stored settings: the kernel command line alone counts.
    Clear,
}

fn parse_bond(s: &str) -> Result<NodeBond, String> {
    let mut parts = s.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(mode), Some(links)) => Ok(NodeBond {
            name: name.into(),
            mode: mode.into(),
            links: links.split(',').map(str::to_string).collect(),
        }),
        _ => Err(format!("'{s}': write it as NAME:MODE:NIC1,NIC2")),
    }
}

fn parse_vlan(s: &str) -> Result<NodeVlan, String> {
    let (link, id) = s
        .rsplit_once('.')
        .ok_or(format!("'{s}': write it as LINK.ID, e.g. bond0.10"))?;
    let id = id.parse().map_err(|_| format!("'{s}': the id is 1-4094"))?;
    Ok(NodeVlan {
        link: link.into(),
        id,
    })
}

pub fn run(conn: &Conn, command: NodeNetCommand) -> Result<(), String> {
    let client = Client::new(&conn.host);
    let net: NodeNetwork = match command {
        NodeNetCommand::Show => client.json("GET", "/node/network", None)?,
        NodeNetCommand::Set {
            bonds,
            vlans,
            uplink,
        } => {
            let body = NodeNetwork {
                bonds,
                vlans,
                uplink,
            };
            let body = serde_json::to_value(&body).map_err(|e| e.to_string())?;
            client.json("PUT", "/node/network", Some(&body))?
        }
        NodeNetCommand::Clear => {
            client.call("DELETE", "/node/network", None)?;
            return crate::print_out(
                "node network settings cleared (the command line alone counts)\n",
            );
        }
    };
    let text = match conn.json {
        true => serde_json::to_string_pretty(&net).map_err(|e| e.to_string())? + "\n",
        false => settings_text(&net),
    };
    crate::print_out(&text)
}

fn settings_text(net: &NodeNetwork) -> String {
    let mut out = String::new();
    for b in &net.bonds {
        out += &format!("bond    {}  {}  {}\n", b.name, b.mode, b.links.join(","));
    }
    for v in &net.vlans {
        out += &format!("vlan    {}\n", v.name());
    }
    let uplink = net
        .uplink
        .as_deref()
        .unwrap_or("(the command line's, else the first bond or NIC)");
    out += &format!("uplink  {uplink}\n");
    out + "made by vireo-init at the next boot, before vmbr0\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bonds_and_vlans_from_words() {
        let b = parse_bond("bond0:active-backup:eno1,eno2").unwrap();
        assert_eq!(
            (b.name.as_str(), b.mode.as_str()),
            ("bond0", "active-backup")
        );
        assert_eq!(b.links, ["eno1", "eno2"]);
        assert!(parse_bond("bond0:eno1").unwrap_err().contains("NAME:MODE"));
        let v = parse_vlan("bond0.10").unwrap();
        assert_eq!((v.link.as_str(), v.id), ("bond0", 10));
        assert!(parse_vlan("eno1").is_err());
        assert!(parse_vlan("eno1.x").is_err());
        let text = settings_text(&NodeNetwork {
            bonds: vec![b],
            vlans: vec![v],
            uplink: Some("bond0.10".into()),
        });
        assert!(
            text.contains(
                "bond    bond0  active-backup  eno1,eno2\nvlan    bond0.10\nuplink  bond0.10\n"
            ),
            "{text}"
        );
    }
}
