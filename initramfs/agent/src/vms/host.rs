//! The VM manager's side of backups, restores and templates (storage's
//! `VmHost`): a VM's definition and disks, defining one from a backup or a
//! template, marking one a template. A template carries the tag
//! `vireo.template=true`, so it survives restarts with its definition and
//! the UI and CLI can tell templates apart; starting one is refused.

use std::sync::Arc;

use serde_json::Value;

use super::{def, lock, Slot, VmDef, Vms};
use crate::error::ApiError;
use crate::storage::{VmDisk, VmHost, VmView};
use crate::vm_types::VmSpec;

/// The tag that marks a template VM.
pub const TEMPLATE_TAG: &str = "vireo.template";

pub fn is_template(spec: &VmSpec) -> bool {
    spec.tags.get(TEMPLATE_TAG).is_some_and(|v| v == "true")
}

/// The VMM's id of disk `index` (`--disk id=diskN`, launch_args).
fn disk_id(index: usize) -> String {
    format!("disk{index}")
}

impl VmHost for Vms {
    fn vm(&self, name: &str) -> Result<VmView, ApiError> {
        let slot = self.get(name)?;
        let info = slot.info();
        let mut disks = Vec::new();
        for (i, d) in info.spec.disks.iter().enumerate() {
            let volume = d.volume.parse().map_err(|e: String| {
                ApiError::conflict(format!("disk {i} of VM '{name}' is not a pool volume: {e}"))
            })?;
            disks.push(VmDisk {
                id: disk_id(i),
                volume,
            });
        }
        Ok(VmView {
            definition: serde_json::to_value(&info.spec)
                .map_err(|e| ApiError::internal(e.to_string()))?,
            disks,
            api_socket: slot.is_running().then(|| slot.api_socket()),
            jail_staging: slot
                .is_running()
                .then(|| super::runtime::read_jail_staging(&slot.dir))
                .flatten(),
            template: is_template(&info.spec),
        })
    }

    fn define_vm(
        &self,
        name: &str,
        definition: &Value,
        disks: &[VmDisk],
        replace: bool,
    ) -> Result<(), ApiError> {
        let mut spec: VmSpec = serde_json::from_value(definition.clone()).map_err(|e| {
            ApiError::bad_request(format!("the stored definition does not load: {e}"))
        })?;
        spec.name = name.to_string();
        // A clone or a restore is an ordinary VM, never a template itself.
        spec.tags.remove(TEMPLATE_TAG);
        for d in disks {
            let index =
                d.id.strip_prefix("disk")
                    .and_then(|n| n.parse::<usize>().ok());
            match index.and_then(|i| spec.disks.get_mut(i)) {
                Some(disk) => disk.volume = d.volume.to_string(),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "no disk '{}' in the definition",
                        d.id
                    )))
                }
            }
        }
        match (self.get(name), replace) {
            (Ok(slot), true) => self.replace_definition(&slot, spec),
            (Ok(_), false) => Err(ApiError::conflict(format!(
                "a VM named '{name}' already exists"
            ))),
            (Err(_), _) => self.define(spec).map(|_| ()),
        }
    }

    fn mark_template(&self, name: &str) -> Result<(), ApiError> {
        let slot = self.get(name)?;
        let mut spec = slot.info().spec;
        spec.tags.insert(TEMPLATE_TAG.into(), "true".into());
        self.replace_definition(&slot, spec)
    }
}

impl Vms {
    /// A stopped VM's new definition (the VM keeps its uuid), without the
    /// await of `edit`: storage's tasks call it from blocking threads.
    fn replace_definition(&self, slot: &Arc<Slot>, mut spec: VmSpec) -> Result<(), ApiError> {
        let Ok(_op) = slot.op.try_lock() else {
            return Err(ApiError::conflict(format!("VM '{}' is busy", slot.name())));
        };
        if slot.is_running() {
            return Err(ApiError::conflict(format!(
                "VM '{}' is running; stop it first",
                slot.name()
            )));
        }
        def::validate(&mut spec, &self.inner.storage).map_err(ApiError::bad_request)?;
        let slots = lock(&self.inner.slots);
        self.check_volumes_free(&slots, &spec, Some(&slot.uuid))?;
        let old = slot.lock().def.clone();
        let new_def = VmDef {
            uuid: old.uuid,
            created: old.created,
            spec,
        };
        def::save(&self.inner.paths.state, &new_def)
            .map_err(|e| ApiError::internal(format!("cannot store the VM: {e}")))?;
        slot.lock().def = new_def;
        Ok(())
    }
}
