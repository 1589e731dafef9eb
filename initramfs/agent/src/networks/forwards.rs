//! Port forwards of nat networks, per tenant: `STATE/networks/forwards/
//! NAME.json`, made into DNAT rules of the network's nft table. A forward
//! to `VM:PORT` must name a VM of the forward's tenant with a NIC on the
//! network; its address is the VM's reservation or DHCP lease, looked up by
//! the NIC's MAC (derived MACs are stable, and so are leases per MAC).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::spec::subnet_of;
use super::{apply, dhcp, firewall, mac, Networks};
use crate::error::ApiError;
use crate::net_types::{Forward, NetworkKind, NetworkSpec};
use crate::store;
use crate::vm_types::VmInfo;

pub fn path(state: &Path, network: &str) -> PathBuf {
    state
        .join("networks")
        .join("forwards")
        .join(format!("{network}.json"))
}

pub fn load(state: &Path, network: &str) -> Vec<Forward> {
    store::read_json(&path(state, network))
        .ok()
        .flatten()
        .unwrap_or_default()
}

impl Networks {
    /// GET /networks/{name}/forwards[?tenant=T].
    pub fn forwards(&self, network: &str, tenant: Option<&str>) -> Result<Vec<Forward>, ApiError> {
        self.spec(network)?;
        let all = load(&self.inner.paths.state, network);
        Ok(all
            .into_iter()
            .filter(|f| tenant.is_none_or(|t| f.tenant == t))
            .collect())
    }

    /// POST /networks/{name}/forwards: checked, resolved, stored, applied
    /// (and taken back if nft refuses it).
    pub async fn add_forward(
        &self,
        network: &str,
        mut fwd: Forward,
        vms: &[VmInfo],
    ) -> Result<Forward, ApiError> {
        let _op = self.inner.op.lock().await;
        let spec = self.spec(network)?;
        if spec.kind != NetworkKind::Nat {
            return Err(ApiError::bad_request(
                format!(
                    "network '{network}' is {:?}: only nat networks forward ports",
                    spec.kind
                )
                .to_lowercase(),
            ));
        }
        if fwd.node_port == 0 {
            return Err(ApiError::bad_request("node_port must be 1-65535"));
        }
        for other in self.specs() {
            let taken = load(&self.inner.paths.state, &other.name)
                .into_iter()
                .any(|f| f.node_port == fwd.node_port && f.protocol == fwd.protocol);
            if taken {
                return Err(ApiError::conflict(format!(
                    "node port {} is forwarded by network '{}' already",
                    fwd.node_port, other.name
                )));
            }
        }
        fwd.ip = Some(self.resolve_target(&spec, &fwd, vms)?.to_string());
        let state = &self.inner.paths.state;
        let mut all = load(state, network);
        all.push(fwd.clone());
        self.save_and_apply(&spec, &all).await?;
        Ok(fwd)
    }

    /// DELETE /networks/{name}/forwards/{node_port}.
    pub async fn remove_forward(&self, network: &str, node_port: u16) -> Result<(), ApiError> {
        let _op = self.inner.op.lock().await;
        let spec = self.spec(network)?;
        let mut all = load(&self.inner.paths.state, network);
        let before = all.len();
        all.retain(|f| f.node_port != node_port);
        if all.len() == before {
            return Err(ApiError::not_found(format!(
                "network '{network}' forwards no node port {node_port}"
            )));
        }
        self.save_and_apply(&spec, &all).await
    }

    async fn save_and_apply(&self, spec: &NetworkSpec, all: &[Forward]) -> Result<(), ApiError> {
        let file = path(&self.inner.paths.state, &spec.name);
        let old = load(&self.inner.paths.state, &spec.name);
        store::write_json(&file, all)
            .map_err(|e| ApiError::internal(format!("saving {}: {e}", file.display())))?;
        if let Err(e) = self.refresh_network_rules(spec).await {
            let _ = store::write_json(&file, &old);
            let _ = self.refresh_network_rules(spec).await;
            return Err(ApiError::unavailable(format!(
                "network '{}': {e}",
                spec.name
            )));
        }
        Ok(())
    }

    /// Rewrites the network's inet table with its stored forwards.
    pub(super) async fn refresh_network_rules(&self, spec: &NetworkSpec) -> Result<(), String> {
        let Some(bridge) = apply::bridge_name(spec) else {
            return Ok(());
        };
        let forwards = load(&self.inner.paths.state, &spec.name);
        match firewall::network_rules(spec, &bridge, &forwards) {
            Some(rules) => firewall::run(rules).await,
            None => Ok(()),
        }
    }

    /// The guest address of `fwd.to`: an IP of the subnet, or a VM of the
    /// forward's tenant with an address on the network.
    fn resolve_target(
        &self,
        spec: &NetworkSpec,
        fwd: &Forward,
        vms: &[VmInfo],
    ) -> Result<Ipv4Addr, ApiError> {
        let subnet =
            subnet_of(spec).ok_or_else(|| ApiError::internal("a nat network without subnet"))?;
        let (target, port) = fwd.to.rsplit_once(':').ok_or_else(|| {
            ApiError::bad_request(format!("to '{}': write it as VM:PORT or IP:PORT", fwd.to))
        })?;
        if port.parse::<u16>().ok().filter(|p| *p != 0).is_none() {
            return Err(ApiError::bad_request(format!(
                "to '{}': bad port '{port}'",
                fwd.to
            )));
        }
        if let Ok(ip) = target.parse::<Ipv4Addr>() {
            return match subnet.contains(ip) && ip != subnet.gateway() {
                true => Ok(ip),
                false => Err(ApiError::bad_request(format!(
                    "{ip} is not a guest address of {subnet}"
                ))),
            };
        }
        let vm = vms
            .iter()
            .find(|v| v.spec.name == target)
            .ok_or_else(|| ApiError::bad_request(format!("no VM named '{target}'")))?;
        if vm.spec.tags.get("tenant") != Some(&fwd.tenant) {
            return Err(ApiError::bad_request(format!(
                "VM '{target}' is not tenant '{}''s (its tenant tag: {})",
                fwd.tenant,
                vm.spec.tags.get("tenant").map_or("none", String::as_str)
            )));
        }
        self.vm_address(spec, vm)
    }

    /// The VM's address on the network: reserved or leased to its NIC's MAC.
    fn vm_address(&self, spec: &NetworkSpec, vm: &VmInfo) -> Result<Ipv4Addr, ApiError> {
        let index = vm
            .spec
            .nics
            .iter()
            .position(|n| n.network.as_deref() == Some(&spec.name))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "VM '{}' has no NIC on network '{}'",
                    vm.spec.name, spec.name
                ))
            })?;
        let running = self
            .ports_on(&spec.name)
            .into_iter()
            .find(|p| p.vm == vm.spec.name)
            .map(|p| p.mac);
        let given = vm.spec.nics[index].mac.clone();
        let mac = running
            .or(given)
            .unwrap_or_else(|| mac::format(&mac::derive(&vm.uuid, index, 0)));
        let reserved = spec
            .reservations
            .iter()
            .find(|r| r.mac == mac)
            .map(|r| r.ip.clone());
        let leased = dhcp::read_leases(&self.inner.paths.state, &spec.name)
            .into_iter()
            .find(|l| l.mac == mac)
            .map(|l| l.ip);
        reserved
            .or(leased)
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| {
                ApiError::conflict(format!(
                    "VM '{}' has no address on network '{}' yet (no lease for {mac}): start it first",
                    vm.spec.name, spec.name
                ))
            })
    }
}
