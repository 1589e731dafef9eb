//! `vireo vm migrate NAME NODE`: the VM's live migration to another node of
//! the cluster (any node's agent passes it to the VM's owner), followed
//! with a progress bar until the destination runs the VM.

use serde_json::{json, Value};
use vireo_agent::types::TaskInfo;

use crate::http::Client;
use crate::print_out;

pub fn migrate(
    host: &str,
    name: &str,
    node: &str,
    disks: &str,
    max_downtime_ms: Option<u64>,
    json: bool,
) -> Result<(), String> {
    let c = Client::new(&owner_agent(host, name)?);
    let mut body = json!({"node": node, "disks": disks});
    if let Some(ms) = max_downtime_ms {
        body["max_downtime_ms"] = ms.into();
    }
    let task: TaskInfo = c.json("POST", &format!("/vms/{name}/migrate"), Some(&body))?;
    let what = format!("migrating {name} to {node}");
    let done = crate::progress::follow(&c, task, &what, json)?;
    let result = done.result.unwrap_or(Value::Null);
    if json {
        return crate::vm::print_json(&result);
    }
    let ms = |k: &str| {
        result[k]
            .as_f64()
            .map_or("?".into(), |v| format!("{v:.1} ms"))
    };
    print_out(&format!(
        "VM {name} now runs on {}: downtime {}, total {}, {} sent\n",
        result["node"].as_str().unwrap_or(node),
        ms("downtime_ms"),
        ms("total_ms"),
        crate::format::bytes(result["bytes_sent"].as_u64().unwrap_or(0)),
    ))
}

/// The agent of the node that runs `name` (its migration task lives
/// there), as the cluster's tables name it; `host` itself if it has the VM
/// or is in no cluster.
fn owner_agent(host: &str, name: &str) -> Result<String, String> {
    let c = Client::new(host);
    let Ok(vms) = c.json::<Value>("GET", "/cluster/vms", None) else {
        return Ok(host.to_string());
    };
    let owner = vms
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == name)
        .and_then(|v| v["node_id"].as_u64())
        .ok_or_else(|| format!("no VM named '{name}' in the cluster"))?;
    let nodes: Value = c.json("GET", "/cluster/nodes", None)?;
    Ok(nodes
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["id"].as_u64() == Some(owner))
        .and_then(|n| n["api"].as_str())
        .map_or_else(|| host.to_string(), str::to_string))
}
