//! Live migration, the VMM side: the destination's VMM waiting with
//! `--incoming` (`incoming`, `abort_incoming`) and the source's VMM sending
//! the VM (`migrate_out`). The cluster (cluster/migrate.rs) drives both ends
//! and moves the VM's owner in the store.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::process::VmmProcess;
use super::supervisor::{wait_for_exit, Waited};
use super::{launch_args, vmm_api, Slot, StopKind, Vms};
use crate::error::ApiError;
use crate::tasks::TaskCtx;
use crate::vm_types::{VmInfo, VmSpec, VmState};

/// How long the destination's VMM may wait for the source and the VM.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long the destination's VMM may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the source's progress is read.
const POLL: Duration = Duration::from_millis(100);
/// A source VMM that has handed the VM over gets this long to exit.
const LEAVE_GRACE: Duration = Duration::from_secs(10);
/// A source VMM that has handed the VM over exits by itself this long
/// after (it waits only for this agent to read the figures): an agent
/// killed mid-migration leaves no VM-less VMM behind.
const LINGER_MS: u64 = 10_000;

/// What the source asks of its VMM (`PUT /vm/migrate`).
pub struct MigrationOut {
    /// `tcp://ADDR:PORT` of the destination's VMM.
    pub url: String,
    /// `shared` or `copy`.
    pub disks: String,
    pub max_downtime_ms: u64,
    /// A cap on the transfer rate in Mbit/s (0: none).
    pub bandwidth_mbps: u64,
}

impl Vms {
    /// Destination: defines the VM with its own identity and starts a VMM
    /// waiting on `url`. Until the VM runs here, its run counts as being
    /// stopped on purpose: a failed migration ends that VMM, which is no
    /// crash to restart (the VM still runs on the source).
    pub async fn incoming(
        &self,
        spec: VmSpec,
        uuid: String,
        url: &str,
    ) -> Result<VmInfo, ApiError> {
        let name = spec.name.clone();
        self.define_as(spec, uuid)?;
        let slot = self.get(&name)?;
        match self.start_incoming(&slot, url).await {
            Ok(()) => Ok(slot.info()),
            Err(e) => {
                let _ = self.forget_locked(&slot, &name);
                Err(e)
            }
        }
    }

    async fn start_incoming(&self, slot: &Arc<Slot>, url: &str) -> Result<(), ApiError> {
        let _op = slot.op.lock().await;
        let spec = slot.lock().def.spec.clone();
        let running = self.running_memory(&slot.uuid);
        self.inner
            .capacity
            .check(&spec.name, spec.memory_mib, &running)
            .map_err(ApiError::unavailable)?;
        let disks = self.resolve_disks(&spec)?;
        // The VM's NICs join its networks here before the VMM opens them.
        let spec = self.attach_nics(slot, &spec).await?;
        let spawned = match launch_args::incoming_args(slot, &spec, &disks, url) {
            Ok(args) => {
                let confine = super::confine::confinement(slot, &spec, None, &disks);
                self.spawn_vmm(slot, &spec.name, args, confine, Vec::new())
                    .await
            }
            Err(e) => Err(ApiError::bad_request(e)),
        };
        let mut run = match spawned {
            Ok(run) => run,
            Err(e) => {
                self.inner.config.networks.detach(&slot.uuid).await;
                return Err(e);
            }
        };
        run.stopping = Some(StopKind::Hard);
        let (id, process) = (run.id, run.process.clone());
        {
            let mut s = slot.lock();
            s.run = Some(run);
            s.state = VmState::Starting;
        }
        self.watch(slot.clone(), id, process.clone());
        if let Err(e) = wait_listening(slot, &process).await {
            let _ = process.signal(libc::SIGKILL);
            let _ = wait_for_exit(slot, id, LEAVE_GRACE, None).await;
            return Err(e);
        }
        let (vms, slot) = (self.clone(), slot.clone());
        tokio::spawn(async move { vms.land(&slot, id).await });
        Ok(())
    }

    /// Waits until the migrated VM is here (the VMM's API answers only
    /// then), attaches its console and runs it.
    async fn land(&self, slot: &Arc<Slot>, run_id: u64) {
        let Some(process) = slot
            .lock()
            .run
            .as_ref()
            .filter(|r| r.id == run_id)
            .map(|r| r.process.clone())
        else {
            return;
        };
        match self
            .attach_and_resume(slot, &process, RECEIVE_TIMEOUT)
            .await
        {
            Ok(()) => {
                let mut s = slot.lock();
                if let Some(r) = s.run.as_mut().filter(|r| r.id == run_id) {
                    r.stopping = None;
                    s.state = VmState::Running;
                }
                let spec = s.def.spec.clone();
                drop(s);
                slot.console.note("migrated here");
                if let Ok(disks) = self.resolve_disks(&spec) {
                    self.stamp_disks(slot, &disks, process.pid);
                }
            }
            Err(e) => {
                // The VM never arrived (the source gave up, or died): no
                // half VM stays here.
                slot.console
                    .note(&format!("incoming migration failed: {}", e.1));
                let _ = process.signal(libc::SIGKILL);
                let _ = wait_for_exit(slot, run_id, LEAVE_GRACE, None).await;
                if let Err(e) = self.undefine(&slot.name(), false).await {
                    eprintln!("vireo-agent: dropping '{}': {}", slot.name(), e.1);
                }
            }
        }
    }

    /// Destination: the source gave up; the half VM here goes (its VMM
    /// stopped, its definition removed). A VM that runs here is refused.
    pub async fn abort_incoming(&self, name: &str) -> Result<(), ApiError> {
        let slot = self.get(name)?;
        if slot.lock().state == VmState::Running {
            return Err(ApiError::conflict(format!(
                "VM '{name}' runs here; it is no incoming migration"
            )));
        }
        if slot.is_running() {
            let _ = self.destroy(&slot).await;
        }
        match self.undefine(name, false).await {
            // The VMM's end already took the VM away (`land`).
            Err(e) if e.0 == axum::http::StatusCode::NOT_FOUND => Ok(()),
            done => done,
        }
    }

    /// Source: the VM goes to `out.url`, progress in bytes to `ctx`. Once
    /// the destination runs it, `handed_over` runs (the cluster moves the
    /// VM's owner), then this VMM is stopped and the VM's definition here
    /// removed. On failure the VM keeps running here. The VM's `op` lock
    /// is held throughout: nothing else starts, stops or edits it meanwhile.
    pub async fn migrate_out(
        &self,
        slot: &Arc<Slot>,
        out: MigrationOut,
        ctx: &TaskCtx,
        handed_over: impl Future<Output = ()>,
    ) -> Result<Value, String> {
        let _op = slot.op.lock().await;
        let name = slot.name();
        let run = slot
            .lock()
            .run
            .clone()
            .filter(|r| r.stopping.is_none())
            .ok_or_else(|| format!("VM '{name}' is not running"))?;
        let body = json!({
            "url": out.url,
            "disks": out.disks,
            "max_downtime_ms": out.max_downtime_ms,
            "bandwidth_mbps": out.bandwidth_mbps,
            // Stays to report the final figures; stopped below.
            "exit_when_done": false,
            "linger_ms": LINGER_MS,
        });
        let socket = slot.api_socket();
        let asked = vmm_api::call(
            &socket,
            "PUT",
            "/vm/migrate",
            Some(&body.to_string()),
            API_TIMEOUT,
        )
        .await
        .map_err(|e| format!("the VMM did not answer: {e}"))?;
        if !asked.ok() {
            return Err(format!("the VMM refused to migrate: {}", asked.error()));
        }
        let status = follow(slot, ctx).await?;
        handed_over.await;
        if let Some(r) = slot.lock().run.as_mut().filter(|r| r.id == run.id) {
            r.stopping = Some(StopKind::Hard);
        }
        let _ = vmm_api::call(&socket, "PUT", "/vm/shutdown", None, API_TIMEOUT).await;
        if let Waited::TimedOut = wait_for_exit(slot, run.id, LEAVE_GRACE, None).await {
            let _ = run.process.signal(libc::SIGKILL);
            let _ = wait_for_exit(slot, run.id, LEAVE_GRACE, None).await;
        }
        if let Err(e) = self.forget_locked(slot, &name) {
            eprintln!("vireo-agent: '{name}' migrated away: {}", e.1);
        }
        Ok(status)
    }
}

/// Waits until the destination's VMM listens (it says so on its log), so
/// the source's connection finds it; a VMM that exits first says why.
async fn wait_listening(slot: &Slot, process: &VmmProcess) -> Result<(), ApiError> {
    let log = slot.dir.join("vmm.log");
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("waiting for a migration") {
            return Ok(());
        }
        if process.has_exited() || Instant::now() > deadline {
            let why = text.lines().last().unwrap_or("no message").to_string();
            return Err(ApiError::internal(format!(
                "the VMM does not wait for the VM: {why}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads `GET /vm/migration` until the migration ends: its final status
/// once the destination runs the VM, or why it did not. A cancelled task
/// asks the VMM to cancel (the VM runs on here unless the switch-over
/// came first).
async fn follow(slot: &Slot, ctx: &TaskCtx) -> Result<Value, String> {
    let mut cancel_asked = false;
    loop {
        tokio::time::sleep(POLL).await;
        if ctx.cancelled() && !cancel_asked {
            cancel_asked = true;
            let socket = slot.api_socket();
            let asked = vmm_api::call(&socket, "PUT", "/vm/migration/cancel", None, API_TIMEOUT);
            if let Err(e) = asked.await {
                eprintln!("vireo-agent: cancelling '{}': {e}", slot.name());
            }
        }
        let answer = vmm_api::call(
            &slot.api_socket(),
            "GET",
            "/vm/migration",
            None,
            API_TIMEOUT,
        )
        .await
        .map_err(|e| format!("the VMM did not answer: {e}"))?;
        let status: Value =
            serde_json::from_str(&answer.body).map_err(|e| format!("GET /vm/migration: {e}"))?;
        let sent = status["bytes_sent"].as_u64().unwrap_or(0);
        let left = status["bytes_remaining"].as_u64().unwrap_or(0);
        ctx.progress(sent, sent + left);
        let error = status["error"].as_str().unwrap_or("no reason given");
        match status["phase"].as_str().unwrap_or("") {
            "completed" => return Ok(status),
            "cancelled" => return Err("cancelled; the VM runs on here".into()),
            "failed" => {
                return Err(format!(
                    "the migration failed: {error}; the VM runs on here"
                ))
            }
            "unknown" => {
                return Err(format!(
                    "the destination did not confirm ({error}); the VM stays paused here and \
                     must be resumed only if the destination does not run it"
                ))
            }
            _ => {}
        }
    }
}
