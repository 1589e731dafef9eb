//! The ACPI power button and the orderly shutdown.
//!
//! With no acpid, the kernel's `button` driver reports the power button as
//! an input device named "Power Button" (KEY_POWER through evdev); on arm64
//! machines booted with a device tree it is a `gpio-keys` device instead
//! (QEMU virt's PL061 GPIO line). Any input device that can send KEY_POWER
//! is watched. A thread per such device reads its events and, on a press,
//! sends SIGUSR2 to PID 1, so every shutdown request goes through the one
//! signal path.

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::log;
use crate::modules::Loader;
use crate::mounts::Mounts;
use crate::service::Service;

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// struct input_event on 64-bit Linux: timeval (16) + type, code (2+2) + value (4).
const EVENT_SIZE: usize = 24;

/// (type, code, value) of one input_event.
pub fn decode_event(ev: &[u8; EVENT_SIZE]) -> (u16, u16, i32) {
    let ty = u16::from_ne_bytes([ev[16], ev[17]]);
    let code = u16::from_ne_bytes([ev[18], ev[19]]);
    let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
    (ty, code, value)
}

pub fn is_power_press(ev: &[u8; EVENT_SIZE]) -> bool {
    decode_event(ev) == (EV_KEY, KEY_POWER, 1)
}

/// Loads the drivers and starts one watcher per power-button device.
pub fn watch_power_button(loader: Arc<Loader>) {
    let _ = thread::Builder::new()
        .name("vireo-power".into())
        .spawn(move || {
            loader.load_logged("button");
            loader.load_logged("evdev");
            // The input devices register asynchronously after the modules load.
            let deadline = Instant::now() + Duration::from_secs(5);
            let devices = loop {
                let found = power_buttons();
                if !found.is_empty() || Instant::now() > deadline {
                    break found;
                }
                thread::sleep(Duration::from_millis(100));
            };
            if devices.is_empty() {
                log!("power button: none found; shut down with SIGUSR2 to PID 1");
            }
            for dev in devices {
                log!("power button: watching {}", dev.display());
                let _ = thread::Builder::new()
                    .name("vireo-pwrbtn".into())
                    .spawn(move || read_button(dev));
            }
        });
}

/// Whether a sysfs key-capability bitmap (`capabilities/key`: hex words of
/// one `long` each, most significant first) has bit `code` set.
pub fn has_key(bitmap: &str, code: u16) -> bool {
    let word = usize::from(code) / 64;
    let words: Vec<&str> = bitmap.split_whitespace().collect();
    let Some(w) = words.len().checked_sub(word + 1).map(|i| words[i]) else {
        return false;
    };
    u64::from_str_radix(w, 16).is_ok_and(|bits| bits & (1 << (code % 64)) != 0)
}

/// /dev/input/eventN of the devices named "Power Button" or able to send
/// KEY_POWER.
fn power_buttons() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/sys/class/input") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("event"))
        .filter(|e| {
            let dev = e.path().join("device");
            let name = fs::read_to_string(dev.join("name")).unwrap_or_default();
            let keys = fs::read_to_string(dev.join("capabilities/key")).unwrap_or_default();
            name.trim() == "Power Button" || has_key(&keys, KEY_POWER)
        })
        .map(|e| PathBuf::from("/dev/input").join(e.file_name()))
        .collect();
    found.sort();
    found
}

fn read_button(dev: PathBuf) {
    let mut f = match fs::File::open(&dev) {
        Ok(f) => f,
        Err(e) => return log!("power button {}: {e}", dev.display()),
    };
    let mut ev = [0u8; EVENT_SIZE];
    while f.read_exact(&mut ev).is_ok() {
        if is_power_press(&ev) {
            log!("power button pressed");
            let _ = kill(Pid::this(), Signal::SIGUSR2);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PowerOff,
    Restart,
}

/// Stops the services, then every other process, syncs, unmounts, and asks
/// the kernel to power off or restart. Never returns.
pub fn shutdown(action: Action, services: &mut [Service], mounts: &mut Mounts) -> ! {
    log!("shutdown ({action:?}): stopping services");
    crate::log::drain();
    for s in services.iter_mut() {
        s.stop();
    }
    wait_for(Duration::from_secs(5), |st| {
        services.iter_mut().any(|s| s.forget(st));
        services.iter().all(|s| s.pid().is_none())
    });
    log!("shutdown: stopping remaining processes");
    // kill(-1) reaches every process but PID 1 itself.
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    if !wait_for(Duration::from_secs(2), |_| false) {
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        wait_for(Duration::from_millis(500), |_| false);
    }
    nix::unistd::sync();
    mounts.unmount_all();
    nix::unistd::sync();
    let mode = match action {
        Action::PowerOff => RebootMode::RB_POWER_OFF,
        Action::Restart => RebootMode::RB_AUTOBOOT,
    };
    log!(
        "shutdown: {}",
        if action == Action::PowerOff {
            "powering off"
        } else {
            "restarting"
        }
    );
    // The kernel prints its own shutdown lines straight to the console; let
    // ours leave the tty first, or the two interleave mid-line.
    crate::log::drain();
    let e = reboot(mode).unwrap_err();
    // Reaching here means the kernel refused; PID 1 must not exit (panic).
    log!("reboot(2) failed: {e}; halting");
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

/// Reaps children until `done` says so, no child is left (true), or the
/// timeout passes (false when children remain).
fn wait_for(limit: Duration, mut done: impl FnMut(&WaitStatus) -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => thread::sleep(Duration::from_millis(20)),
            Ok(st) => {
                if done(&st) {
                    return true;
                }
            }
            Err(nix::errno::Errno::ECHILD) => return true,
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ty: u16, code: u16, value: i32) -> [u8; EVENT_SIZE] {
        let mut ev = [0u8; EVENT_SIZE];
        ev[16..18].copy_from_slice(&ty.to_ne_bytes());
        ev[18..20].copy_from_slice(&code.to_ne_bytes());
        ev[20..24].copy_from_slice(&value.to_ne_bytes());
        ev
    }

    #[test]
    fn power_press_only() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)), "release");
        assert!(!is_power_press(&event(0, 0, 0)), "EV_SYN");
        assert!(!is_power_press(&event(EV_KEY, 115, 1)), "another key");
    }

    #[test]
    fn key_power_capability() {
        // What the ACPI power button and QEMU virt's gpio-keys report.
        assert!(has_key("10000000000000 0\n", KEY_POWER));
        // KEY_SLEEP (142) only: word 2 holds bit 14.
        assert!(!has_key("4000 0 0", KEY_POWER));
        assert!(has_key("4000 0 0", 142));
        // No keys at all, too few words, garbage.
        assert!(!has_key("0\n", KEY_POWER));
        assert!(!has_key("", KEY_POWER));
        assert!(!has_key("zz 0", KEY_POWER));
    }
}
