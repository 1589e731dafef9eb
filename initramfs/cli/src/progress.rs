//! Following a task (`GET /tasks/{id}`) with a progress bar until it ends.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vireo_agent::types::{TaskInfo, TaskState};

use crate::http::Client;

/// A bar counting bytes (hidden when stderr is not a terminal, or for
/// `--json` output).
pub fn byte_bar(what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    // Drawn from the first known length on (0 of 0 would show a full bar).
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
    let style = ProgressStyle::with_template(
        "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Sets the bar's length, showing it once there is one.
pub fn set_length(bar: &ProgressBar, len: u64) {
    if len > 0 && bar.length() != Some(len) {
        if bar.length() == Some(0) {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        bar.set_length(len);
    }
}

/// Polls task `task` until it ends; its final state. Fails unless it is done.
pub fn follow(
    client: &Client,
    task: TaskInfo,
    what: &str,
    quiet: bool,
) -> Result<TaskInfo, String> {
    let bar = byte_bar(what, quiet);
    let path = format!("/tasks/{}", task.id);
    let mut t = task;
    while t.state == TaskState::Running {
        std::thread::sleep(Duration::from_millis(200));
        t = client.json("GET", &path, None)?;
        set_length(&bar, t.total);
        bar.set_position(t.done);
    }
    match t.state {
        TaskState::Done => {
            bar.finish();
            Ok(t)
        }
        _ => {
            bar.abandon();
            Err(format!(
                "{what} {:?}: {}",
                t.state,
                t.error.as_deref().unwrap_or("no reason given")
            ))
        }
    }
}
