//! The probe's owner stamp (docs/probe.md): two VMMs write one disk at once
//! — one through the image file, one through a loop device over it, so the
//! image lock (which is per file) cannot stop the second — and the older
//! copy finds the newer one's stamp, says so and stops writing, while the
//! newer copy writes on undisturbed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use vireo_tests::{complete_lines, hex, probe_command, scratch_dir};

/// The stress area (1 MiB) plus the sector the stamp lives in, and more.
const DISK_BYTES: u64 = (1 << 20) + 4096;
const STAMP_AT: usize = 1 << 20;
const WAIT: Duration = Duration::from_secs(60);

/// A loop device over a file, detached when dropped.
struct LoopDev(String);

impl LoopDev {
    fn attach(file: &Path) -> Self {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .expect("run losetup (util-linux)");
        assert!(
            out.status.success(),
            "losetup --find --show: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        LoopDev(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// One copy of the VM: the probe's stress workload on `disk`; its console
/// lines arrive on a channel. Killed when dropped.
struct Copy {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Copy {
    fn start(disk: &str) -> Self {
        let mut child = probe_command("64M", "stdio")
            .args(["--cmdline", "probe.blk=stress:3:1"])
            .args(["--disk", &format!("path={disk}")])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn vireo-vmm");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in complete_lines(stdout) {
                let _ = tx.send(line);
            }
        });
        Copy {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a console line starting with `prefix`; returns its rest.
    fn until(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!("no '{prefix}' line; console:\n{}", self.seen.join("\n"));
            };
            self.seen.push(line.clone());
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_string();
            }
        }
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_older_copy_sees_a_second_writer_and_stops() {
    let dir = scratch_dir("second-writer");
    let image = dir.join("vm.raw");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(DISK_BYTES))
        .unwrap();
    let mut old = Copy::start(image.to_str().unwrap());
    let old_id = hex(&old.until("PROBE blk owner="));
    old.until("PROBE blk stress gen=2");

    let loop_dev = LoopDev::attach(&image);
    let mut new = Copy::start(&loop_dev.0);
    let new_id = hex(&new.until("PROBE blk owner="));
    assert_ne!(old_id, new_id, "two boots drew the same owner id");

    let report = old.until("PROBE blk second writer: ");
    assert_eq!(
        report,
        format!("stamp {new_id:#x} (mine {old_id:#x})"),
        "the old copy names the new copy's stamp and its own"
    );
    old.until("PROBE blk stress mib=1 fail second writer");
    // The old copy wrote nothing more: its next line is the end of its run.
    let after = old.until("PROBE ");
    assert!(!after.starts_with("blk stress gen="), "wrote on: {after}");

    // The newer copy owns the disk and goes on writing, unaware of anything.
    let gen: u64 = new.until("PROBE blk stress gen=").parse().unwrap();
    new.until(&format!("PROBE blk stress gen={}", gen + 3));
    assert!(
        !new.seen.iter().any(|l| l.contains("second writer")),
        "the newer copy reported a second writer:\n{}",
        new.seen.join("\n")
    );
    drop(new);
    drop(loop_dev);

    // On disk: the stamp sector holds the magic and the newer copy's id.
    let disk = std::fs::read(&image).unwrap();
    let word = |i: usize| {
        let at = STAMP_AT + 8 * i;
        u64::from_le_bytes(disk[at..at + 8].try_into().unwrap())
    };
    assert_eq!(word(0).to_le_bytes(), *b"VIREOOWN");
    assert_eq!(word(1), new_id);
    let _ = std::fs::remove_dir_all(&dir);
}
