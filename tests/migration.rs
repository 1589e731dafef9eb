//! Live migration of the probe guest between vireo-vmm processes, each in
//! its own network namespace, over TCP: back and forth with 1 and 4 vCPUs,
//! small and large memory, idle (ticking) and dirtying memory; the guest
//! checks every page it wrote after every migration, and its counter runs
//! on, one by one, across all of them. Then the faults: a destination
//! killed at random points, the source killed, a cancel, the link cut —
//! each time the source runs on (or nothing half-built is left running).

use std::time::{Duration, Instant};

use vireo_tests::scratch_dir;
use vireo_tests::vmm_process::{api_json, assert_continuous, wait_exit, Pair, Vmm};

const WAIT: Duration = Duration::from_secs(120);
const PORT: u16 = 47000;

/// Where each side listens: the VMM in namespace `a` listens on .1, in `b` on .2.
fn url(pair_side: usize, n: usize) -> String {
    format!("tcp://10.88.0.{}:{}", pair_side + 1, PORT + n as u16)
}

/// Runs `rounds` migrations of one guest back and forth between `pair.a`
/// and `pair.b`; returns the console transcript across all of them.
fn ping_pong(
    pair: &Pair,
    tag: &str,
    (cpus, memory, cmdline): (u8, &str, &str),
    prefix: &str,
    rounds: usize,
) -> String {
    let dir = scratch_dir(tag);
    let sides = [pair.a.as_str(), pair.b.as_str()];
    let mut here = Vmm::boot(Some(sides[0]), &dir, "vm0", cpus, memory, cmdline, &[]);
    let mut transcript = String::new();
    here.wait_counters(prefix, 2, WAIT);
    for n in 1..=rounds {
        let to = n % 2;
        let mut there = Vmm::incoming(Some(sides[to]), &dir, &format!("vm{n}"), &url(to, n), &[]);
        wait_for_listen(&there);
        here.migrate(&format!(
            r#"{{"url": "{}", "max_downtime_ms": 200}}"#,
            url(to, n)
        ));
        let code = wait_exit(&mut here, WAIT);
        assert_eq!(code, 0, "source: {}", here.stderr());
        transcript += &here.serial();
        // The destination runs it: its counter goes on.
        let before = vireo_tests::vmm_process::counters_in(&transcript, prefix).len();
        there.wait_counters(prefix, 1, WAIT);
        assert!(
            there.exited().is_none(),
            "destination died: {}",
            there.stderr()
        );
        let _ = before;
        here = there;
    }
    here.wait_counters(prefix, 2, WAIT);
    transcript += &here.serial();
    here.kill();
    std::fs::remove_dir_all(dir).unwrap();
    transcript
}

/// The destination is listening once it said so on stderr.
fn wait_for_listen(vmm: &Vmm) {
    vireo_tests::wait_for("the destination to listen", WAIT, || {
        vmm.stderr().contains("waiting for a migration")
    });
}

#[test]
fn twenty_migrations_of_an_idle_guest_1_vcpu_256m() {
    let pair = Pair::new("idle");
    let t = ping_pong(
        &pair,
        "mig-idle",
        (1, "256M", "probe.tick"),
        "PROBE tick ",
        20,
    );
    // Ticks count from 0: the transcript must hold 0, 1, 2, ... too.
    let ticks = vireo_tests::vmm_process::counters_in(&t, "PROBE tick ");
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "ticks not continuous: {ticks:?}"
    );
}

#[test]
fn twenty_migrations_of_a_dirtying_guest_4_vcpus_2g() {
    let pair = Pair::new("dirty");
    let t = ping_pong(
        &pair,
        "mig-dirty",
        (4, "2G", "probe.dirty=16"),
        "PROBE dirty gen=",
        20,
    );
    let gens = assert_continuous(&t, "PROBE dirty gen=");
    eprintln!("{gens} generations, every page checked, across 20 migrations");
}

#[test]
fn migrations_with_4_vcpus_256m_dirtying_and_1_vcpu_2g_idle() {
    let pair = Pair::new("mix");
    let t = ping_pong(
        &pair,
        "mig-mix-a",
        (4, "256M", "probe.dirty=16"),
        "PROBE dirty gen=",
        6,
    );
    assert_continuous(&t, "PROBE dirty gen=");
    let t = ping_pong(
        &pair,
        "mig-mix-b",
        (1, "2G", "probe.tick"),
        "PROBE tick ",
        6,
    );
    let ticks = vireo_tests::vmm_process::counters_in(&t, "PROBE tick ");
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "ticks not continuous: {ticks:?}"
    );
}

/// Waits until the source is back to running after a failed migration and
/// its counter moves on.
fn assert_source_runs_on(src: &Vmm, prefix: &str) {
    vireo_tests::wait_for("the source to fail the migration", WAIT, || {
        matches!(src.phase().as_deref(), Some("failed" | "cancelled"))
    });
    let (_, info) = vireo_tests::api_call(&src.api, "GET", "/vm");
    assert!(info.contains("\"state\":\"running\""), "{info}");
    let n = src.counters(prefix).len();
    src.wait_counters(prefix, n + 2, WAIT);
}

#[test]
fn a_destination_killed_at_random_points_leaves_the_source_running() {
    let pair = Pair::new("kill-dst");
    let dir = scratch_dir("mig-kill-dst");
    let src = Vmm::boot(Some(&pair.a), &dir, "src", 2, "512M", "probe.dirty=8", &[]);
    src.wait_counters("PROBE dirty gen=", 2, WAIT);
    let mut seed = 0x5eed_u64;
    for n in 1..=20 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(seed >> 33 & 0x3ff);
        let mut dst = Vmm::incoming(Some(&pair.b), &dir, &format!("dst{n}"), &url(1, n), &[]);
        wait_for_listen(&dst);
        // A slow link, so the kill lands inside the transfer.
        src.migrate(&format!(
            r#"{{"url": "{}", "bandwidth_mbps": 20}}"#,
            url(1, n)
        ));
        std::thread::sleep(delay);
        dst.kill();
        assert_source_runs_on(&src, "PROBE dirty gen=");
    }
    let code = src.phase();
    assert_eq!(code.as_deref(), Some("failed"));
    drop(src);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The faults' setting: a source in `pair.a` dirtying 8 MiB, running, and a
/// destination in `pair.b` listening on `url(1, n)`; `body_extra` is added
/// to the migration request, which is sent.
struct Faulted {
    dir: std::path::PathBuf,
    src: Vmm,
    dst: Vmm,
}

fn migrate_into_fault(pair: &Pair, tag: &str, body_extra: &str) -> Faulted {
    let dir = scratch_dir(tag);
    let src = Vmm::boot(Some(&pair.a), &dir, "src", 2, "512M", "probe.dirty=8", &[]);
    src.wait_counters("PROBE dirty gen=", 2, WAIT);
    let dst = Vmm::incoming(Some(&pair.b), &dir, "dst", &url(1, 1), &[]);
    wait_for_listen(&dst);
    src.migrate(&format!(r#"{{"url": "{}", {body_extra}}}"#, url(1, 1)));
    Faulted { dir, src, dst }
}

/// Waits until the migration has put bytes on the wire.
fn wait_precopy(src: &Vmm) {
    vireo_tests::wait_for("bytes on the wire", WAIT, || {
        src.migration().contains("\"phase\":\"precopy\"")
    });
}

#[test]
fn a_killed_source_leaves_no_half_vm_running() {
    let pair = Pair::new("kill-src");
    let Faulted {
        dir,
        mut src,
        mut dst,
    } = migrate_into_fault(&pair, "mig-kill-src", r#""bandwidth_mbps": 20"#);
    std::thread::sleep(Duration::from_millis(500));
    src.kill();
    let code = wait_exit(&mut dst, WAIT);
    assert_eq!(code, 1, "the destination must give up: {}", dst.stderr());
    assert!(
        dst.serial().is_empty(),
        "the half-received guest ran: {}",
        dst.serial()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_cancelled_migration_leaves_the_source_running() {
    let pair = Pair::new("cancel");
    let Faulted { dir, src, mut dst } =
        migrate_into_fault(&pair, "mig-cancel", r#""bandwidth_mbps": 20"#);
    wait_precopy(&src);
    let (code, reply) = api_json(&src.api, "PUT", "/vm/migration/cancel", "");
    assert_eq!(code, 202, "{reply}");
    assert_source_runs_on(&src, "PROBE dirty gen=");
    assert_eq!(src.phase().as_deref(), Some("cancelled"));
    assert_eq!(wait_exit(&mut dst, WAIT), 1, "{}", dst.stderr());
    drop(src);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_link_cut_during_the_transfer_leaves_the_source_running() {
    let pair = Pair::new("cut");
    let extra = r#""bandwidth_mbps": 10, "link_timeout_ms": 2000"#;
    let Faulted { dir, src, mut dst } = migrate_into_fault(&pair, "mig-cut", extra);
    wait_precopy(&src);
    let cut_at = Instant::now();
    pair.cut();
    vireo_tests::wait_for("the source to give up", WAIT, || {
        src.phase().as_deref() == Some("failed")
    });
    eprintln!("the source gave up {:?} after the cut", cut_at.elapsed());
    assert_source_runs_on(&src, "PROBE dirty gen=");
    assert!(
        src.migration().contains("timed out") || src.migration().contains("Resource temporarily"),
        "{}",
        src.migration()
    );
    // The destination gives up too (its own link timeout) and runs nothing.
    assert_eq!(wait_exit(&mut dst, WAIT), 1, "{}", dst.stderr());
    assert!(dst.serial().is_empty());
    drop(src);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A guest dirtying memory faster than the link carries it: auto-converge
/// throttles its vCPUs until what is left fits the downtime budget; the
/// progress report shows passes, bytes and the throttle on the way.
#[test]
fn auto_converge_brings_a_fast_dirtier_within_the_downtime_budget() {
    let pair = Pair::new("converge");
    let dir = scratch_dir("mig-converge");
    let src = Vmm::boot(Some(&pair.a), &dir, "src", 1, "512M", "probe.dirty=16", &[]);
    src.wait_counters("PROBE dirty gen=", 2, WAIT);
    let dst = Vmm::incoming(Some(&pair.b), &dir, "dst", &url(1, 1), &[]);
    wait_for_listen(&dst);
    let body = format!(
        r#"{{"url": "{}", "bandwidth_mbps": 40, "max_downtime_ms": 150, "exit_when_done": false}}"#,
        url(1, 1)
    );
    src.migrate(&body);
    let mut seen_passes = Vec::new();
    let status = loop {
        let s: serde_json::Value = serde_json::from_str(&src.migration_body()).unwrap();
        seen_passes.push(s["pass"].as_u64().unwrap());
        match s["phase"].as_str().unwrap() {
            "completed" => break s,
            "failed" | "cancelled" | "unknown" => panic!("{s}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    eprintln!("final status: {status}");
    assert!(
        status["throttle_percent"].as_u64().unwrap() > 0,
        "never throttled: {status}"
    );
    assert!(
        status["pass"].as_u64().unwrap() < 30,
        "did not converge: {status}"
    );
    assert!(
        seen_passes.windows(2).all(|w| w[1] >= w[0]),
        "{seen_passes:?}"
    );
    let downtime = status["downtime_ms"].as_f64().unwrap();
    assert!(downtime < 2000.0, "downtime {downtime} ms");
    assert_eq!(api_json(&src.api, "PUT", "/vm/shutdown", "").0, 204);
    dst.wait_counters("PROBE dirty gen=", 1, WAIT);
    assert_continuous(&(src.serial() + &dst.serial()), "PROBE dirty gen=");
    std::fs::remove_dir_all(dir).unwrap();
}
