//! Guest ports: when a VM starts, each NIC that names a network gets a tap
//! on the network's bridge (an isolated port on a private network) or a
//! macvtap on its uplink, and a MAC (given, or derived from the VM's UUID
//! and the NIC's index) that no other port of the network has. The ports
//! are recorded in `RUN/networks/ports.json`, so an agent that restarts
//! while VMs run still knows them; they go when the VM stops.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{apply, firewall, link, lock, mac, Networks};
use crate::error::ApiError;
use crate::net_types::{MacvtapMode, NetworkKind, NetworkSpec, Port};
use crate::store;
use crate::vm_types::NicSpec;

/// One guest port on the node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PortRecord {
    pub network: String,
    pub vm_uuid: String,
    pub vm: String,
    pub ifname: String,
    pub mac: String,
    #[serde(default)]
    pub tenant: Option<String>,
}

impl PortRecord {
    pub fn to_port(&self) -> Port {
        Port {
            vm: self.vm.clone(),
            ifname: self.ifname.clone(),
            mac: self.mac.clone(),
            tenant: self.tenant.clone(),
        }
    }
}

/// The VM that owns the ports: its UUID, name and tenant tag.
pub struct Owner<'a> {
    pub uuid: &'a str,
    pub name: &'a str,
    pub tenant: Option<&'a str>,
}

fn ports_file(run: &Path) -> PathBuf {
    run.join("networks").join("ports.json")
}

pub fn load(run: &Path) -> Vec<PortRecord> {
    store::read_json(&ports_file(run))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The guest interface of NIC `index`: `vn` + 8 hex digits of the UUID +
/// the index (at most 15 bytes, unique per VM).
fn ifname(uuid: &str, index: usize) -> String {
    let hex: String = uuid
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .collect();
    format!("vn{hex}.{index}")
}

impl Networks {
    /// Checks that every network the NICs name exists (at define time).
    pub fn check_nics(&self, nics: &[NicSpec]) -> Result<(), ApiError> {
        for (i, nic) in nics.iter().enumerate() {
            if let Some(net) = &nic.network {
                self.spec(net)
                    .map_err(|e| ApiError::bad_request(format!("nics[{i}]: {}", e.1)))?;
            }
        }
        Ok(())
    }

    /// Makes the ports of the VM's NICs that name a network; returns the
    /// NICs as the VMM takes them (tap or macvtap, with the MAC). On error
    /// no port of this VM is left.
    pub async fn attach(
        &self,
        owner: &Owner<'_>,
        nics: &[NicSpec],
    ) -> Result<Vec<NicSpec>, ApiError> {
        if nics.iter().all(|n| n.network.is_none()) {
            return Ok(nics.to_vec());
        }
        let _op = self.inner.op.lock().await;
        let mut out = Vec::new();
        for (index, nic) in nics.iter().enumerate() {
            match self.attach_one(owner, index, nic).await {
                Ok(n) => out.push(n),
                Err(e) => {
                    self.detach_locked(owner.uuid).await;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    async fn attach_one(
        &self,
        owner: &Owner<'_>,
        index: usize,
        nic: &NicSpec,
    ) -> Result<NicSpec, ApiError> {
        let Some(network) = &nic.network else {
            return Ok(nic.clone());
        };
        let spec = self
            .spec(network)
            .map_err(|e| ApiError::bad_request(format!("nics[{index}]: {}", e.1)))?;
        let mac = self.choose_mac(&spec, owner.uuid, index, nic.mac.as_deref())?;
        let ifname = ifname(owner.uuid, index);
        let record = PortRecord {
            network: network.clone(),
            vm_uuid: owner.uuid.into(),
            vm: owner.name.into(),
            ifname: ifname.clone(),
            mac: mac::format(&mac),
            tenant: owner.tenant.map(str::to_string),
        };
        // Recorded first: a failure below is then undone by `detach`.
        self.record(|ports| ports.push(record.clone()));
        make_port(&spec, &ifname, mac).await.map_err(|e| {
            ApiError::unavailable(format!("nics[{index}]: network '{network}': {e}"))
        })?;
        self.refresh_tenant_rules(network)
            .await
            .map_err(|e| ApiError::unavailable(format!("network '{network}': {e}")))?;
        let mut vmm_nic = nic.clone();
        vmm_nic.network = None;
        vmm_nic.mac = Some(record.mac);
        match spec.kind {
            NetworkKind::Macvtap => vmm_nic.macvtap = Some(ifname),
            _ => vmm_nic.tap = Some(ifname),
        }
        Ok(vmm_nic)
    }

    /// The NIC's MAC: given, or derived; never one another port of the
    /// network has (a derived one moves on to the next candidate).
    fn choose_mac(
        &self,
        spec: &NetworkSpec,
        uuid: &str,
        index: usize,
        given: Option<&str>,
    ) -> Result<mac::Mac, ApiError> {
        let taken: Vec<String> = self
            .ports_on(&spec.name)
            .into_iter()
            .filter(|p| p.vm_uuid != uuid)
            .map(|p| p.mac)
            .collect();
        if let Some(given) = given {
            let m = mac::parse(given).map_err(ApiError::bad_request)?;
            if taken.contains(&mac::format(&m)) {
                return Err(ApiError::conflict(format!(
                    "MAC {given} is in use on network '{}' already",
                    spec.name
                )));
            }
            return Ok(m);
        }
        (0..64)
            .map(|salt| mac::derive(uuid, index, salt))
            .find(|m| !taken.contains(&mac::format(m)))
            .ok_or_else(|| ApiError::conflict("no free MAC address"))
    }

    /// Removes every port of the VM (it stopped, or its start failed).
    pub async fn detach(&self, uuid: &str) {
        let _op = self.inner.op.lock().await;
        self.detach_locked(uuid).await;
    }

    async fn detach_locked(&self, uuid: &str) {
        let mine: Vec<PortRecord> = lock(&self.inner.ports)
            .iter()
            .filter(|p| p.vm_uuid == uuid)
            .cloned()
            .collect();
        if mine.is_empty() {
            return;
        }
        if let Ok(h) = link::connect() {
            for p in &mine {
                if let Err(e) = link::delete(&h, &p.ifname).await {
                    eprintln!("vireo-agent: removing port {}: {e}", p.ifname);
                }
            }
        }
        self.record(|ports| ports.retain(|p| p.vm_uuid != uuid));
        let mut networks: Vec<String> = mine.into_iter().map(|p| p.network).collect();
        networks.dedup();
        for network in networks {
            if let Err(e) = self.refresh_tenant_rules(&network).await {
                eprintln!("vireo-agent: network '{network}': {e}");
            }
        }
    }

    fn record(&self, change: impl FnOnce(&mut Vec<PortRecord>)) {
        let mut ports = lock(&self.inner.ports);
        change(&mut ports);
        if let Err(e) = store::write_json(&ports_file(&self.inner.paths.run), &*ports) {
            eprintln!("vireo-agent: saving the guest ports: {e}");
        }
    }

    /// Rewrites the network's tenant table from its ports now. Networks
    /// without tenant-tagged ports need no nft at all.
    pub(super) async fn refresh_tenant_rules(&self, network: &str) -> Result<(), String> {
        let tagged: Vec<(String, String)> = self
            .ports_on(network)
            .into_iter()
            .filter_map(|p| Some((p.ifname, p.tenant?)))
            .collect();
        if tagged.is_empty() {
            return match firewall::run(firewall::remove_table("bridge", network)).await {
                Err(e) if e.contains("not installed") => Ok(()),
                other => other,
            };
        }
        firewall::run(firewall::tenant_rules(network, &tagged)).await
    }
}

/// Creates the port's link: a tap on the bridge, or a macvtap.
async fn make_port(spec: &NetworkSpec, ifname: &str, mac: mac::Mac) -> Result<(), String> {
    let h = link::connect()?;
    // A port left by an agent that died mid-start would make creation fail.
    link::delete(&h, ifname).await?;
    if spec.kind == NetworkKind::Macvtap {
        let uplink = super::spec::effective_uplink(spec).unwrap_or_default();
        let mode = spec.macvtap_mode.unwrap_or(MacvtapMode::Bridge);
        link::create_macvtap(&h, ifname, &uplink, mode, mac).await?;
        return Ok(());
    }
    let bridge = apply::bridge_name(spec).unwrap_or_default();
    let br = link::must_index(&h, &bridge).await?;
    link::create_tap(ifname)?;
    link::set_master(&h, ifname, Some(br)).await?;
    if spec.kind == NetworkKind::Private {
        link::set_isolated(&h, ifname, true).await?;
    }
    link::set_up(&h, ifname).await
}
