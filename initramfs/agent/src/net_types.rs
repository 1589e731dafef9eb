//! The network API's types, shared by the agent and the `vireo` CLI: what a
//! client sends to create a network (`NetworkSpec`), what the agent answers
//! (`NetworkInfo`) and the DHCP leases it hands out (`Lease`).

use serde::{Deserialize, Serialize};

/// What kind of network, i.e. how guests reach what.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkKind {
    /// A Linux bridge over an uplink: guests on the physical LAN. An uplink
    /// that is itself a bridge (vmbr0) is used as it is.
    Bridge,
    /// A private bridge with a subnet; the node is the gateway and
    /// masquerades guests' traffic out of the uplink.
    Nat,
    /// A private bridge: guests reach each other and the node, nothing else.
    Isolated,
    /// Like isolated, but guests cannot reach each other either (every
    /// guest port is an isolated bridge port).
    Private,
    /// Guests directly on the uplink NIC through macvtap (no bridge).
    Macvtap,
    /// One L2 segment across nodes: a bridge with a VXLAN port over the
    /// uplink to the peer node (or a multicast group of nodes).
    Overlay,
}

/// How macvtap links of a `macvtap` network talk to each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacvtapMode {
    /// Guests on one NIC reach each other inside the node.
    #[default]
    Bridge,
    /// Every frame goes out to the switch (which must hairpin it back).
    Vepa,
    /// Guests on one NIC never reach each other.
    Private,
    /// One guest owns the NIC.
    Passthru,
}

/// A static address for one MAC (DHCP reservation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    pub mac: String,
    pub ip: String,
}

/// POST /networks. Unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// 1-12 letters, digits, `-` (the bridge is `vr-NAME`).
    pub name: String,
    pub kind: NetworkKind,
    /// The NIC, bond or bridge the network goes out through (bridge, nat,
    /// macvtap; nat without one masquerades out of any route).
    #[serde(default)]
    pub uplink: Option<String>,
    /// An 802.1Q tag: the network uses the sub-interface `UPLINK.VLAN`.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// IPv4 subnet in CIDR form (nat: required; isolated, private: for DHCP).
    /// The node takes the first host address as the gateway.
    #[serde(default)]
    pub subnet: Option<String>,
    /// DHCP pool: first and last address (default: the second host address
    /// to the last of the subnet).
    #[serde(default)]
    pub dhcp_range: Option<(String, String)>,
    /// Serve DHCP (default: yes when there is a subnet).
    #[serde(default)]
    pub dhcp: Option<bool>,
    #[serde(default)]
    pub reservations: Vec<Reservation>,
    /// For `macvtap` networks.
    #[serde(default)]
    pub macvtap_mode: Option<MacvtapMode>,
    /// Overlay: the VXLAN network identifier (1-16777215), the same on
    /// every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Overlay: the other node's address (one peer), or
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// an IPv4 multicast group all nodes of the overlay join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Defined on every node of the cluster (docs/cluster.md, "Shared
    /// definitions"): each node makes its own bridge (NAT, DHCP) of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster: bool,
}

/// GET /networks/{name}: the definition and what the node has now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub spec: NetworkSpec,
    /// The bridge guests' taps join (none for macvtap networks).
    pub bridge: Option<String>,
    /// The node's address on the network, `ADDR/PREFIX`.
    pub gateway: Option<String>,
    /// The bridge (or the uplink, for macvtap) exists and is up.
    pub active: bool,
    /// The guest ports attached now: (VM, interface, MAC).
    pub ports: Vec<Port>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub vm: String,
    pub ifname: String,
    pub mac: String,
    #[serde(default)]
    pub tenant: Option<String>,
}

/// One DHCP lease (GET /networks/{name}/leases).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub mac: String,
    pub ip: String,
    /// Seconds since the epoch.
    pub expires: u64,
    #[serde(default)]
    pub hostname: Option<String>,
}

/// A port forward on a nat network (POST /networks/{name}/forwards): the
/// node's `node_port` (on every address but the network's own) goes to a
/// guest's `port`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// Whose forward it is; a VM target must carry the same `tenant` tag.
    pub tenant: String,
    pub node_port: u16,
    /// `VM:PORT` (the VM's address on the network: its DHCP lease or
    /// reservation) or `IP:PORT`.
    pub to: String,
    #[serde(default)]
    pub protocol: Protocol,
    /// The guest address `to` resolved to when the forward was added.
    #[serde(default)]
    pub ip: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// The node's own uplink settings, kept on VIREO-DATA
/// (`node-network.json`) and applied by vireo-init at boot, before
/// `vmbr0` (docs/networks.md): bonds, VLAN sub-interfaces, and which link
/// `vmbr0` sits on. The kernel command line wins where both say something.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeNetwork {
    #[serde(default)]
    pub bonds: Vec<NodeBond>,
    #[serde(default)]
    pub vlans: Vec<NodeVlan>,
    /// The link under `vmbr0`: a NIC, a bond or a VLAN (`LINK.ID`). None:
    /// the command line's, else the first bond, else the first NIC with
    /// carrier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeBond {
    pub name: String,
    /// `active-backup`, `balance-rr` or `802.3ad`.
    pub mode: String,
    pub links: Vec<String>,
}

/// An 802.1Q sub-interface `LINK.ID` of a NIC or a bond.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeVlan {
    pub link: String,
    pub id: u16,
}

impl NodeVlan {
    pub fn name(&self) -> String {
        format!("{}.{}", self.link, self.id)
    }
}
