//! VM templates (as in Proxmox): a VM marked template is never started
//! again (the VM manager refuses), and its disks become template volumes
//! (frozen). Cloning it defines a new VM whose disks are linked clones of
//! the template's (qcow2 overlays, instant) or full copies.

use serde_json::json;

use super::{valid_name, Storage, VmDisk, VmView, VolumeFormat, VolumeRef};
use crate::error::ApiError;
use crate::storage_api::{CloneTemplate, CloneVolume};
use crate::tasks::TaskCtx;

pub struct TemplateCloneJob {
    storage: Storage,
    template: String,
    view: VmView,
    req: CloneTemplate,
}

impl Storage {
    /// Marks stopped VM `vm` and its disks as a template.
    pub fn make_template(&self, vm: &str) -> Result<serde_json::Value, ApiError> {
        let host = self.vm_host()?;
        let view = host.vm(vm)?;
        if view.api_socket.is_some() {
            return Err(ApiError::conflict(format!(
                "VM '{vm}' is running: stop it first"
            )));
        }
        let mut marked: Vec<&VolumeRef> = Vec::new();
        for d in &view.disks {
            // The VM itself uses them: the image lock says whether it runs.
            let dir = self.existing(&d.volume)?;
            let done = self
                .claim_unchecked(&d.volume, "make a template of")
                .and_then(|_claim| mark_volume(&dir, &d.volume));
            if let Err(e) = done {
                for v in marked {
                    let _ = self.unmark_quietly(v);
                }
                return Err(e);
            }
            marked.push(&d.volume);
        }
        host.mark_template(vm)?;
        Ok(
            json!({ "template": vm, "volumes": view.disks.iter().map(|d| d.volume.to_string()).collect::<Vec<_>>() }),
        )
    }

    fn unmark_quietly(&self, v: &VolumeRef) -> Result<(), ApiError> {
        let dir = self.existing(v)?;
        let mut m = super::volumes::meta_of(&dir, &v.name)?;
        m.template = false;
        super::meta::save(&dir, &v.name, &m).map_err(|e| ApiError::internal(e.to_string()))
    }

    pub fn prepare_template_clone(
        &self,
        template: &str,
        req: CloneTemplate,
    ) -> Result<TemplateCloneJob, ApiError> {
        if !valid_name(&req.name) {
            return Err(ApiError::bad_request(format!(
                "'{}' is not a VM name",
                req.name
            )));
        }
        let host = self.vm_host()?;
        let view = host.vm(template)?;
        if !view.template {
            return Err(ApiError::conflict(format!(
                "VM '{template}' is not a template (POST /templates {{\"vm\": \"{template}\"}} first)"
            )));
        }
        if host.vm(&req.name).is_ok() {
            return Err(ApiError::conflict(format!(
                "VM '{}' exists already",
                req.name
            )));
        }
        if !req.full && req.storage.is_some() {
            return Err(ApiError::bad_request(
                "linked clones stay in their template's pools: --storage needs --full",
            ));
        }
        Ok(TemplateCloneJob {
            storage: self.clone(),
            template: template.to_string(),
            view,
            req,
        })
    }
}

fn mark_volume(dir: &std::path::Path, v: &VolumeRef) -> Result<(), ApiError> {
    drop(super::image::lock_exclusive(&dir.join(&v.name))?);
    let mut m = super::volumes::meta_of(dir, &v.name)?;
    m.template = true;
    super::meta::save(dir, &v.name, &m)
        .map_err(|e| ApiError::internal(format!("recording '{v}': {e}")))
}

impl TemplateCloneJob {
    pub fn run(self, ctx: &TaskCtx) -> Result<serde_json::Value, String> {
        let mut made: Vec<VmDisk> = Vec::new();
        let result = self.clone_disks(ctx, &mut made).and_then(|()| {
            let host = self.storage.vm_host().map_err(|e| e.1)?;
            host.define_vm(&self.req.name, &self.view.definition, &made, false)
                .map_err(|e| format!("defining VM '{}': {}", self.req.name, e.1))
        });
        if let Err(e) = result {
            for d in &made {
                let _ = self.storage.delete_volume(&d.volume);
            }
            return Err(e);
        }
        Ok(json!({
            "vm": self.req.name,
            "template": self.template,
            "linked": !self.req.full,
            "volumes": made.iter().map(|d| d.volume.to_string()).collect::<Vec<_>>(),
        }))
    }

    fn clone_disks(&self, ctx: &TaskCtx, made: &mut Vec<VmDisk>) -> Result<(), String> {
        for d in &self.view.disks {
            let format = if self.req.full {
                super::volumes::meta_of(
                    &self.storage.existing(&d.volume).map_err(|e| e.1)?,
                    &d.volume.name,
                )
                .map_err(|e| e.1)?
                .format
            } else {
                VolumeFormat::Qcow2
            };
            let req = CloneVolume {
                name: format!("{}-{}.{}", self.req.name, d.id, format.as_str()),
                pool: self.req.storage.clone(),
                linked: !self.req.full,
                format: None,
            };
            let info = if self.req.full {
                let job = self
                    .storage
                    .prepare_full_clone(&d.volume, &req)
                    .map_err(|e| e.1)?;
                let done = job.run(ctx)?;
                serde_json::from_value(done["volume"].clone()).map_err(|e| e.to_string())?
            } else {
                self.storage
                    .linked_clone(&d.volume, &req)
                    .map_err(|e| e.1)?
            };
            let info: crate::storage_api::VolumeInfo = info;
            made.push(VmDisk {
                id: d.id.clone(),
                volume: info.volume,
            });
        }
        Ok(())
    }
}
