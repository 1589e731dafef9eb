//! The replicated cluster store: keys with values and owner nodes, locks
//! with holders, one version counter — the same on every node, because
//! every replica applies the same writes in the ring's one order.
//!
//! Rules (docs/membership.md, "The replicated store", says why):
//! - a write is applied only where it is ordered in the view it was sent in,
//!   after that view's state transfer, and only if the view is quorate (a
//!   strict majority of the nodelist's votes); elsewhere it is refused
//!   everywhere alike, so [`Store::put`] and friends answer only once the
//!   write is applied (or refused) on this node, and retry by themselves a
//!   write the view change beat;
//! - at each view the replicas agree on a donor and the others take its
//!   state before they answer reads ([`Store::wait_ready`]);
//! - a lock whose holder is not in a new view is released there;
//! - the state is saved to `dir/state.json` after each change, so a whole
//!   cluster restarted comes back with what it had.
//!
//! ```no_run
//! use vireo_cluster::store::{Store, StoreOptions};
//! let store = Store::open(StoreOptions::new("/run/vireo/groups.sock", "vireo-store"))?;
//! store.wait_ready(std::time::Duration::from_secs(30))?;
//! store.put("vm/100", r#"{"name":"web"}"#, Some(2))?;
//! if store.try_lock("vm/100/run").is_ok() { /* only this client may run VM 100 */ }
//! # Ok::<(), vireo_cluster::store::StoreError>(())
//! ```

mod replica;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vireo_membership::groups::{Event, GroupError, MemberId, ViewId};

use crate::client::{ClientError, GroupClient};
pub use replica::Claim;
use replica::{Out, Replica};
pub use state::{Entry, Lock, Op, Refusal, State};

/// How long a write may wait for sync, the ring and its own delivery.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const RECONNECT: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the store has not received the cluster's state yet")]
    NotReady,
    #[error("this node's view is not quorate: writes are refused")]
    NotQuorate,
    #[error("write refused: {0}")]
    Refused(Refusal),
    #[error("lost the membership service before the write's outcome was known: {0}")]
    Disconnected(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Client(String),
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub socket: PathBuf,
    pub group: String,
    /// Where the state is saved (`state.json`); None: memory only.
    pub dir: Option<PathBuf>,
}

impl StoreOptions {
    pub fn new(socket: impl Into<PathBuf>, group: &str) -> StoreOptions {
        StoreOptions {
            socket: socket.into(),
            group: group.into(),
            dir: None,
        }
    }

    pub fn persist(mut self, dir: impl Into<PathBuf>) -> StoreOptions {
        self.dir = Some(dir.into());
        self
    }
}

/// An applied write, for [`Store::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Applied {
        version: u64,
        from: MemberId,
        op: Op,
    },
    /// Locks released because their holders left the view.
    Released(Vec<(String, MemberId)>),
    /// A state transfer replaced this replica's state (or confirmed it).
    Synced { version: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    pub ready: bool,
    pub synced: bool,
    pub quorate: bool,
    pub view: Option<ViewId>,
    pub member: Option<MemberId>,
    pub members: Vec<MemberId>,
    pub version: u64,
    pub epoch: ViewId,
}

struct Inner {
    replica: Replica,
    client: Option<Arc<GroupClient>>,
    pending: HashMap<u64, Option<Result<u64, StoreError>>>,
    next_id: u64,
    subscribers: Vec<Sender<Change>>,
    closed: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    cond: Condvar,
    opts: StoreOptions,
}

/// A handle on this node's replica (cheap to clone).
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl Store {
    /// Starts the replica: loads `dir/state.json` if any, connects to the
    /// group socket (and reconnects whenever the daemon restarts).
    pub fn open(opts: StoreOptions) -> Result<Store, StoreError> {
        let saved = match &opts.dir {
            Some(dir) => load(dir)?,
            None => None,
        };
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                replica: Replica::new(saved),
                client: None,
                pending: HashMap::new(),
                next_id: 1,
                subscribers: Vec::new(),
                closed: false,
            }),
            cond: Condvar::new(),
            opts,
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("vireo-store".into())
            .spawn(move || run(&s))
            .map_err(|e| StoreError::Client(e.to_string()))?;
        Ok(Store { shared })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the next change of the shared state; once `deadline` has
    /// passed, hands the guard back as the error instead.
    fn wait_until<'a>(
        &'a self,
        g: MutexGuard<'a, Inner>,
        deadline: Instant,
    ) -> Result<MutexGuard<'a, Inner>, MutexGuard<'a, Inner>> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(g);
        }
        let (g, _) = self
            .shared
            .cond
            .wait_timeout(g, left)
            .unwrap_or_else(|p| p.into_inner());
        Ok(g)
    }

    /// Waits until this replica holds the cluster's state.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), StoreError> {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        while !g.replica.ready {
            g = match self.wait_until(g, deadline) {
                Ok(g) => g,
                Err(_) => return Err(StoreError::NotReady),
            };
        }
        Ok(())
    }

    pub fn status(&self) -> StoreStatus {
        let g = self.lock();
        let r = &g.replica;
        StoreStatus {
            ready: r.ready,
            synced: r.synced,
            quorate: r.quorate(),
            view: r.view(),
            member: r.me,
            members: r.members(),
            version: r.state.version,
            epoch: r.state.epoch,
        }
    }

    /// A key's entry; [`StoreError::NotReady`] before the state transfer.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        self.read(|s| s.entries.get(key).cloned())
    }

    /// Every entry whose key starts with `prefix`.
    pub fn list(&self, prefix: &str) -> Result<BTreeMap<String, Entry>, StoreError> {
        self.read(|s| {
            s.entries
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect()
        })
    }

    pub fn locks(&self) -> Result<BTreeMap<String, Lock>, StoreError> {
        self.read(|s| s.locks.clone())
    }

    /// The whole state (what a snapshot carries).
    pub fn snapshot(&self) -> Result<State, StoreError> {
        self.read(State::clone)
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T, StoreError> {
        let g = self.lock();
        match g.replica.ready {
            true => Ok(f(&g.replica.state)),
            false => Err(StoreError::NotReady),
        }
    }

    /// Sets `key`; the version it got.
    pub fn put(&self, key: &str, value: &str, owner: Option<u32>) -> Result<u64, StoreError> {
        self.write(Op::Put {
            key: key.into(),
            value: value.into(),
            owner,
            expect: None,
        })
    }

    /// Sets `key` only if its version is `expect` (0: only if absent).
    pub fn put_if(
        &self,
        key: &str,
        value: &str,
        owner: Option<u32>,
        expect: u64,
    ) -> Result<u64, StoreError> {
        self.write(Op::Put {
            key: key.into(),
            value: value.into(),
            owner,
            expect: Some(expect),
        })
    }

    pub fn delete(&self, key: &str) -> Result<u64, StoreError> {
        self.write(Op::Delete {
            key: key.into(),
            expect: None,
        })
    }

    /// Takes lock `name` for this client; [`Refusal::Held`] if another has it.
    pub fn try_lock(&self, name: &str) -> Result<u64, StoreError> {
        self.write(Op::Lock { name: name.into() })
    }

    pub fn unlock(&self, name: &str) -> Result<u64, StoreError> {
        self.write(Op::Unlock { name: name.into() })
    }

    /// Every change applied from now on, in order.
    pub fn subscribe(&self) -> Receiver<Change> {
        let (tx, rx) = mpsc::channel();
        self.lock().subscribers.push(tx);
        rx
    }

    /// Orders `op` and waits for its outcome here; a write the view change
    /// beat (refused everywhere as stale) is sent again.
    pub fn write(&self, op: Op) -> Result<u64, StoreError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        loop {
            let (client, id, msg) = self.prepare(&op, deadline)?;
            match client.send_with(&self.shared.opts.group, msg, true) {
                Ok(()) => {}
                Err(ClientError::Refused(GroupError::NotQuorate)) => {
                    self.lock().pending.remove(&id);
                    return Err(StoreError::NotQuorate);
                }
                Err(ClientError::Refused(GroupError::TryAgain)) => {
                    self.lock().pending.remove(&id);
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(e) => {
                    self.lock().pending.remove(&id);
                    return Err(StoreError::Disconnected(e.to_string()));
                }
            }
            match self.outcome(id, deadline)? {
                Err(StoreError::Refused(Refusal::Stale)) => continue,
                other => return other,
            }
        }
    }

    /// Waits for a synced quorate view; registers a write there.
    fn prepare(
        &self,
        op: &Op,
        deadline: Instant,
    ) -> Result<(Arc<GroupClient>, u64, Vec<u8>), StoreError> {
        let mut g = self.lock();
        loop {
            if g.replica.synced && !g.replica.quorate() {
                return Err(StoreError::NotQuorate);
            }
            if let (true, Some(client)) = (g.replica.synced, g.client.clone()) {
                let id = g.next_id;
                g.next_id += 1;
                if let Some(msg) = g.replica.op_message(id, op.clone()) {
                    g.pending.insert(id, None);
                    return Ok((client, id, msg));
                }
            }
            g = match self.wait_until(g, deadline) {
                Ok(g) => g,
                Err(_) => return Err(StoreError::Timeout(WRITE_TIMEOUT)),
            };
        }
    }

    fn outcome(&self, id: u64, deadline: Instant) -> Result<Result<u64, StoreError>, StoreError> {
        let mut g = self.lock();
        loop {
            if let Some(Some(_)) = g.pending.get(&id) {
                let r = g.pending.remove(&id).flatten();
                return Ok(r.unwrap_or(Err(StoreError::NotReady)));
            }
            g = match self.wait_until(g, deadline) {
                Ok(g) => g,
                Err(mut g) => {
                    g.pending.remove(&id);
                    return Err(StoreError::Timeout(WRITE_TIMEOUT));
                }
            };
        }
    }

    /// Stops the replica (its locks go at the next view).
    pub fn close(&self) {
        let mut g = self.lock();
        g.closed = true;
        g.client = None;
        self.shared.cond.notify_all();
    }
}

fn load(dir: &Path) -> Result<Option<State>, StoreError> {
    let path = dir.join("state.json");
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StoreError::Client(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Client(format!("{}: {e}", path.display()))),
    }
}

/// The replica's thread: (re)connects, joins the group, feeds events.
fn run(shared: &Shared) {
    loop {
        if shared.inner.lock().map(|g| g.closed).unwrap_or(true) {
            return;
        }
        match connect(shared) {
            Ok(client) => serve(shared, &client),
            Err(_) => std::thread::sleep(RECONNECT),
        }
        let mut g = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.client = None;
        g.replica.ready = false;
        g.replica.synced = false;
        for r in g.pending.values_mut() {
            if r.is_none() {
                *r = Some(Err(StoreError::Disconnected(
                    "the membership service went away".into(),
                )));
            }
        }
        shared.cond.notify_all();
    }
}

fn connect(shared: &Shared) -> Result<Arc<GroupClient>, ClientError> {
    let client = Arc::new(GroupClient::connect(&shared.opts.socket)?);
    let me = client.join(&shared.opts.group)?;
    let mut g = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    g.replica.connected(me);
    g.client = Some(client.clone());
    Ok(client)
}

fn serve(shared: &Shared, client: &GroupClient) {
    loop {
        if shared.inner.lock().map(|g| g.closed).unwrap_or(true) {
            return;
        }
        let d = match client.recv(Duration::from_millis(200)) {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(_) => return,
        };
        let sends = handle(shared, d.event, &d.data);
        for msg in sends {
            // Sync messages go whatever the quorum: a minority syncs too.
            if client.send_with(&shared.opts.group, msg, false).is_err() {
                return;
            }
        }
    }
}

/// One event into the replica; what it asks to send.
fn handle(shared: &Shared, event: Event, data: &[u8]) -> Vec<Vec<u8>> {
    let mut g = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    let outs = match event {
        Event::View {
            group,
            view,
            members,
            quorate,
            ..
        } if group == shared.opts.group => g.replica.on_view(view, members, quorate),
        Event::Transitional { quorate, .. } => {
            g.replica.on_transitional(quorate);
            Vec::new()
        }
        Event::Message { group, from } if group == shared.opts.group => {
            g.replica.on_message(from, data)
        }
        _ => Vec::new(),
    };
    let mut sends = Vec::new();
    let mut changed = false;
    for o in outs {
        match o {
            Out::Send(b) => sends.push(b),
            Out::Applied {
                from,
                id,
                op,
                result,
            } => {
                if Some(from) == g.replica.me {
                    if let Some(slot) = g.pending.get_mut(&id) {
                        *slot = Some(result.clone().map_err(StoreError::Refused));
                    }
                }
                if let Ok(version) = result {
                    changed = true;
                    notify(&mut g, Change::Applied { version, from, op });
                }
            }
            Out::Synced => {
                changed = true;
                let version = g.replica.state.version;
                notify(&mut g, Change::Synced { version });
            }
            Out::Released(locks) => notify(&mut g, Change::Released(locks)),
        }
    }
    if changed {
        save(shared, &g.replica.state);
    }
    shared.cond.notify_all();
    sends
}

fn notify(g: &mut Inner, change: Change) {
    g.subscribers.retain(|s| s.send(change.clone()).is_ok());
}

/// Saves the state (renamed into place; not synced to disk each time: the
/// other replicas hold every write, this copy is for whole-cluster restarts).
fn save(shared: &Shared, state: &State) {
    let Some(dir) = &shared.opts.dir else { return };
    let _ = std::fs::create_dir_all(dir);
    let text = serde_json::to_string(state).unwrap_or_default();
    if let Err(e) = write_atomic_nosync(&dir.join("state.json"), &text) {
        eprintln!("vireo-store: saving {}: {e}", dir.display());
    }
}

fn write_atomic_nosync(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
