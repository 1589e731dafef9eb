//! Long operations (copying a volume, a backup, a migration) are tasks, as
//! in Proxmox's task log and QEMU's jobs: a request starts one and answers
//! at once with its id (202); `GET /tasks/{id}` shows its progress,
//! `DELETE /tasks/{id}` asks it to stop. A task's body checks
//! `ctx.cancelled()` between steps and reports `ctx.progress(done, total)`.
//! The registry keeps the last `KEEP` finished tasks in memory.

pub mod routes;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Finished tasks remembered.
const KEEP: usize = 200;

pub use crate::types::{TaskInfo, TaskState};

struct Entry {
    info: TaskInfo,
    cancel: Arc<AtomicBool>,
}

/// Every task this agent ran since it started.
#[derive(Clone, Default)]
pub struct Tasks {
    inner: Arc<Mutex<VecDeque<Entry>>>,
    next: Arc<AtomicU64>,
}

/// What a task's body gets: where to report progress, whether to stop.
#[derive(Clone)]
pub struct TaskCtx {
    id: String,
    tasks: Tasks,
    cancel: Arc<AtomicBool>,
}

impl TaskCtx {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn progress(&self, done: u64, total: u64) {
        self.tasks.update(&self.id, |t| {
            t.done = done;
            t.total = total;
        });
    }

    /// Whether someone asked the task to stop.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// An error to return when `cancelled()`.
    pub fn check(&self) -> Result<(), String> {
        if self.cancelled() {
            Err("cancelled".into())
        } else {
            Ok(())
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Tasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `work` on the runtime; returns its id at once. `unit` names
    /// what progress counts. The work's Ok value becomes the task's result.
    pub fn spawn<F, Fut>(&self, kind: &str, target: &str, unit: &str, work: F) -> TaskInfo
    where
        F: FnOnce(TaskCtx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<serde_json::Value, String>> + Send + 'static,
    {
        let id = format!("task-{}", self.next.fetch_add(1, Ordering::SeqCst) + 1);
        let cancel = Arc::new(AtomicBool::new(false));
        let info = TaskInfo {
            id: id.clone(),
            kind: kind.into(),
            target: target.into(),
            state: TaskState::Running,
            done: 0,
            total: 0,
            unit: unit.into(),
            started: now(),
            finished: None,
            error: None,
            result: None,
        };
        self.insert(info.clone(), cancel.clone());
        let ctx = TaskCtx {
            id: id.clone(),
            tasks: self.clone(),
            cancel,
        };
        let tasks = self.clone();
        tokio::spawn(async move {
            let outcome = work(ctx.clone()).await;
            tasks.finish(&id, outcome, ctx.cancelled());
        });
        info
    }

    fn insert(&self, info: TaskInfo, cancel: Arc<AtomicBool>) {
        let mut all = self.lock();
        all.push_back(Entry { info, cancel });
        while all.len() > KEEP {
            // The oldest finished one goes; running ones always stay.
            match all.iter().position(|e| e.info.state != TaskState::Running) {
                Some(i) => drop(all.remove(i)),
                None => break,
            }
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut TaskInfo)) {
        if let Some(e) = self.lock().iter_mut().find(|e| e.info.id == id) {
            f(&mut e.info);
        }
    }

    fn finish(&self, id: &str, outcome: Result<serde_json::Value, String>, cancelled: bool) {
        self.update(id, |t| {
            t.finished = Some(now());
            match outcome {
                Ok(result) => {
                    t.state = TaskState::Done;
                    t.result = Some(result);
                }
                Err(e) => {
                    t.state = if cancelled {
                        TaskState::Cancelled
                    } else {
                        TaskState::Failed
                    };
                    t.error = Some(e);
                }
            }
        });
    }

    pub fn get(&self, id: &str) -> Option<TaskInfo> {
        self.lock()
            .iter()
            .find(|e| e.info.id == id)
            .map(|e| e.info.clone())
    }

    pub fn list(&self) -> Vec<TaskInfo> {
        self.lock().iter().map(|e| e.info.clone()).collect()
    }

    /// Asks a running task to stop; false if there is no such running task.
    pub fn cancel(&self, id: &str) -> bool {
        let all = self.lock();
        match all.iter().find(|e| e.info.id == id) {
            Some(e) if e.info.state == TaskState::Running => {
                e.cancel.store(true, Ordering::SeqCst);
                true
            }
            _ => false,
        }
    }

    /// Whether a task of `kind` on `target` is running (one at a time).
    pub fn running(&self, kind: &str, target: &str) -> bool {
        self.lock().iter().any(|e| {
            e.info.state == TaskState::Running && e.info.kind == kind && e.info.target == target
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn until_finished(tasks: &Tasks, id: &str) -> TaskInfo {
        loop {
            let t = tasks.get(id).unwrap();
            if t.state != TaskState::Running {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_task_reports_progress_result_and_can_be_cancelled() {
        let tasks = Tasks::default();
        let done = tasks.spawn("count", "x", "steps", |ctx| async move {
            ctx.progress(3, 3);
            Ok(serde_json::json!({"n": 3}))
        });
        let t = until_finished(&tasks, &done.id).await;
        assert_eq!((t.state, t.done, t.total), (TaskState::Done, 3, 3));
        assert_eq!(t.result.unwrap()["n"], 3);

        let slow = tasks.spawn("wait", "y", "steps", |ctx| async move {
            while !ctx.cancelled() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ctx.check().map(|()| serde_json::Value::Null)
        });
        assert!(tasks.running("wait", "y"));
        assert!(tasks.cancel(&slow.id));
        let t = until_finished(&tasks, &slow.id).await;
        assert_eq!(t.state, TaskState::Cancelled);
        assert!(
            !tasks.cancel(&slow.id),
            "a finished task cannot be cancelled"
        );

        let failed = tasks.spawn("fail", "z", "", |_| async { Err("no".into()) });
        let t = until_finished(&tasks, &failed.id).await;
        assert_eq!(
            (t.state, t.error.as_deref()),
            (TaskState::Failed, Some("no"))
        );
    }
}
