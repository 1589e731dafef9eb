//! Saving and restoring every device of a VM: the manager walks its
//! devices; each one's state code lives beside it (`serial.rs`,
//! `virtio/persist.rs`). A restore needs the same devices in the same
//! slots: what the saved configuration (with `--disk`/`--net` overrides)
//! builds.

use serde::{Deserialize, Serialize};

use super::{DeviceManager, VirtioKind};
use crate::devices::bus::lock;
use crate::devices::legacy::serial::SerialSnapshot;
use crate::devices::virtio::persist::{MmioState, PersistError};

#[derive(Serialize, Deserialize)]
pub struct DevicesState {
    pub serial: SerialSnapshot,
    /// x86_64's keyboard controller and clock (absent in older states:
    /// those devices then start from their power-on state).
    #[serde(default)]
    pub i8042: Option<crate::devices::legacy::i8042::I8042State>,
    #[serde(default)]
    pub cmos: Option<crate::devices::legacy::cmos::CmosState>,
    pub virtio: Vec<VirtioSlotState>,
}

#[derive(Serialize, Deserialize)]
pub struct VirtioSlotState {
    pub kind: VirtioKind,
    pub id: String,
    pub transport: MmioState,
}

#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    #[error("the VM has {found} virtio devices, the saved one had {saved}")]
    Count { saved: usize, found: usize },
    #[error("virtio slot {slot} holds {found:?} '{found_id}', the saved VM had {saved:?} '{saved_id}' there")]
    Kind {
        slot: usize,
        saved: VirtioKind,
        saved_id: String,
        found: VirtioKind,
        found_id: String,
    },
    #[error("device '{id}': {source}")]
    Device { id: String, source: PersistError },
    #[error("the serial console: {0}")]
    Serial(std::io::Error),
    #[error("the CMOS clock: {0}")]
    Cmos(String),
}

impl DeviceManager {
    /// Every device's state; the VM (vCPUs and workers) must be paused.
    pub fn save(&self) -> Result<DevicesState, DevicesError> {
        let virtio = self
            .virtio
            .iter()
            .map(|slot| {
                let transport =
                    lock(&slot.transport)
                        .save()
                        .map_err(|source| DevicesError::Device {
                            id: slot.id.clone(),
                            source,
                        })?;
                Ok(VirtioSlotState {
                    kind: slot.kind,
                    id: slot.id.clone(),
                    transport,
                })
            })
            .collect::<Result<_, DevicesError>>()?;
        Ok(DevicesState {
            serial: lock(&self.serial).save(),
            #[cfg(target_arch = "x86_64")]
            i8042: Some(lock(&self.i8042).save()),
            #[cfg(target_arch = "x86_64")]
            cmos: Some(lock(&self.cmos).save()),
            #[cfg(not(target_arch = "x86_64"))]
            i8042: None,
            #[cfg(not(target_arch = "x86_64"))]
            cmos: None,
            virtio,
        })
    }

    /// Puts freshly built devices in the saved state, workers parked.
    pub fn restore(&self, state: &DevicesState) -> Result<(), DevicesError> {
        if state.virtio.len() != self.virtio.len() {
            return Err(DevicesError::Count {
                saved: state.virtio.len(),
                found: self.virtio.len(),
            });
        }
        for (n, (saved, slot)) in state.virtio.iter().zip(&self.virtio).enumerate() {
            if saved.kind != slot.kind {
                return Err(DevicesError::Kind {
                    slot: n,
                    saved: saved.kind,
                    saved_id: saved.id.clone(),
                    found: slot.kind,
                    found_id: slot.id.clone(),
                });
            }
            lock(&slot.transport)
                .restore(&saved.transport)
                .map_err(|source| DevicesError::Device {
                    id: slot.id.clone(),
                    source,
                })?;
        }
        self.restore_legacy(state)?;
        lock(&self.serial)
            .restore(&state.serial)
            .map_err(DevicesError::Serial)
    }

    #[cfg(target_arch = "x86_64")]
    fn restore_legacy(&self, state: &DevicesState) -> Result<(), DevicesError> {
        if let Some(saved) = &state.i8042 {
            lock(&self.i8042).restore(saved);
        }
        match &state.cmos {
            Some(saved) => lock(&self.cmos).restore(saved).map_err(DevicesError::Cmos),
            None => Ok(()),
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn restore_legacy(&self, _state: &DevicesState) -> Result<(), DevicesError> {
        Ok(())
    }
}
