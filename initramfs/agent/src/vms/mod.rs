//! The node's VMs: persistent definitions (`def`), one vireo-vmm per
//! running VM started through a `Launcher` and watched by the supervisor
//! (`supervisor`), its serial console fanned out (`console`), boot from the
//! VM's own disk (`bootdisk`), and the REST routes (`routes`).
//!
//! Locking: the table (`Vms::slots`) and each VM's `SlotState` are plain
//! mutexes held for a few field updates, never across an await. Lifecycle
//! operations on one VM (start, edit, undefine, beginning a shutdown) take
//! that VM's `op` lock, an async mutex, so two of them never interleave;
//! waiting for a VMM to exit holds no lock at all (`exits` is a watch).

pub mod bootdisk;
mod confine;
pub mod console;
pub mod def;
mod handoff;
pub mod host;
pub mod jailed;
mod launch_args;
pub mod launcher;
mod migrate;
mod owner_stamp;
pub mod process;
pub mod resources;
pub mod routes;
mod runtime;
mod supervisor;
pub mod vmm_api;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::error::ApiError;
use crate::storage::{Storage, VolumeRef, VolumeUsers};
use crate::store::Paths;
use crate::vm_types::{ExitInfo, VmInfo, VmSpec, VmState};
use console::ConsoleHub;
use def::VmDef;
use launcher::Launcher;
pub use migrate::MigrationOut;
use process::VmmProcess;
use resources::Capacity;

/// What the VM manager is configured with.
#[derive(Clone)]
pub struct VmsConfig {
    pub vmm: PathBuf,
    pub launcher: Arc<dyn Launcher>,
    /// `--vm-memory-mib`: memory VMs may use, instead of MemTotal less a reserve.
    pub memory_limit_mib: Option<u64>,
    /// How long a graceful shutdown waits for the guest by default.
    pub shutdown_timeout: Duration,
    /// The networks VM NICs attach to.
    pub networks: crate::networks::Networks,
}

/// The VM manager: cheap to clone, shared by the routes.
#[derive(Clone)]
pub struct Vms {
    inner: Arc<Inner>,
}

struct Inner {
    paths: Arc<Paths>,
    storage: Storage,
    config: VmsConfig,
    capacity: Capacity,
    slots: Mutex<BTreeMap<String, Arc<Slot>>>,
    /// This node's name in the VMs' owner stamps (the cluster's name for
    /// it once known, else the host name).
    node_name: std::sync::OnceLock<String>,
}

/// One defined VM.
pub struct Slot {
    pub uuid: String,
    /// `RUN/vms/UUID`: sockets, pid file, exit record, console log.
    pub dir: PathBuf,
    pub console: Arc<ConsoleHub>,
    /// One lifecycle operation at a time.
    op: tokio::sync::Mutex<()>,
    state: Mutex<SlotState>,
    /// Bumped each time a run of this VM ends.
    exits: watch::Sender<u64>,
    /// False while the agent's start has yet to re-adopt this VM (or, on
    /// a node's boot, autostart it): lifecycle requests wait for it
    /// (`Vms::settled`), so none races the agent's own start of the VM.
    recovered: watch::Sender<bool>,
}

struct SlotState {
    def: VmDef,
    state: VmState,
    run: Option<Run>,
    last_exit: Option<ExitInfo>,
    restarts: u32,
    /// When recent crash restarts happened (seconds), for `on_crash: restart`.
    crash_restarts: VecDeque<u64>,
    /// Undefined: a watcher that still holds the slot must not act on it.
    removed: bool,
}

/// A running VMM.
#[derive(Clone)]
struct Run {
    /// Tells one run from the next, so a late watcher leaves a newer run alone.
    id: u64,
    process: Arc<VmmProcess>,
    started_at: u64,
    /// Set once the agent asked it to stop: its end is then not a crash.
    stopping: Option<StopKind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopKind {
    Graceful,
    Hard,
}

/// How long a request waits for the agent's start to re-adopt or
/// autostart its VM (`Vms::settled`).
const RECOVERY_WAIT: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Slot {
    /// `recovered`: false for a VM loaded at the agent's start (`recover`
    /// deals with it), true for one defined since.
    fn new(def: VmDef, run_root: &Path, recovered: bool) -> Arc<Self> {
        let dir = run_root.join(&def.uuid);
        let _ = std::fs::create_dir_all(&dir);
        Arc::new(Slot {
            uuid: def.uuid.clone(),
            console: ConsoleHub::new(&dir),
            dir,
            op: tokio::sync::Mutex::new(()),
            state: Mutex::new(SlotState {
                def,
                state: VmState::Stopped,
                run: None,
                last_exit: None,
                restarts: 0,
                crash_restarts: VecDeque::new(),
                removed: false,
            }),
            exits: watch::channel(0).0,
            recovered: watch::channel(recovered).0,
        })
    }

    fn mark_recovered(&self) {
        self.recovered.send_replace(true);
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        lock(&self.state)
    }

    pub fn name(&self) -> String {
        self.lock().def.spec.name.clone()
    }

    pub fn info(&self) -> VmInfo {
        let s = self.lock();
        VmInfo {
            uuid: s.def.uuid.clone(),
            spec: s.def.spec.clone(),
            state: s.state,
            pid: s.run.as_ref().map(|r| r.process.pid),
            started_at: s.run.as_ref().map(|r| r.started_at),
            last_exit: s.last_exit.clone(),
            restarts: s.restarts,
        }
    }

    fn is_running(&self) -> bool {
        self.lock().run.is_some()
    }

    pub fn api_socket(&self) -> PathBuf {
        runtime::vmm_dir(&self.dir).join("api.sock")
    }

    pub fn console_socket(&self) -> PathBuf {
        runtime::vmm_dir(&self.dir).join("console.sock")
    }
}

impl Vms {
    /// Loads every definition; nothing runs yet (see `recover`).
    pub fn new(paths: Arc<Paths>, storage: Storage, config: VmsConfig) -> std::io::Result<Self> {
        let run_root = paths.run.join("vms");
        std::fs::create_dir_all(&run_root)?;
        let mut slots = BTreeMap::new();
        for def in def::load_all(&paths.state)? {
            slots.insert(def.spec.name.clone(), Slot::new(def, &run_root, false));
        }
        Ok(Vms {
            inner: Arc::new(Inner {
                capacity: Capacity::of_node(config.memory_limit_mib),
                paths,
                storage,
                config,
                slots: Mutex::new(slots),
                node_name: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Re-adopts the VMMs a previous agent left running (or reports how
    /// they ended), then, on the agent's first start since the node
    /// booted, starts the autostart VMs. Each VM is released to requests
    /// (`settled`) once it is done with: at once, or after its autostart.
    pub async fn recover(&self) {
        let first_start = runtime::first_start_this_boot(&self.inner.paths.run);
        let mut to_start = Vec::new();
        for slot in self.all() {
            self.adopt_or_report(&slot).await;
            let wanted = first_start && {
                let s = slot.lock();
                s.def.spec.autostart && s.run.is_none()
            };
            match wanted {
                true => to_start.push(slot),
                false => slot.mark_recovered(),
            }
        }
        self.autostart(to_start).await;
    }

    /// VM `name` once the agent's start is done with it (`recover`): a
    /// request made meanwhile waits, so that a start finds the VM the
    /// agent re-adopted or autostarted running (409), a stop finds the run
    /// to stop, and an autostart never comes after a user's stop. 409 if
    /// that takes longer than `RECOVERY_WAIT`.
    pub async fn settled(&self, name: &str) -> Result<Arc<Slot>, ApiError> {
        let slot = self.get(name)?;
        let mut recovered = slot.recovered.subscribe();
        let waited = tokio::time::timeout(RECOVERY_WAIT, recovered.wait_for(|done| *done))
            .await
            .is_ok_and(|r| r.is_ok());
        match waited {
            true => Ok(slot),
            false => Err(ApiError::conflict(format!(
                "VM '{name}' is still being re-adopted or autostarted by the agent's start; \
                 try again in a moment"
            ))),
        }
    }

    /// The name owner stamps give this node (set once, by the cluster).
    pub fn set_node_name(&self, name: &str) {
        let _ = self.inner.node_name.set(name.to_string());
    }

    fn node_name(&self) -> String {
        self.inner.node_name.get().cloned().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            host.trim().to_string()
        })
    }

    /// Owner stamps naming `run`'s VMM on `disks` (owner_stamp.rs).
    fn stamp_disks(&self, slot: &Slot, disks: &[launch_args::Disk], pid: i32) {
        let stamp = owner_stamp::Stamp {
            node: self.node_name(),
            vm: slot.name(),
            uuid: slot.uuid.clone(),
            pid,
            since: now(),
        };
        owner_stamp::write(disks, &stamp);
    }

    pub fn shutdown_timeout(&self) -> Duration {
        self.inner.config.shutdown_timeout
    }

    fn all(&self) -> Vec<Arc<Slot>> {
        lock(&self.inner.slots).values().cloned().collect()
    }

    pub fn list(&self) -> Vec<VmInfo> {
        self.all().iter().map(|s| s.info()).collect()
    }

    pub fn get(&self, name: &str) -> Result<Arc<Slot>, ApiError> {
        lock(&self.inner.slots)
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no VM named '{name}'")))
    }

    fn run_root(&self) -> PathBuf {
        self.inner.paths.run.join("vms")
    }

    /// POST /vms: a new VM, stopped.
    pub fn define(&self, spec: VmSpec) -> Result<VmInfo, ApiError> {
        self.define_as(spec, uuid::Uuid::new_v4().to_string())
    }

    /// A new VM with a given identity (a cluster VM taken over from a dead
    /// node keeps its own).
    pub fn define_as(&self, mut spec: VmSpec, uuid: String) -> Result<VmInfo, ApiError> {
        def::validate(&mut spec, &self.inner.storage).map_err(ApiError::bad_request)?;
        self.inner.config.networks.check_nics(&spec.nics)?;
        let mut slots = lock(&self.inner.slots);
        if slots.contains_key(&spec.name) {
            return Err(ApiError::conflict(format!(
                "a VM named '{}' already exists",
                spec.name
            )));
        }
        self.check_volumes_free(&slots, &spec, None)?;
        let def = VmDef {
            uuid,
            created: now(),
            spec,
        };
        def::save(&self.inner.paths.state, &def)
            .map_err(|e| ApiError::internal(format!("cannot store the VM: {e}")))?;
        let slot = Slot::new(def, &self.run_root(), true);
        let info = slot.info();
        slots.insert(info.spec.name.clone(), slot);
        Ok(info)
    }

    /// PUT /vms/{name}: a new definition for a stopped VM (may rename it).
    pub async fn edit(&self, name: &str, mut spec: VmSpec) -> Result<VmInfo, ApiError> {
        let slot = self.get(name)?;
        let _op = slot.op.lock().await;
        if slot.is_running() {
            return Err(ApiError::conflict(format!(
                "VM '{name}' is running; stop it before editing it"
            )));
        }
        def::validate(&mut spec, &self.inner.storage).map_err(ApiError::bad_request)?;
        self.inner.config.networks.check_nics(&spec.nics)?;
        let mut slots = lock(&self.inner.slots);
        if spec.name != name && slots.contains_key(&spec.name) {
            return Err(ApiError::conflict(format!(
                "a VM named '{}' already exists",
                spec.name
            )));
        }
        self.check_volumes_free(&slots, &spec, Some(&slot.uuid))?;
        let mut new_def = slot.lock().def.clone();
        new_def.spec = spec;
        def::save(&self.inner.paths.state, &new_def)
            .map_err(|e| ApiError::internal(format!("cannot store the VM: {e}")))?;
        let new_name = new_def.spec.name.clone();
        slot.lock().def = new_def;
        if new_name != name {
            slots.remove(name);
            slots.insert(new_name, slot.clone());
        }
        Ok(slot.info())
    }

    /// DELETE /vms/{name}: refused while it runs. Its volumes stay unless
    /// `delete_volumes`.
    pub async fn undefine(&self, name: &str, delete_volumes: bool) -> Result<(), ApiError> {
        let slot = self.get(name)?;
        let _op = slot.op.lock().await;
        if slot.is_running() {
            return Err(ApiError::conflict(format!(
                "VM '{name}' is running; destroy or shut it down first"
            )));
        }
        let spec = slot.lock().def.spec.clone();
        let doomed: Vec<VolumeRef> = match delete_volumes {
            true => self.volumes_to_delete(&spec, &slot.uuid)?,
            false => Vec::new(),
        };
        self.forget_locked(&slot, name)?;
        for v in doomed {
            self.delete_volume(&v);
        }
        Ok(())
    }

    /// Removes a stopped VM's definition and run directory (not its
    /// volumes); the caller holds its `op` lock.
    fn forget_locked(&self, slot: &Slot, name: &str) -> Result<(), ApiError> {
        // Another path (an incoming VM's VMM ending without the VM) may have
        // forgotten it while this one waited for the lock: done already,
        // and the name may belong to a new VM by now.
        if slot.lock().removed {
            return Ok(());
        }
        def::remove(&self.inner.paths.state, &slot.uuid)
            .map_err(|e| ApiError::internal(format!("cannot remove the VM's definition: {e}")))?;
        slot.lock().removed = true;
        lock(&self.inner.slots).remove(name);
        let _ = std::fs::remove_dir_all(&slot.dir);
        Ok(())
    }

    /// The disks a VM being undefined may take with it: none that another
    /// VM also uses (then nothing is deleted at all).
    fn volumes_to_delete(&self, spec: &VmSpec, uuid: &str) -> Result<Vec<VolumeRef>, ApiError> {
        let mut out = Vec::new();
        for d in &spec.disks {
            let Ok(v) = d.volume.parse::<VolumeRef>() else {
                continue;
            };
            let others: Vec<String> = self.users_except(&v, Some(uuid)).into_iter().collect();
            if !others.is_empty() {
                return Err(ApiError::conflict(format!(
                    "volume '{v}' is also used by {}; nothing was deleted",
                    others.join(", ")
                )));
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Removes a volume's file. The storage API has no volume deletion yet;
    /// when it does, this becomes a call to it.
    fn delete_volume(&self, v: &VolumeRef) {
        if let Ok(resolved) = self.inner.storage.resolve(v) {
            if let Err(e) = std::fs::remove_file(&resolved.path) {
                eprintln!("vireo-agent: cannot delete volume {v}: {e}");
            }
        }
    }

    /// Refuses a definition that would write a volume another VM uses, or
    /// use one another VM writes (two writers corrupt a disk).
    fn check_volumes_free(
        &self,
        slots: &BTreeMap<String, Arc<Slot>>,
        spec: &VmSpec,
        except: Option<&str>,
    ) -> Result<(), ApiError> {
        for (v, writes) in def::volumes(spec) {
            for slot in slots.values() {
                if Some(slot.uuid.as_str()) == except {
                    continue;
                }
                let other = slot.lock().def.spec.clone();
                let clash = def::volumes(&other)
                    .into_iter()
                    .any(|(o, o_writes)| o == v && (writes || o_writes));
                if clash {
                    return Err(ApiError::conflict(format!(
                        "volume '{v}' is in use by VM '{}'",
                        other.name
                    )));
                }
            }
        }
        Ok(())
    }

    fn users_except(&self, v: &VolumeRef, except: Option<&str>) -> Vec<String> {
        self.all()
            .iter()
            .filter(|s| Some(s.uuid.as_str()) != except)
            .filter_map(|s| {
                let spec = s.lock().def.spec.clone();
                def::volumes(&spec)
                    .iter()
                    .any(|(u, _)| u == v)
                    .then_some(spec.name)
            })
            .collect()
    }

    /// Guest memory (MiB) of every VM with a VMM, except `uuid`.
    fn running_memory(&self, except: &str) -> Vec<u64> {
        self.all()
            .iter()
            .filter(|s| s.uuid != except)
            .filter_map(|s| {
                let st = s.lock();
                st.run.as_ref().map(|_| st.def.spec.memory_mib)
            })
            .collect()
    }

    /// Starts the autostart VMs, one after another, releasing each to
    /// requests once it is started (or failed to).
    async fn autostart(&self, slots: Vec<Arc<Slot>>) {
        for slot in slots {
            if let Err(e) = self.start(&slot).await {
                eprintln!("vireo-agent: autostart of {}: {}", slot.name(), e.1);
            }
            slot.mark_recovered();
        }
    }
}

impl VolumeUsers for Vms {
    fn users_of(&self, v: &VolumeRef) -> Vec<String> {
        self.users_except(v, None)
    }
}
