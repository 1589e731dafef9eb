//! Firewall rules through nftables' JSON interface (`nft -j -f -`): one
//! `inet` table per network (forwarding policy and masquerade) and one
//! `bridge` table per network for tenant isolation between guest ports.
//! Each table is replaced whole in one nft transaction (add, delete, add),
//! so a network never runs with half of its rules. docs/networks.md says
//! why the JSON interface rather than a netlink crate.

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::spec::{effective_uplink, subnet_of};
use crate::net_types::{Forward, NetworkKind, NetworkSpec, Protocol};

/// The nft table name of a network (`vireo_NAME`).
pub fn table_name(network: &str) -> String {
    format!("vireo_{}", network.replace('-', "_"))
}

fn table(family: &str, name: &str) -> Value {
    json!({"table": {"family": family, "name": name}})
}

fn chain(family: &str, table: &str, name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {
        "family": family, "table": table, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept"
    }}})
}

fn rule(family: &str, table: &str, chain: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": family, "table": table, "chain": chain, "expr": expr}}})
}

fn is(key: &str, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": {"meta": {"key": key}}, "right": right}})
}

fn saddr_in(subnet: &str, op: &str) -> Value {
    let (net, len) = subnet.split_once('/').unwrap_or((subnet, "32"));
    let len: u32 = len.parse().unwrap_or(32);
    json!({"match": {"op": op,
        "left": {"payload": {"protocol": "ip", "field": "saddr"}},
        "right": {"prefix": {"addr": net, "len": len}}}})
}

fn dport(protocol: &str, ports: &[u16]) -> Value {
    json!({"match": {"op": "==",
        "left": {"payload": {"protocol": protocol, "field": "dport"}},
        "right": {"set": ports}}})
}

fn verdict(v: &str) -> Value {
    json!({ v: null })
}

/// The `inet` table of a network: what crosses between its bridge and the
/// rest of the node. Bridge networks need none (their guests are on the LAN).
///
/// Forward rules match routed traffic only (in through the bridge, out
/// through another link, or the reverse): with br_netfilter loaded, frames
/// bridged between two guests also pass the inet forward hook, with the
/// bridge as both input and output, and must stay untouched.
pub fn network_rules(spec: &NetworkSpec, bridge: &str, forwards: &[Forward]) -> Option<Vec<Value>> {
    let (t, f) = (table_name(&spec.name), "inet");
    let br = json!(bridge);
    let from_guests = is("iifname", "==", br.clone());
    let leaving = vec![from_guests.clone(), is("oifname", "!=", br.clone())];
    let entering = vec![
        is("oifname", "==", br.clone()),
        is("iifname", "!=", br.clone()),
    ];
    let drop = || vec![json!({"counter": null}), verdict("drop")];
    let mut input = Vec::new();
    let mut forward = Vec::new();
    // Guests may ask the node for DHCP (67) and DNS (53, UDP and TCP);
    // nothing else of the node's (its API, ssh) is theirs to reach.
    input.push(vec![
        from_guests.clone(),
        dport("udp", &[53, 67]),
        verdict("accept"),
    ]);
    input.push(vec![
        from_guests.clone(),
        dport("tcp", &[53]),
        verdict("accept"),
    ]);
    let mut postrouting = None;
    match spec.kind {
        NetworkKind::Nat => {
            let subnet = subnet_of(spec)?.to_string();
            let established = json!({"match": {"op": "in", "left": {"ct": {"key": "state"}},
                "right": ["established", "related"]}});
            input.push(vec![
                from_guests.clone(),
                established.clone(),
                verdict("accept"),
            ]);
            let mut out = [leaving.clone(), vec![saddr_in(&subnet, "==")]].concat();
            let mut masquerade = vec![saddr_in(&subnet, "=="), is("oifname", "!=", br)];
            if let Some(uplink) = effective_uplink(spec) {
                out.push(is("oifname", "==", json!(uplink)));
                masquerade.push(is("oifname", "==", json!(uplink)));
            }
            out.push(verdict("accept"));
            masquerade.push(json!({"masquerade": null}));
            forward.push(out);
            forward.push([entering.clone(), vec![established, verdict("accept")]].concat());
            // Forwarded ports: their connections were DNATed in prerouting.
            let dnat =
                json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}});
            forward.push([entering.clone(), vec![dnat, verdict("accept")]].concat());
            postrouting = Some(masquerade);
        }
        NetworkKind::Isolated | NetworkKind::Private => {}
        NetworkKind::Bridge | NetworkKind::Macvtap | NetworkKind::Overlay => return None,
    }
    input.push([vec![from_guests], drop()].concat());
    forward.push([entering, drop()].concat());
    forward.push([leaving, drop()].concat());
    let mut cmds = replace_table(f, &t);
    cmds.push(chain(f, &t, "forward", "filter", "forward", 0));
    cmds.push(chain(f, &t, "input", "filter", "input", 0));
    cmds.extend(input.into_iter().map(|e| rule(f, &t, "input", e)));
    cmds.extend(forward.into_iter().map(|e| rule(f, &t, "forward", e)));
    if let Some(masquerade) = postrouting {
        cmds.push(chain(f, &t, "postrouting", "nat", "postrouting", 100));
        cmds.push(rule(f, &t, "postrouting", masquerade));
        cmds.push(chain(f, &t, "prerouting", "nat", "prerouting", -100));
        for fwd in forwards {
            if let Some(r) = dnat_rule(fwd, bridge) {
                cmds.push(rule(f, &t, "prerouting", r));
            }
        }
    }
    Some(cmds)
}

/// `iifname != BRIDGE PROTO dport NODE_PORT dnat ip to IP:PORT`.
fn dnat_rule(fwd: &Forward, bridge: &str) -> Option<Vec<Value>> {
    let ip = fwd.ip.as_ref()?;
    let port: u16 = fwd.to.rsplit_once(':')?.1.parse().ok()?;
    let proto = match fwd.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    Some(vec![
        is("iifname", "!=", json!(bridge)),
        json!({"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "dport"}},
            "right": fwd.node_port}}),
        json!({"counter": null}),
        json!({"dnat": {"family": "ip", "addr": ip, "port": port}}),
    ])
}

/// The `bridge` table of a network: a frame from one tenant's port to
/// another tenant's port is dropped (and counted). `ports` are (interface,
/// tenant); guests without a tenant are not restricted.
pub fn tenant_rules(network: &str, ports: &[(String, String)]) -> Vec<Value> {
    let t = table_name(network);
    let f = "bridge";
    let mut cmds = replace_table(f, &t);
    cmds.push(chain(f, &t, "forward", "filter", "forward", 0));
    let mut tenants: Vec<&str> = ports.iter().map(|(_, t)| t.as_str()).collect();
    tenants.sort();
    tenants.dedup();
    for tenant in tenants {
        let (ours, theirs): (Vec<_>, Vec<_>) = ports.iter().partition(|(_, t)| t == tenant);
        if theirs.is_empty() {
            continue;
        }
        let names = |v: Vec<&(String, String)>| json!({"set": v.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>()});
        cmds.push(rule(
            f,
            &t,
            "forward",
            vec![
                is("iifname", "==", names(ours)),
                is("oifname", "==", names(theirs)),
                json!({"counter": null}),
                verdict("drop"),
            ],
        ));
    }
    cmds
}

/// Commands that make `table` exist and empty, atomically.
fn replace_table(family: &str, name: &str) -> Vec<Value> {
    vec![
        json!({"add": table(family, name)}),
        json!({"delete": table(family, name)}),
        json!({"add": table(family, name)}),
    ]
}

/// Commands that remove `table` if it exists.
pub fn remove_table(family: &str, network: &str) -> Vec<Value> {
    let name = table_name(network);
    vec![
        json!({"add": table(family, &name)}),
        json!({"delete": table(family, &name)}),
    ]
}

/// Runs one nft transaction.
pub async fn run(cmds: Vec<Value>) -> Result<(), String> {
    let doc = json!({ "nftables": cmds }).to_string();
    let mut child = tokio::process::Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "nft (nftables) is not installed on this node".into(),
            _ => format!("nft: {e}"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(doc.as_bytes())
            .await
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("nft: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "nft refused the rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Turns IPv4 forwarding on (nat networks route between bridge and uplink).
pub fn enable_forwarding() -> Result<(), String> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| format!("enabling IPv4 forwarding: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_drop_only_across() {
        let ports = vec![
            ("t1".to_string(), "a".to_string()),
            ("t2".to_string(), "a".to_string()),
            ("t3".to_string(), "b".to_string()),
        ];
        let cmds = tenant_rules("lan", &ports);
        let text = serde_json::to_string(&cmds).unwrap();
        // Two rules: a → b and b → a.
        assert_eq!(text.matches("\"drop\"").count(), 2, "{text}");
        assert!(tenant_rules("lan", &ports[..2])
            .iter()
            .all(|c| !c.to_string().contains("drop")));
    }
}
