//! Running a helper program that must succeed (shared with the end-to-end
//! tests in `tests/common`, which depend on this crate).

use std::process::{Command, Output};

/// Runs `cmd` to the end; it must start and exit 0 (else the panic shows
/// what it printed).
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
