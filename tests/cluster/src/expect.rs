//! What tests assert about statuses: a group of nodes agreeing on one view
//! (same ring, same members, same votes, the expected quorum state).

use std::time::Duration;

use vireo_membership::status::ClusterStatus;

use crate::cluster::Cluster;
use crate::conf::ClusterSpec;
use crate::wait::wait_until;

/// The member node ids a status lists, sorted.
pub fn member_ids(s: &ClusterStatus) -> Vec<u32> {
    let mut ids: Vec<u32> = s.members.iter().map(|m| m.node_id).collect();
    ids.sort_unstable();
    ids
}

/// Node ids of node indices.
pub fn ids(indices: &[usize]) -> Vec<u32> {
    let mut ids: Vec<u32> = indices.iter().map(|&i| ClusterSpec::node_id(i)).collect();
    ids.sort_unstable();
    ids
}

/// One node's status shows exactly `members` (indices) and `quorate`.
pub fn shows(s: &ClusterStatus, members: &[usize], quorate: bool) -> Result<(), String> {
    let want = ids(members);
    if member_ids(s) != want || s.quorate != quorate {
        return Err(format!(
            "node {} shows members {:?} quorate {} (ring {}), want {:?} quorate {}",
            s.node_id,
            member_ids(s),
            s.quorate,
            s.ring_id,
            want,
            quorate
        ));
    }
    if s.total_votes as usize != members.len() {
        return Err(format!(
            "node {} counts {} votes for {} members",
            s.node_id,
            s.total_votes,
            members.len()
        ));
    }
    Ok(())
}

/// Waits until every node of `observers` shows exactly `members` with the given
/// quorum state, all on the same ring. Returns their statuses and the wait.
pub fn wait_for_view(
    c: &mut Cluster,
    observers: &[usize],
    members: &[usize],
    quorate: bool,
    timeout: Duration,
) -> Result<(Vec<ClusterStatus>, Duration), String> {
    let what = format!("nodes {observers:?} agree on members {members:?} quorate {quorate}");
    wait_until(timeout, &what, || {
        // Every node's reason, so a failure names all nodes that disagree.
        let mut statuses = Vec::new();
        let mut reasons = Vec::new();
        for &i in observers {
            match c
                .status(i)
                .and_then(|s| shows(&s, members, quorate).map(|()| s))
            {
                Ok(s) => statuses.push(s),
                Err(e) => reasons.push(e),
            }
        }
        if !reasons.is_empty() {
            return Err(reasons.join("; "));
        }
        same_ring(&statuses)?;
        Ok(statuses)
    })
}

/// All statuses name the same ring.
pub fn same_ring(statuses: &[ClusterStatus]) -> Result<(), String> {
    match statuses.windows(2).find(|w| w[0].ring_id != w[1].ring_id) {
        Some(w) => Err(format!(
            "node {} is on ring {}, node {} on ring {}",
            w[0].node_id, w[0].ring_id, w[1].node_id, w[1].ring_id
        )),
        None => Ok(()),
    }
}

/// Waits until the running nodes `observers` agree on being the whole quorate
/// membership and all expect `expected` votes (last_man_standing lowers it
/// one window after a loss).
pub fn wait_for_expected_votes(
    c: &mut Cluster,
    observers: &[usize],
    expected: u32,
    timeout: Duration,
) -> Result<Vec<ClusterStatus>, String> {
    let what = format!("nodes {observers:?} expect {expected} votes");
    let (statuses, _) = wait_until(timeout, &what, || {
        let (statuses, _) = wait_for_view(c, observers, observers, true, Duration::ZERO)?;
        match statuses.iter().find(|s| s.expected_votes != expected) {
            Some(s) => Err(format!("node {} expects {}", s.node_id, s.expected_votes)),
            None => Ok(statuses),
        }
    })?;
    Ok(statuses)
}
