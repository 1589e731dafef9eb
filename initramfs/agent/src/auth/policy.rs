//! What each role may do, decided from the method and path before the
//! handler runs. Admin: everything. Operator: everything but users, tokens
//! and the selftest. Tenant: deny by default; allowed are the VM, volume,
//! backup and task routes on objects tagged with its tenant (a VM's
//! `tags.tenant`, a volume's `tenant`, a backup's VM definition), and the
//! lists, which the handlers filter (also the networks' and their port
//! forwards', read only). New routes are thus closed to tenants
//! until a rule here opens them.

use axum::http::{Method, StatusCode};

use super::{Caller, Role};
use crate::error::ApiError;
use crate::server::AppState;
use crate::storage::VolumeRef;

fn forbidden(why: String) -> ApiError {
    ApiError(StatusCode::FORBIDDEN, why)
}

/// Ok if `caller` may call `method path`.
pub fn check(caller: &Caller, method: &Method, path: &str, s: &AppState) -> Result<(), ApiError> {
    let admin_only = path.starts_with("/auth/users")
        || path.starts_with("/auth/tokens")
        || path.starts_with("/selftest")
        || path == "/node/network";
    match caller.role {
        Role::Admin => Ok(()),
        Role::Operator if admin_only => {
            Err(forbidden(format!("{method} {path} is for admins only")))
        }
        Role::Operator => Ok(()),
        Role::Tenant => {
            let tenant = caller.only_tenant().unwrap_or_default();
            if tenant_may(tenant, method, path, s) {
                Ok(())
            } else {
                Err(forbidden(format!(
                    "tenant '{tenant}' may not {method} {path}"
                )))
            }
        }
    }
}

/// The tenant rules: a list or create route, or an object of its own.
fn tenant_may(tenant: &str, method: &Method, path: &str, s: &AppState) -> bool {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let read_or_delete = matches!(*method, Method::GET | Method::DELETE);
    let owned = |t: Option<String>| t.as_deref() == Some(tenant);
    match segs.as_slice() {
        // A download ticket's own path is checked when it is minted.
        ["health"] | ["auth", "whoami"] | ["auth", "download-ticket"] => true,
        // Lists are filtered, creations tagged, by the handlers.
        ["vms"] | ["backups"] => true,
        ["pools", _, "volumes"] | ["pools", _, "backups"] => true,
        ["vms", name, ..] => owned(vm_tenant(s, name)),
        ["pools", pool, "volumes", name, rest @ ..] => {
            let allowed = match rest {
                [] => read_or_delete,
                ["resize"] | ["data"] | ["snapshots", ..] => true,
                // Clones, conversions and templates make volumes the
                // tenant would not own: operators do those.
                _ => false,
            };
            allowed && owned(volume_tenant(s, pool, name))
        }
        ["pools", pool, "backups", id, rest @ ..] => {
            let allowed = matches!(rest, [] if read_or_delete) || rest == ["verify"];
            allowed && owned(backup_tenant(s, pool, id))
        }
        ["tasks", id] => owned(task_tenant(s, id)),
        // The networks' names and the tenant's own ports and forwards (the
        // handlers filter); leases and changes are the operators'.
        ["networks"] | ["networks", _, "forwards"] => *method == Method::GET,
        _ => false,
    }
}

/// A VM's `tenant` tag.
pub fn vm_tenant(s: &AppState, name: &str) -> Option<String> {
    let slot = s.vms.get(name).ok()?;
    slot.info().spec.tags.get("tenant").cloned()
}

fn volume_tenant(s: &AppState, pool: &str, name: &str) -> Option<String> {
    let v: VolumeRef = format!("{pool}/{name}").parse().ok()?;
    s.storage.volume_tenant(&v).ok()?
}

fn backup_tenant(s: &AppState, pool: &str, id: &str) -> Option<String> {
    s.storage.backup_tenant(pool, id).ok()?
}

/// A task's tenant: that of the VM or volume it works on.
fn task_tenant(s: &AppState, id: &str) -> Option<String> {
    let task = s.tasks.get(id)?;
    vm_tenant(s, &task.target).or_else(|| {
        let v: VolumeRef = task.target.parse().ok()?;
        s.storage.volume_tenant(&v).ok()?
    })
}

/// What a tenant may put in a VM definition: its own tenant tag (set when
/// missing), disks and boot files on its own volumes only (a node path as
/// kernel would let a guest read any file of the node).
pub fn tenant_spec(
    caller: &Caller,
    spec: &mut crate::vm_types::VmSpec,
    s: &AppState,
) -> Result<(), ApiError> {
    let Some(tenant) = caller.only_tenant() else {
        return Ok(());
    };
    let tag = spec
        .tags
        .entry("tenant".into())
        .or_insert_with(|| tenant.into());
    if tag != tenant {
        return Err(forbidden(format!(
            "tags.tenant '{tag}': tenant '{tenant}' defines VMs of its own only"
        )));
    }
    let mut volumes: Vec<&str> = spec.disks.iter().map(|d| d.volume.as_str()).collect();
    if let crate::vm_types::Boot::Kernel { kernel, initrd, .. } = &spec.boot {
        volumes.push(kernel);
        volumes.extend(initrd.as_deref());
    }
    for v in volumes {
        let owner = v
            .parse::<VolumeRef>()
            .ok()
            .and_then(|v| s.storage.volume_tenant(&v).ok().flatten());
        if owner.as_deref() != Some(tenant) {
            return Err(forbidden(format!(
                "'{v}': tenant '{tenant}' may use its own volumes only (no node paths)"
            )));
        }
    }
    Ok(())
}
