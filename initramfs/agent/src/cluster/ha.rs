//! HA with fencing (docs/cluster.md has the rule and the arithmetic).
//!
//! Each step, on a quorate node: the watchdog is armed while any HA VM is
//! defined here and fed; nodes missing from the view are timed; an HA VM
//! whose owner has been missing for the fencing bound (watchdog timeout +
//! margin + fence delay) is taken by one survivor, chosen by name among the
//! view's nodes, through a compare-and-set of its `vm/NAME` entry: the
//! store's one order lets exactly one such write through, and only its
//! writer starts the VM. On a node without quorum: its running HA VMs are
//! stopped at once (the quorum guard's thread) and the watchdog is no
//! longer fed, so the node is reset before the bound runs out even if
//! this agent hangs. Should quorum come
//! back first, the VMs stopped that way are claimed back by the same
//! compare-and-set (a survivor may have won it) and started again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use vireo_cluster::store::{StoreError, StoreStatus};

use super::watchdog::{self, Watchdog};
use super::{Cluster, VmRecord};
use crate::vms::Vms;

/// How often the feeder looks at quorum and feeds.
pub const FEED_EVERY: Duration = Duration::from_millis(250);

/// HA settings (agent command line).
#[derive(clap::Args, Clone, Debug)]
pub struct HaSettings {
    /// The fencing watchdog: a device (`/dev/watchdog`), or `file:PATH`
    /// (tests: a supervisor outside the agent kills the node on expiry).
    #[arg(long, default_value = "/dev/watchdog")]
    pub watchdog: String,
    /// The watchdog's timeout (ms): a node that stops feeding it is reset
    /// this long after its last feed.
    #[arg(long, default_value = "8000")]
    pub watchdog_timeout_ms: u64,
    /// Added to the bound for the watchdog's granularity and timer slack
    /// (ms); the rest of the bound comes from the totem timers
    /// (docs/cluster.md).
    #[arg(long, default_value = "1000")]
    pub fence_margin_ms: u64,
    /// Further wait before a dead node's VMs restart (ms), e.g. for a node
    /// whose reset takes long or for flapping links.
    #[arg(long, default_value = "0")]
    pub fence_delay_ms: u64,
    /// Opt-in load balancing (balance.rs): every this many seconds this
    /// node moves a running VM to a less loaded node when that evens out
    /// the CPU or the memory their running VMs use (0: never).
    #[arg(long, env = "VIREO_BALANCE_EVERY_S", default_value = "0")]
    pub balance_every_s: u64,
    /// With balancing on: a node whose VMs keep more than this share of its
    /// CPUs busy (percent, two periods in a row) moves a busy VM to a node
    /// that stays less busy after the move.
    #[arg(long, env = "VIREO_BALANCE_CPU_PERCENT", default_value = "80")]
    pub balance_cpu_percent: u32,
}

impl HaSettings {
    pub fn watchdog_timeout(&self) -> Duration {
        Duration::from_millis(self.watchdog_timeout_ms)
    }

    /// How long survivors wait after a node left their view before they
    /// restart its HA VMs: the watchdog timeout, plus how much earlier a
    /// survivor may see the node go than the node sees itself alone (less
    /// than one token timeout: a token rotation longer than that is a token
    /// loss), plus the node's last 4 join periods out of any ring and one
    /// feeder period, plus the margin and the fence delay.
    pub fn fence_bound(&self, token_ms: u32, join_ms: u32) -> Duration {
        let totem = u64::from(token_ms) + 4 * u64::from(join_ms);
        Duration::from_millis(
            self.watchdog_timeout_ms
                + totem
                + FEED_EVERY.as_millis() as u64
                + self.fence_margin_ms
                + self.fence_delay_ms,
        )
    }
}

pub struct Ha {
    /// Whether the feeder keeps the watchdog armed: some HA VM is here.
    wanted: Arc<AtomicBool>,
    missing: BTreeMap<u32, Instant>,
    /// HA VMs this node stopped because it lost quorum.
    fenced_here: BTreeSet<String>,
    /// Those the quorum guard stopped since the last step.
    stopped_by_guard: Arc<Mutex<BTreeSet<String>>>,
}

impl Ha {
    /// Also starts the feeder and the quorum guard, threads of their own:
    /// the cluster thread's step can wait on a store write (a view change
    /// under way) or on a shared pool's mount gone silent for longer than
    /// the watchdog's timeout, and neither a feed nor the stop of the HA
    /// VMs on a lost quorum may wait for it.
    pub fn new(cluster: &Cluster, vms: &Vms, rt: Handle) -> Ha {
        let wanted = Arc::new(AtomicBool::new(false));
        let (c, w) = (cluster.clone(), wanted.clone());
        let spawned = std::thread::Builder::new()
            .name("vireo-watchdog".into())
            .spawn(move || feed_while_quorate(&c, &w));
        if let Err(e) = spawned {
            eprintln!("vireo-agent: cannot start the watchdog feeder: {e}");
        }
        let stopped_by_guard = Arc::new(Mutex::new(BTreeSet::new()));
        let (c, v, stopped) = (cluster.clone(), vms.clone(), stopped_by_guard.clone());
        let spawned = std::thread::Builder::new()
            .name("vireo-quorum-guard".into())
            .spawn(move || stop_when_quorum_is_lost(&c, &v, &rt, &stopped));
        if let Err(e) = spawned {
            eprintln!("vireo-agent: cannot start the quorum guard: {e}");
        }
        Ha {
            wanted,
            missing: BTreeMap::new(),
            fenced_here: BTreeSet::new(),
            stopped_by_guard,
        }
    }

    /// After this agent (or its node) restarted: HA VMs that this node owns,
    /// that its last record in the store shows running, and that run here
    /// no more (a reset came before the survivors' bound ran out) are
    /// claimed back and started like those stopped for lost quorum.
    pub fn resume_after_restart(&mut self, cluster: &Cluster, vms: &Vms) {
        let me = cluster.me();
        let states = last_states(cluster);
        for v in vms.list() {
            let was = states.get(&(me, v.spec.name.clone())).map(String::as_str);
            let wanted = matches!(was, Some("running" | "starting" | "paused"));
            if v.spec.ha && wanted && v.pid.is_none() {
                self.fenced_here.insert(v.spec.name);
            }
        }
    }

    pub async fn step(&mut self, cluster: &Cluster, vms: &Vms) {
        let status = cluster.store().status();
        if let Ok(mut stopped) = self.stopped_by_guard.lock() {
            self.fenced_here.append(&mut stopped);
        }
        if !Cluster::quorate(&status) {
            // The quorum guard stops the HA VMs; the feeder stopped feeding,
            // so the watchdog fences this node.
            return;
        }
        let local = vms.list();
        self.wanted
            .store(local.iter().any(|v| v.spec.ha), Ordering::Relaxed);
        let view = Cluster::view_nodes(&status);
        self.track_missing(cluster, &view);
        self.claim_back(cluster, vms).await;
        self.take_over(cluster, vms, &view).await;
    }

    /// Since when each node known to the store has been out of the view.
    fn track_missing(&mut self, cluster: &Cluster, view: &BTreeSet<u32>) {
        let mut known: BTreeSet<u32> = cluster
            .vm_records()
            .map(|r| r.values().map(|(owner, _, _)| *owner).collect())
            .unwrap_or_default();
        known.extend(cluster.nodelist().iter().map(|n| n.nodeid));
        self.missing
            .retain(|id, _| !view.contains(id) && known.contains(id));
        for id in known.difference(view) {
            self.missing.entry(*id).or_insert_with(Instant::now);
        }
        cluster.set_missing(self.missing.clone());
    }

    /// Quorum is back: the HA VMs stopped for it run again here, unless a
    /// survivor took them first.
    async fn claim_back(&mut self, cluster: &Cluster, vms: &Vms) {
        let Ok(stored) = cluster.vm_records() else {
            return;
        };
        for name in std::mem::take(&mut self.fenced_here) {
            let Some((owner, version, rec)) = stored.get(&name) else {
                continue;
            };
            if *owner != cluster.me() {
                super::publish::drop_moved_away(cluster, vms).await;
                continue;
            }
            match claim(cluster, &name, rec, *version) {
                Ok(()) => start(vms, &name).await,
                Err(e) => eprintln!("vireo-agent: claiming '{name}' back: {e}"),
            }
        }
    }

    /// Restarts here the HA VMs of nodes missing for the fencing bound that
    /// the choice by name gives this node.
    async fn take_over(&mut self, cluster: &Cluster, vms: &Vms, view: &BTreeSet<u32>) {
        let bound = cluster.fence_bound();
        let fenced: BTreeMap<u32, Duration> = self
            .missing
            .iter()
            .map(|(id, since)| (*id, since.elapsed()))
            .filter(|(_, gone)| *gone >= bound)
            .collect();
        if fenced.is_empty() {
            return;
        }
        let Ok(stored) = cluster.vm_records() else {
            return;
        };
        let was_running = last_states(cluster);
        let (Ok(records), Ok(drained)) = (cluster.records(), cluster.drained()) else {
            return;
        };
        for (name, (owner, version, rec)) in recovery_order(stored) {
            let Some(gone) = fenced.get(&owner) else {
                continue;
            };
            // The survivors that can run it: not drained, with its pools
            // and networks and an armable watchdog, as each last published.
            let survivors: Vec<u32> = view
                .iter()
                .copied()
                .filter(|id| {
                    let fit = records
                        .get(id)
                        .map(|r| cluster.unfit(*id, r, &rec.spec, &drained));
                    fit.is_some_and(|why| why.is_none())
                })
                .collect();
            if !rec.spec.ha || chosen(&name, &survivors) != Some(cluster.me()) {
                continue;
            }
            if let Err(e) = claim(cluster, &name, &rec, version) {
                // Another node's claim came first in the store's order.
                eprintln!("vireo-agent: taking over '{name}': {e}");
                continue;
            }
            eprintln!(
                "vireo-agent: took over HA VM '{name}' from node {owner}, {:.1} s after it left the view",
                gone.as_secs_f64()
            );
            if let Err(e) = vms.define_as(rec.spec.clone(), rec.uuid.clone()) {
                eprintln!("vireo-agent: defining '{name}' here: {}", e.1);
                continue;
            }
            let state = was_running.get(&(owner, name.clone())).map(String::as_str);
            if matches!(state, None | Some("running" | "starting" | "paused")) {
                start(vms, &name).await;
            }
        }
    }
}

/// The order a survivor takes over and starts the VMs of fenced nodes:
/// highest `ha_priority` first, equal priorities by name.
fn recovery_order(
    stored: BTreeMap<String, (u32, u64, VmRecord)>,
) -> Vec<(String, (u32, u64, VmRecord))> {
    let mut ordered: Vec<_> = stored.into_iter().collect();
    // Stable: the map's name order stays among equal priorities.
    ordered.sort_by_key(|(_, (_, _, rec))| std::cmp::Reverse(rec.spec.ha_priority));
    ordered
}

/// The feeder: every FEED_EVERY, if the node is quorate, arms the watchdog
/// while HA VMs are here (disarms it once none are), and feeds it. Without
/// quorum it does nothing at all, so the countdown runs out.
/// The quorum guard: every feeder period, out of quorum, it stops the HA
/// VMs running here and hands their names to the next step (to claim them
/// back should quorum return before a survivor took them).
fn stop_when_quorum_is_lost(
    cluster: &Cluster,
    vms: &Vms,
    rt: &Handle,
    stopped: &Mutex<BTreeSet<String>>,
) {
    let mut syncing_since = None;
    loop {
        std::thread::sleep(FEED_EVERY);
        let status = cluster.store().status();
        let syncing = syncing(cluster, &status, &mut syncing_since);
        if Cluster::quorate(&status) || syncing {
            continue;
        }
        for v in vms.list().iter().filter(|v| v.spec.ha && v.pid.is_some()) {
            eprintln!(
                "vireo-agent: quorum lost: stopping HA VM '{}' (fencing)",
                v.spec.name
            );
            if let Ok(slot) = vms.get(&v.spec.name) {
                if let Err(e) = rt.block_on(vms.destroy(&slot)) {
                    eprintln!("vireo-agent: stopping '{}': {}", v.spec.name, e.1);
                }
            }
            if let Ok(mut names) = stopped.lock() {
                names.insert(v.spec.name.clone());
            }
        }
    }
}

/// A state transfer in a view that is still quorate (a node joined or
/// came back) is no loss of quorum: for up to half the watchdog timeout
/// the guard waits instead of stopping the HA VMs. The feeder does not
/// feed meanwhile, so the fencing bound holds whatever happens; a real
/// loss of quorum (the view not quorate) stops them at once.
fn syncing(cluster: &Cluster, status: &StoreStatus, since: &mut Option<Instant>) -> bool {
    if status.quorate && status.view.is_some() && !Cluster::quorate(status) {
        let since = *since.get_or_insert_with(Instant::now);
        return since.elapsed() < cluster.settings().watchdog_timeout() / 2;
    }
    *since = None;
    false
}

fn feed_while_quorate(cluster: &Cluster, wanted: &AtomicBool) {
    let settings = cluster.settings();
    let mut watchdog: Box<dyn Watchdog> = watchdog::from_arg(&settings.watchdog);
    let mut armed = false;
    let mut failing: Option<String> = None;
    loop {
        std::thread::sleep(FEED_EVERY);
        if !Cluster::quorate(&cluster.store().status()) {
            continue;
        }
        let want = wanted.load(Ordering::Relaxed);
        let result = match (want, armed) {
            (true, false) => watchdog.arm(settings.watchdog_timeout()),
            (true, true) => watchdog.feed(),
            (false, true) => watchdog.disarm(),
            (false, false) => Ok(()),
        };
        cluster.set_watchdog_state(super::placement::WatchdogState {
            armed: result.is_ok() && want,
            error: result.as_ref().err().map(ToString::to_string),
        });
        match result {
            Ok(()) => {
                armed = want;
                failing = None;
            }
            // Said once, not four times a second.
            Err(e) if failing.as_ref() != Some(&e.to_string()) => {
                eprintln!(
                    "vireo-agent: watchdog {}: {e} (HA VMs here are NOT fenced)",
                    settings.watchdog
                );
                failing = Some(e.to_string());
            }
            Err(_) => {}
        }
    }
}

/// The `vm/NAME` entry rewritten with this node as owner, if its version is
/// still `version`.
fn claim(cluster: &Cluster, name: &str, rec: &VmRecord, version: u64) -> Result<(), StoreError> {
    let text = serde_json::to_string(rec).map_err(|e| StoreError::Client(e.to_string()))?;
    let key = format!("vm/{name}");
    cluster
        .store()
        .put_if(&key, &text, Some(cluster.me()), version)
        .map(|_| ())
}

async fn start(vms: &Vms, name: &str) {
    let Ok(slot) = vms.get(name) else { return };
    if let Err(e) = vms.start(&slot).await {
        eprintln!("vireo-agent: starting HA VM '{name}': {}", e.1);
    }
}

/// The states each node last published for its VMs.
fn last_states(cluster: &Cluster) -> BTreeMap<(u32, String), String> {
    let Ok(records) = cluster.records() else {
        return BTreeMap::new();
    };
    records
        .into_iter()
        .flat_map(|(id, r)| r.vms.into_iter().map(move |(n, s)| ((id, n), s)))
        .collect()
}

/// The survivor that restarts VM `name`: the same answer on every node of
/// one view (FNV-1a of the name over the sorted node ids).
pub fn chosen(name: &str, survivors: &[u32]) -> Option<u32> {
    if survivors.is_empty() {
        return None;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Some(survivors[(h % survivors.len() as u64) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_survivor_per_vm_and_all_survivors_used() {
        let survivors = [1, 3];
        let picks: BTreeSet<u32> = (0..20)
            .filter_map(|i| chosen(&format!("vm{i}"), &survivors))
            .collect();
        assert_eq!(picks, BTreeSet::from([1, 3]));
        assert_eq!(chosen("web", &survivors), chosen("web", &survivors));
        assert_eq!(chosen("web", &[]), None);
    }

    #[test]
    fn recovery_goes_by_priority_then_name() {
        let record = |name: &str, ha_priority: i32| {
            let spec: crate::vm_types::VmSpec = serde_json::from_value(serde_json::json!({
                "name": name, "ha": true, "ha_priority": ha_priority,
                "boot": {"kind": "kernel", "kernel": "/k"}
            }))
            .unwrap();
            let rec = VmRecord {
                uuid: format!("uuid-{name}"),
                spec,
            };
            (name.to_string(), (2, 1, rec))
        };
        let stored = BTreeMap::from([
            record("a-low", -5),
            record("b-default", 0),
            record("c-db", 100),
            record("d-default", 0),
            record("e-web", 50),
        ]);
        let order: Vec<String> = recovery_order(stored).into_iter().map(|(n, _)| n).collect();
        assert_eq!(order, ["c-db", "e-web", "b-default", "d-default", "a-low"]);
    }

    #[test]
    fn bound_is_watchdog_token_joins_feed_margin_and_delay() {
        let s = HaSettings {
            watchdog: "/dev/watchdog".into(),
            watchdog_timeout_ms: 8_000,
            fence_margin_ms: 1_000,
            fence_delay_ms: 500,
            balance_every_s: 0,
            balance_cpu_percent: 80,
        };
        // token 1650 (3 nodes), join 50: 8000 + 1650 + 200 + 250 + 1000 + 500.
        assert_eq!(s.fence_bound(1650, 50), Duration::from_millis(11_600));
    }
}
