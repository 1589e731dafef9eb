use super::*;

const TWO_CPUS: f64 = 2.0;

fn node(memory_mib: u64, cpu: f64) -> Load {
    Load {
        memory_mib,
        cpu,
        cpus: TWO_CPUS,
    }
}

fn vm(name: &str, memory_mib: u64, cpu: f64) -> Candidate {
    Candidate {
        name: name.into(),
        memory_mib,
        cpu,
    }
}

fn rules() -> Rules {
    Rules { cpu_threshold: 0.8 }
}

fn anywhere(_: u32, _: &Candidate) -> Option<()> {
    Some(())
}

#[test]
fn a_cpu_hot_node_sends_the_busiest_vm_that_evens_out_to_the_least_busy_node() {
    let local = [
        vm("idle", 512, 0.0),
        vm("busy", 128, 0.9),
        vm("warm", 128, 0.8),
    ];
    let mine = node(768, 1.7);
    let others = [(2, node(128, 0.6)), (3, node(1024, 0.0))];
    // "busy" would leave node 3 busier (0.45 of its CPUs) than this one
    // (0.40): "warm" goes.
    let chosen = rules().for_cpu(mine, &others, &local, anywhere);
    assert_eq!(chosen, Some(("warm".into(), 3)));
}

#[test]
fn no_cpu_move_that_leaves_the_destination_busier_than_the_source() {
    // One busy VM: wherever it goes, that node is then the busier one.
    let local = [vm("busy", 128, 1.0)];
    let others = [(2, node(0, 0.0))];
    assert_eq!(
        rules().for_cpu(node(128, 1.0), &others, &local, anywhere),
        None
    );
    // Two: one may go, and after it neither node would send it back.
    let local = [vm("a", 128, 1.0), vm("b", 128, 1.0)];
    let chosen = rules().for_cpu(node(256, 2.0), &others, &local, anywhere);
    assert_eq!(chosen, Some(("a".into(), 2)));
    let back = [vm("a", 128, 1.0)];
    assert_eq!(
        rules().for_cpu(node(128, 1.0), &[(1, node(128, 1.0))], &back, anywhere),
        None
    );
}

#[test]
fn a_node_that_cannot_take_the_vm_is_skipped() {
    let local = [vm("a", 128, 1.0), vm("b", 128, 1.0)];
    let others = [(2, node(0, 0.0)), (3, node(0, 0.0))];
    let not_two = |id: u32, _: &Candidate| (id != 2).then_some(());
    let chosen = rules().for_cpu(node(256, 2.0), &others, &local, not_two);
    assert_eq!(chosen, Some(("a".into(), 3)));
}

#[test]
fn memory_evens_out_with_the_largest_vm_that_fits() {
    let local = [vm("s", 256, 0.0), vm("l", 1024, 0.0), vm("m", 512, 0.0)];
    let mine = node(1792, 0.0);
    // l (1024) would leave 768 here against 1024 there: m goes.
    let chosen = rules().for_memory(mine, &[(2, node(0, 0.0))], &local, anywhere);
    assert_eq!(chosen, Some(("m".into(), 2)));
    // Equal counts of equal VMs stay put.
    let local = [vm("a", 256, 0.0)];
    assert_eq!(
        rules().for_memory(node(256, 0.0), &[(2, node(256, 0.0))], &local, anywhere),
        None
    );
}

#[test]
fn a_memory_move_does_not_make_the_destination_cpu_hot() {
    // "busy" would even out memory, but would take node 2 over 80% of its
    // CPUs and above this node: the idle VM goes instead.
    let local = [vm("busy", 512, 1.2), vm("idle", 512, 0.0)];
    let others = [(2, node(0, 0.6))];
    let chosen = rules().for_memory(node(1024, 1.2), &others, &local, anywhere);
    assert_eq!(chosen, Some(("idle".into(), 2)));
}
