//! Memory accounting: a VM starts only if the node can hold it next to the
//! VMs already running. Guest RAM is counted in full (a guest may touch all
//! of it), plus what one VMM process needs outside it; the node keeps a
//! reserve for itself (init, the agent, page cache of the state disk).

/// RSS of one vireo-vmm outside guest RAM, rounded up (`make bench`
/// measures about 3 MiB on the probe).
pub const VMM_OVERHEAD_MIB: u64 = 8;
/// What the node keeps for itself.
pub const NODE_RESERVE_MIB: u64 = 384;

/// What VMs may use, in MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub total_mib: u64,
    /// True when set by `--vm-memory-mib` rather than derived from MemTotal.
    pub configured: bool,
}

impl Capacity {
    /// `--vm-memory-mib` if given, else MemTotal less the node's reserve.
    pub fn of_node(configured: Option<u64>) -> Self {
        match configured {
            Some(total_mib) => Self {
                total_mib,
                configured: true,
            },
            None => Self {
                total_mib: mem_total_mib().saturating_sub(NODE_RESERVE_MIB),
                configured: false,
            },
        }
    }

    /// Ok if a VM of `memory_mib` fits beside `running` (each VM's guest
    /// memory in MiB); else the refusal with every number in it.
    pub fn check(&self, name: &str, memory_mib: u64, running: &[u64]) -> Result<(), String> {
        let used: u64 = running.iter().map(|m| m + VMM_OVERHEAD_MIB).sum();
        let needed = memory_mib + VMM_OVERHEAD_MIB;
        if used + needed <= self.total_mib {
            return Ok(());
        }
        let source = match self.configured {
            true => "--vm-memory-mib".to_string(),
            false => format!(
                "MemTotal {} MiB less {NODE_RESERVE_MIB} MiB kept for the node",
                mem_total_mib()
            ),
        };
        Err(format!(
            "not enough memory to start VM '{name}': it needs {needed} MiB ({memory_mib} MiB + \
             {VMM_OVERHEAD_MIB} MiB for its VMM), {} running VM(s) hold {used} MiB, and VMs may \
             use {} MiB on this node ({source}); {} MiB are free",
            running.len(),
            self.total_mib,
            self.total_mib.saturating_sub(used)
        ))
    }
}

/// MemTotal from /proc/meminfo, in MiB (0 if unreadable).
fn mem_total_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_the_numbers() {
        let cap = Capacity {
            total_mib: 1000,
            configured: true,
        };
        assert!(cap.check("a", 500, &[400]).is_ok());
        let e = cap.check("b", 600, &[400]).unwrap_err();
        for part in [
            "'b'",
            "608 MiB",
            "1 running VM(s) hold 408 MiB",
            "1000 MiB",
            "592 MiB are free",
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
        assert!(Capacity::of_node(None).total_mib > 0);
    }
}
