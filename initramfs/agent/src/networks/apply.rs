//! Making a network exist on the node, and taking it away: apply every
//! step, check that no address the node had is gone, and on any failure
//! undo the steps done so far in reverse, so a bad definition leaves the
//! node's networking as it was.

use rtnetlink::Handle;

use super::spec::{effective_uplink, subnet_of, Subnet};
use super::{firewall, link};
use crate::net_types::{NetworkKind, NetworkSpec};

/// The bridge guests' taps join: `vr-NAME`, or an existing bridge named as
/// the uplink of a `bridge` network (vmbr0); none for macvtap networks.
pub fn bridge_name(spec: &NetworkSpec) -> Option<String> {
    match spec.kind {
        NetworkKind::Macvtap => None,
        NetworkKind::Bridge if spec.vlan.is_none() => {
            let uplink = spec.uplink.clone().unwrap_or_default();
            match link::is_bridge(&uplink) {
                true => Some(uplink),
                false => Some(format!("vr-{}", spec.name)),
            }
        }
        _ => Some(format!("vr-{}", spec.name)),
    }
}

/// One step done, and how to take it back.
enum Undo {
    DeleteLink(String),
    Release(String),
    RemoveRules(String),
}

async fn undo_all(h: &Handle, done: Vec<Undo>) {
    for step in done.into_iter().rev() {
        let result = match &step {
            Undo::DeleteLink(name) => link::delete(h, name).await,
            Undo::Release(port) => link::set_master(h, port, None).await,
            Undo::RemoveRules(net) => firewall::run(firewall::remove_table("inet", net)).await,
        };
        if let Err(e) = result {
            eprintln!("vireo-agent: rolling back a network: {e}");
        }
    }
}

/// Creates what `spec` needs. On error nothing it made is left.
pub async fn apply(spec: &NetworkSpec) -> Result<(), String> {
    let h = link::connect()?;
    let before = link::ipv4_addresses(&h).await?;
    if let Some(subnet) = subnet_of(spec) {
        check_subnet_free(&subnet, &before)?;
    }
    let mut done = Vec::new();
    let result = apply_steps(&h, spec, &mut done).await;
    let result = match result {
        Ok(()) => check_addresses_kept(&h, &before).await,
        Err(e) => Err(e),
    };
    if result.is_err() {
        undo_all(&h, done).await;
    }
    result
}

fn check_subnet_free(
    subnet: &Subnet,
    node: &[(u32, std::net::Ipv4Addr, u8)],
) -> Result<(), String> {
    for (_, ip, prefix) in node {
        let theirs = Subnet {
            net: std::net::Ipv4Addr::from(
                u32::from(*ip) & (u32::MAX << (32 - u32::from(*prefix).clamp(1, 32))),
            ),
            prefix: *prefix,
        };
        if subnet.overlaps(&theirs) {
            return Err(format!(
                "subnet {subnet} overlaps the node's address {ip}/{prefix}"
            ));
        }
    }
    Ok(())
}

/// Every address the node had before must still be there.
async fn check_addresses_kept(
    h: &Handle,
    before: &[(u32, std::net::Ipv4Addr, u8)],
) -> Result<(), String> {
    let after = link::ipv4_addresses(h).await?;
    match before.iter().find(|a| !after.contains(a)) {
        Some((_, ip, prefix)) => Err(format!(
            "applying the network removed the node's address {ip}/{prefix}; rolled back"
        )),
        None => Ok(()),
    }
}

async fn apply_steps(h: &Handle, spec: &NetworkSpec, done: &mut Vec<Undo>) -> Result<(), String> {
    let uplink = uplink_link(h, spec, done).await?;
    let Some(bridge) = bridge_name(spec) else {
        return Ok(());
    };
    if uplink.as_deref() == Some(bridge.as_str()) {
        return Ok(());
    }
    if link::exists(&bridge) {
        return Err(format!("an interface named {bridge} exists already"));
    }
    let br = link::create_bridge(h, &bridge).await?;
    done.push(Undo::DeleteLink(bridge.clone()));
    if spec.kind == NetworkKind::Overlay {
        let vxlan = format!("vx-{}", spec.name);
        let peer = match (spec.peers.first(), &spec.group) {
            (Some(p), _) => Ok(p.parse().map_err(|_| format!("peer '{p}'"))?),
            (None, Some(g)) => Err(g.parse().map_err(|_| format!("group '{g}'"))?),
            (None, None) => return Err("an overlay network needs a peer or a group".into()),
        };
        let parent = uplink.unwrap_or_default();
        link::create_vxlan(h, &vxlan, &parent, spec.vni.unwrap_or_default(), peer).await?;
        done.push(Undo::DeleteLink(vxlan.clone()));
        link::set_master(h, &vxlan, Some(br)).await?;
        return Ok(());
    }
    if spec.kind == NetworkKind::Bridge {
        let port = uplink.unwrap_or_default();
        check_free_port(h, &port).await?;
        link::set_master(h, &port, Some(br)).await?;
        done.push(Undo::Release(port));
        return Ok(());
    }
    if let Some(subnet) = subnet_of(spec) {
        link::add_address(h, br, subnet.gateway(), subnet.prefix).await?;
    }
    // Port forwards are added to the rules later (`refresh_network_rules`).
    if let Some(rules) = firewall::network_rules(spec, &bridge, &[]) {
        firewall::run(rules).await?;
        done.push(Undo::RemoveRules(spec.name.clone()));
    }
    if spec.kind == NetworkKind::Nat {
        firewall::enable_forwarding()?;
    }
    Ok(())
}

/// The uplink (made if it is a VLAN sub-interface), which must exist.
async fn uplink_link(
    h: &Handle,
    spec: &NetworkSpec,
    done: &mut Vec<Undo>,
) -> Result<Option<String>, String> {
    let (Some(parent), Some(uplink)) = (&spec.uplink, effective_uplink(spec)) else {
        return Ok(None);
    };
    if !link::exists(parent) {
        return Err(format!(
            "uplink '{parent}': there is no such interface on this node"
        ));
    }
    if let Some(vid) = spec.vlan {
        if link::exists(&uplink) {
            return Err(format!("an interface named {uplink} exists already"));
        }
        link::create_vlan(h, &uplink, parent, vid).await?;
        done.push(Undo::DeleteLink(uplink.clone()));
    }
    Ok(Some(uplink))
}

/// A link may become a bridge port only if it is no one's port yet and
/// carries no address of the node (which would stop working on a port).
async fn check_free_port(h: &Handle, port: &str) -> Result<(), String> {
    if let Some(master) = link::master_of(port) {
        return Err(format!("uplink {port} is a port of {master} already"));
    }
    let index = link::must_index(h, port).await?;
    if let Some((_, ip, prefix)) = link::ipv4_addresses(h)
        .await?
        .into_iter()
        .find(|(i, _, _)| *i == index)
    {
        return Err(format!(
            "uplink {port} carries the node's address {ip}/{prefix}; a bridge over it would take \
             the address away (use the bridge that already has it, e.g. vmbr0, as the uplink)"
        ));
    }
    Ok(())
}

/// Takes the network's links and rules away (best effort, each step
/// reported): the bridge `vr-NAME`, the VLAN sub-interface, the rules.
pub async fn remove(spec: &NetworkSpec) -> Result<(), String> {
    let h = link::connect()?;
    let mut errors = Vec::new();
    if matches!(
        spec.kind,
        NetworkKind::Nat | NetworkKind::Isolated | NetworkKind::Private
    ) {
        if let Err(e) = firewall::run(firewall::remove_table("inet", &spec.name)).await {
            errors.push(e);
        }
    }
    if let Err(e) = firewall::run(firewall::remove_table("bridge", &spec.name)).await {
        // A node without nft never had tenant rules.
        if !e.contains("not installed") {
            errors.push(e);
        }
    }
    let ours = format!("vr-{}", spec.name);
    if bridge_name(spec).as_deref() == Some(ours.as_str()) {
        if let Err(e) = link::delete(&h, &ours).await {
            errors.push(e);
        }
    }
    if spec.kind == NetworkKind::Overlay {
        if let Err(e) = link::delete(&h, &format!("vx-{}", spec.name)).await {
            errors.push(e);
        }
    }
    if spec.vlan.is_some() {
        if let Some(uplink) = effective_uplink(spec) {
            if let Err(e) = link::delete(&h, &uplink).await {
                errors.push(e);
            }
        }
    }
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("; ")),
    }
}

/// Whether the network's links exist and are up.
pub fn is_active(spec: &NetworkSpec) -> bool {
    match bridge_name(spec) {
        Some(br) => link::is_up(&br),
        None => effective_uplink(spec).is_some_and(|u| link::exists(&u)),
    }
}
