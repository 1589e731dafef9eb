//! A VM's serial console on the agent's side. The VMM's console socket
//! takes one client at a time; the agent is that client, and fans the
//! output out to any number of WebSocket clients, whose keystrokes all go
//! to the guest. The last output is kept for `vireo vm log` in the VM's run
//! directory (tmpfs): two files of up to `LOG_HALF` each, the older one
//! dropped when the newer fills, so at least `LOG_HALF` of the latest output
//! is always there. Files rather than memory keep the agent small with 50
//! VMs, and the log survives an agent restart.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc};

/// Output kept for `vm log`: at least this much, at most twice it.
pub const LOG_HALF: u64 = 256 * 1024;
/// Chunks a slow WebSocket client may fall behind before it loses some.
const FANOUT_DEPTH: usize = 256;
const READ_CHUNK: usize = 4096;

pub struct ConsoleHub {
    log: Mutex<ConsoleLog>,
    output: broadcast::Sender<Bytes>,
    /// Keystrokes for the VMM currently attached, if any.
    input: Mutex<Option<mpsc::Sender<Bytes>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConsoleHub {
    /// The hub of a VM whose files live in `dir`.
    pub fn new(dir: &Path) -> Arc<Self> {
        let (output, _) = broadcast::channel(FANOUT_DEPTH);
        Arc::new(Self {
            log: Mutex::new(ConsoleLog::new(dir)),
            output,
            input: Mutex::new(None),
        })
    }

    /// Becomes the client of the VMM's console socket: output flows to the
    /// log and the subscribers until the VMM closes it.
    pub async fn attach(self: &Arc<Self>, socket: &Path) -> io::Result<()> {
        let stream = UnixStream::connect(socket).await?;
        self.attach_stream(stream);
        Ok(())
    }

    /// Becomes the reader and writer of `stream`, a connection to the
    /// VMM's console (the one handed to it at spawn, or one made later).
    pub fn attach_stream(self: &Arc<Self>, stream: UnixStream) {
        let (mut reader, mut writer) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        *lock(&self.input) = Some(tx);
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let hub = self.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; READ_CHUNK];
            while let Ok(n @ 1..) = reader.read(&mut buf).await {
                hub.publish(Bytes::copy_from_slice(&buf[..n]));
            }
            *lock(&hub.input) = None;
        });
    }

    fn publish(&self, bytes: Bytes) {
        let mut log = lock(&self.log);
        log.append(&bytes);
        // Sent under the log's lock, so `replay_and_subscribe` finds each
        // chunk either in the log or in its subscription, never both or
        // neither. No subscriber is fine: the log has it.
        let _ = self.output.send(bytes);
    }

    /// A line from the agent itself (`[vireo: ...]`), in the log and live.
    pub fn note(&self, text: &str) {
        self.publish(Bytes::from(format!("\r\n[vireo: {text}]\r\n")));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Bytes> {
        self.output.subscribe()
    }

    /// The last `max` bytes of output and a subscription to what follows
    /// them, taken together: a console that shows its recent past first
    /// neither loses nor repeats the bytes written in between. Blocking
    /// (reads the log files).
    pub fn replay_and_subscribe(
        &self,
        max: u64,
    ) -> io::Result<(Vec<u8>, broadcast::Receiver<Bytes>)> {
        let log = lock(&self.log);
        let past = log.tail(max)?;
        Ok((past, self.output.subscribe()))
    }

    /// Sends keystrokes to the guest; false when no VMM is attached.
    pub fn send_input(&self, bytes: Bytes) -> bool {
        let tx = lock(&self.input).clone();
        tx.is_some_and(|tx| tx.try_send(bytes).is_ok())
    }

    /// The last `max` bytes of output (at most 2 × `LOG_HALF`).
    pub fn tail(&self, max: u64) -> io::Result<Vec<u8>> {
        lock(&self.log).tail(max)
    }
}

/// The two log files.
struct ConsoleLog {
    current: PathBuf,
    previous: PathBuf,
    file: Option<File>,
    size: u64,
}

impl ConsoleLog {
    fn new(dir: &Path) -> Self {
        let current = dir.join("console.log");
        let size = std::fs::metadata(&current).map_or(0, |m| m.len());
        Self {
            previous: dir.join("console.log.1"),
            current,
            file: None,
            size,
        }
    }

    /// Best effort: a full tmpfs loses log lines, never the console.
    fn append(&mut self, bytes: &[u8]) {
        if self.size >= LOG_HALF {
            let _ = std::fs::rename(&self.current, &self.previous);
            self.file = None;
            self.size = 0;
        }
        if self.file.is_none() {
            self.file = File::options()
                .create(true)
                .append(true)
                .open(&self.current)
                .ok();
        }
        if let Some(f) = &mut self.file {
            if f.write_all(bytes).is_ok() {
                self.size += bytes.len() as u64;
            }
        }
    }

    fn tail(&self, max: u64) -> io::Result<Vec<u8>> {
        let mut out = read_tail(&self.current, max)?;
        let missing = max.saturating_sub(out.len() as u64);
        if missing > 0 {
            let mut older = read_tail(&self.previous, missing)?;
            older.extend_from_slice(&out);
            out = older;
        }
        Ok(out)
    }
}

/// The last `max` bytes of `path`; nothing if there is no such file.
fn read_tail(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut out = Vec::with_capacity(len.min(max) as usize);
    f.take(max).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_latest_output_across_rotation() {
        let dir = std::env::temp_dir().join(format!("vireo-console-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = ConsoleLog::new(&dir);
        let chunk: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for _ in 0..7 {
            log.append(&chunk);
        }
        let total = 7 * chunk.len() as u64;
        let kept = std::fs::metadata(dir.join("console.log")).unwrap().len()
            + std::fs::metadata(dir.join("console.log.1")).unwrap().len();
        assert!((LOG_HALF..=2 * LOG_HALF + chunk.len() as u64).contains(&kept));
        let tail = log.tail(LOG_HALF).unwrap();
        assert_eq!(tail.len() as u64, LOG_HALF);
        // The tail is the stream's last LOG_HALF bytes, in order.
        let expected: Vec<u8> = (total - LOG_HALF..total)
            .map(|i| ((i % chunk.len() as u64) % 251) as u8)
            .collect();
        assert_eq!(tail, expected);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Output keeps coming while a client replays the log and attaches:
    /// the replay followed by the live chunks is the whole stream, once.
    #[test]
    fn replay_then_live_output_has_no_gap_and_no_repeat() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        const CHUNKS: usize = 200; // fewer than FANOUT_DEPTH: the client never lags
        for round in 0..50 {
            let dir = std::env::temp_dir().join(format!(
                "vireo-console-replay-{}-{round}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let hub = ConsoleHub::new(&dir);
            // A long log makes the replay's read slow: the writer waits
            // on it, then races the attach.
            hub.publish(Bytes::from(vec![b'.'; 3 * LOG_HALF as usize / 2]));
            let sent = Arc::new(AtomicUsize::new(0));
            let writer = {
                let (hub, sent) = (hub.clone(), sent.clone());
                std::thread::spawn(move || {
                    for i in 0..CHUNKS {
                        hub.publish(Bytes::from(format!("line {i}\n")));
                        sent.store(i + 1, Ordering::SeqCst);
                    }
                })
            };
            while sent.load(Ordering::SeqCst) < 1 {
                std::hint::spin_loop();
            }
            let (past, mut live) = hub.replay_and_subscribe(2 * LOG_HALF).unwrap();
            writer.join().unwrap();
            let mut seen = past;
            while let Ok(chunk) = live.try_recv() {
                seen.extend_from_slice(&chunk);
            }
            let whole: String = (0..CHUNKS).map(|i| format!("line {i}\n")).collect();
            let seen = String::from_utf8(seen).unwrap();
            let seen = seen.trim_start_matches('.');
            assert_eq!(seen, whole, "round {round}");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
