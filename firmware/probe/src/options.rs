//! `probe.*` options from the command line: what to do after the report.

/// What the probe does once it has printed `PROBE done ok`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Reset the machine (the VMM exits): the default.
    Exit,
    /// Halt forever, so a benchmark can measure the VMM at rest.
    Hold,
    /// Print `PROBE tick N` forever, so tests can see the guest run, stop
    /// (pause) and run again (resume).
    Tick,
}

/// `probe.spam=MIB`: MiB of console output to print after the report, or 0.
pub fn spam_mib(cmdline: &[u8]) -> Result<u64, &'static str> {
    let mut mib = 0;
    for word in cmdline.split(|b| *b == b' ') {
        if let Some(value) = word.strip_prefix(b"probe.spam=") {
            mib = crate::virtio::parse_dec(value).ok_or("bad probe.spam")?;
        }
    }
    Ok(mib)
}

/// Finds `probe.hold` or `probe.tick` among the command line's words.
pub fn after(cmdline: &[u8]) -> After {
    let mut after = After::Exit;
    for word in cmdline.split(|b| *b == b' ') {
        match word {
            b"probe.hold" => after = After::Hold,
            b"probe.tick" => after = After::Tick,
            _ => {}
        }
    }
    after
}

/// `probe.cad`: answer Ctrl-Alt-Del from the keyboard (with `probe.hold` or
/// `probe.tick`) by printing `PROBE ctrl-alt-del` and resetting.
pub fn cad(cmdline: &[u8]) -> bool {
    cmdline.split(|b| *b == b' ').any(|w| w == b"probe.cad")
}
