//! GET /metrics: the sampler's newest counters in Prometheus' text format
//! (version 0.0.4). Counters are cumulative; Prometheus takes the rates.

use std::fmt::Write;

use super::{clock_ticks, Samples};

/// One metric family: its HELP and TYPE lines, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// `{vm="NAME"}` with the name escaped as the format asks.
fn vm_label(name: &str) -> String {
    let escaped = name
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{{vm=\"{escaped}\"}}")
}

pub(super) fn render(s: &Samples) -> String {
    let mut out = String::new();
    let ticks = clock_ticks();
    let node = s.node_last.unwrap_or_default();
    let one = |v: f64| vec![(String::new(), v)];
    family(
        &mut out,
        "vireo_node_cpu_busy_seconds_total",
        "counter",
        "CPU time not idle, summed over the node's CPUs.",
        &one(node.cpu_busy as f64 / ticks),
    );
    family(
        &mut out,
        "vireo_node_cpu_seconds_total",
        "counter",
        "All CPU time, summed over the node's CPUs.",
        &one(node.cpu_total as f64 / ticks),
    );
    family(
        &mut out,
        "vireo_node_memory_total_bytes",
        "gauge",
        "The node's memory.",
        &one(node.mem_total as f64),
    );
    family(
        &mut out,
        "vireo_node_memory_used_bytes",
        "gauge",
        "Memory total less available.",
        &one(node.mem_total.saturating_sub(node.mem_available) as f64),
    );
    family(
        &mut out,
        "vireo_node_disk_read_bytes_total",
        "counter",
        "Bytes read from the node's disks.",
        &one(node.disk_read as f64),
    );
    family(
        &mut out,
        "vireo_node_disk_written_bytes_total",
        "counter",
        "Bytes written to the node's disks.",
        &one(node.disk_written as f64),
    );
    family(
        &mut out,
        "vireo_node_network_receive_bytes_total",
        "counter",
        "Bytes received by the node's NICs.",
        &one(node.net_rx as f64),
    );
    family(
        &mut out,
        "vireo_node_network_transmit_bytes_total",
        "counter",
        "Bytes sent by the node's NICs.",
        &one(node.net_tx as f64),
    );

    let running: Vec<_> = s
        .vms
        .iter()
        .filter_map(|(n, t)| Some((n, t.last?)))
        .collect();
    let per_vm = |f: &dyn Fn(&super::VmCounters) -> f64| -> Vec<(String, f64)> {
        running.iter().map(|(n, c)| (vm_label(n), f(c))).collect()
    };
    let states: Vec<(String, f64)> = s
        .vms
        .iter()
        .map(|(n, t)| {
            let label = vm_label(n);
            (
                format!("{},state=\"{}\"}}", &label[..label.len() - 1], t.state),
                1.0,
            )
        })
        .collect();
    family(
        &mut out,
        "vireo_vm_state",
        "gauge",
        "1 for each VM in its current state.",
        &states,
    );
    family(
        &mut out,
        "vireo_vm_cpu_seconds_total",
        "counter",
        "CPU time of the VM's VMM process.",
        &per_vm(&|c| c.cpu_ticks as f64 / ticks),
    );
    family(
        &mut out,
        "vireo_vm_memory_rss_bytes",
        "gauge",
        "Resident memory of the VM's VMM process.",
        &per_vm(&|c| c.rss as f64),
    );
    family(
        &mut out,
        "vireo_vm_disk_read_bytes_total",
        "counter",
        "Bytes the VMM read from storage.",
        &per_vm(&|c| c.disk_read as f64),
    );
    family(
        &mut out,
        "vireo_vm_disk_written_bytes_total",
        "counter",
        "Bytes the VMM wrote to storage.",
        &per_vm(&|c| c.disk_written as f64),
    );
    family(
        &mut out,
        "vireo_vm_network_receive_bytes_total",
        "counter",
        "Bytes the guest received on its taps.",
        &per_vm(&|c| c.net_rx as f64),
    );
    family(
        &mut out,
        "vireo_vm_network_transmit_bytes_total",
        "counter",
        "Bytes the guest sent on its taps.",
        &per_vm(&|c| c.net_tx as f64),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Samples, VmTrack};
    use super::*;
    use crate::metrics::sample::{NodeCounters, VmCounters};

    #[test]
    fn families_and_labels() {
        let mut s = Samples {
            node_last: Some(NodeCounters {
                mem_total: 1000,
                mem_available: 400,
                ..Default::default()
            }),
            ..Default::default()
        };
        s.vms.insert(
            "web\"1".into(),
            VmTrack {
                state: "running",
                last: Some(VmCounters {
                    rss: 4096,
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        let text = render(&s);
        assert!(
            text.contains(
                "# TYPE vireo_node_memory_used_bytes gauge\nvireo_node_memory_used_bytes 600\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("vireo_vm_memory_rss_bytes{vm=\"web\\\"1\"} 4096\n"),
            "{text}"
        );
        assert!(
            text.contains("vireo_vm_state{vm=\"web\\\"1\",state=\"running\"} 1\n"),
            "{text}"
        );
    }
}
