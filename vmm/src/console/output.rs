//! Where the guest's console bytes go, without ever making a vCPU wait.
//!
//! The UART is written one byte per guest `out` instruction, on a vCPU
//! thread, under the serial device's lock. A blocking write there would let
//! a reader that stops reading (a socket client, a pipe, a terminal) stall
//! the vCPU, and with it pause, shutdown and the event loop, which take the
//! same lock. So the vCPU writes only what the sink takes at once (a
//! non-blocking write: when the reader keeps up, output is as immediate as
//! a direct write); anything else goes to a bounded queue that the
//! `vireo-console` thread drains with ordinary blocking writes. Once bytes
//! are queued, later ones queue behind them, so order is kept. When the
//! queue is full, new bytes are dropped and counted, like a serial line
//! without flow control: the guest keeps running, the count says what was
//! lost.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::sink::Sink;

/// Bytes held for a slow reader before new ones are dropped.
pub const QUEUE_LIMIT: usize = 256 << 10;
/// How long teardown waits for queued output to reach its sink.
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

/// What the console carried so far (`GET /vm` reports it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleStats {
    /// Bytes the guest wrote.
    pub written: u64,
    /// Bytes dropped because the reader did not keep up.
    pub dropped: u64,
}

#[derive(Default)]
struct State {
    bytes: VecDeque<u8>,
    stats: ConsoleStats,
    closing: bool,
    /// The writer thread is between taking bytes and finishing their write.
    writing: bool,
}

struct Queue {
    state: Mutex<State>,
    changed: Condvar,
    sink: Sink,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The vCPU's side: write through if nothing is pending, queue the rest.
    fn put(&self, mut buf: &[u8]) {
        let mut state = self.lock();
        state.stats.written += buf.len() as u64;
        if state.bytes.is_empty() && !state.writing {
            // Under the lock: the writer thread cannot start in between.
            buf = &buf[self.sink.try_write(buf).min(buf.len())..];
            if buf.is_empty() {
                return;
            }
        }
        let kept = buf.len().min(QUEUE_LIMIT.saturating_sub(state.bytes.len()));
        state.bytes.extend(&buf[..kept]);
        if kept < buf.len() {
            if state.stats.dropped == 0 {
                eprintln!(
                    "vireo-vmm: the console's reader is not keeping up; dropping guest output"
                );
            }
            state.stats.dropped += (buf.len() - kept) as u64;
        }
        drop(state);
        self.changed.notify_all();
    }
}

/// The serial device's writer. `discard()` is the writer of a console with
/// nowhere to go yet.
#[derive(Clone)]
pub struct ConsoleOutput(Option<Arc<Queue>>);

impl Write for ConsoleOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(queue) = &self.0 {
            queue.put(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ConsoleOutput {
    pub fn discard() -> Self {
        Self(None)
    }

    pub fn stats(&self) -> ConsoleStats {
        self.0.as_ref().map(|q| q.lock().stats).unwrap_or_default()
    }
}

/// The queue and the thread that empties it into the sink.
pub struct ConsoleWriter {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

impl ConsoleWriter {
    pub fn start(sink: Sink) -> io::Result<Self> {
        let queue = Arc::new(Queue {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            sink,
        });
        let drained = queue.clone();
        let thread = std::thread::Builder::new()
            .name("vireo-console".into())
            .spawn(move || {
                crate::seccomp::install(crate::seccomp::ThreadKind::Console);
                drain(&drained)
            })?;
        Ok(Self {
            queue,
            thread: Some(thread),
        })
    }

    /// A writer for the serial device (each boot gets one).
    pub fn output(&self) -> ConsoleOutput {
        ConsoleOutput(Some(self.queue.clone()))
    }
}

impl Drop for ConsoleWriter {
    /// Lets the writer empty the queue for up to `DRAIN_DEADLINE`; a sink
    /// that blocks longer (a terminal nobody reads) keeps what is left.
    fn drop(&mut self) {
        let queue = &self.queue;
        let deadline = Instant::now() + DRAIN_DEADLINE;
        let mut state = queue.lock();
        state.closing = true;
        queue.changed.notify_all();
        while (!state.bytes.is_empty() || state.writing) && Instant::now() < deadline {
            (state, _) = queue
                .changed
                .wait_timeout(state, Duration::from_millis(10))
                .unwrap_or_else(|e| e.into_inner());
        }
        let done = state.bytes.is_empty() && !state.writing;
        drop(state);
        if let Some(t) = self.thread.take() {
            if done {
                let _ = t.join();
            }
        }
    }
}

/// The writer thread: takes whatever is queued and writes it out.
fn drain(queue: &Queue) {
    loop {
        let chunk: Vec<u8> = {
            let mut state = queue.lock();
            while state.bytes.is_empty() && !state.closing {
                state = queue.changed.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.bytes.is_empty() {
                return;
            }
            state.writing = true;
            state.bytes.drain(..).collect()
        };
        // A client that takes nothing for a whole write timeout while the
        // VMM is stopping would only hold the stop up.
        queue.sink.write_all(&chunk, &|| queue.lock().closing);
        queue.lock().writing = false;
        queue.changed.notify_all();
    }
}
