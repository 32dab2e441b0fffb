//! `Drain`, `Scrub`, `ReportBad`: operator and client requests that set the
//! self-healing machinery to work.

use crate::catalog::Record;
use crate::error::{Error, Result};
use crate::state::Coord;
use protocol::{ChunkId, NodeId, SessionMsg};

/// Starts (or cancels) moving every copy off `node`. The repair loop does
/// the moving: a draining node's copies stop counting toward targets.
pub async fn drain(coord: &Coord, node: NodeId, cancel: bool) -> Result<()> {
    {
        let mut guard = coord.lock();
        let st = guard.parts();
        if !st.members.contains(&node) {
            return Err(Error::BadRequest(format!("no node {node} in this cluster")));
        }
    }
    coord
        .commit(vec![Record::Drain {
            node: node.clone(),
            on: !cancel,
        }])
        .await?;
    if cancel {
        tracing::info!(%node, "drain cancelled");
    } else {
        tracing::info!(%node, "draining node: moving every copy away");
    }
    Ok(())
}

/// Removes a node from the cluster's records once it is stopped and no
/// catalog entry counts on it; refuses otherwise, naming what to do first.
pub async fn forget(coord: &Coord, node: NodeId) -> Result<()> {
    {
        let mut guard = coord.lock();
        let st = guard.parts();
        let Some(m) = st.members.get(&node) else {
            return Err(Error::BadRequest(format!("no node {node} in this cluster")));
        };
        if m.session.is_some() {
            return Err(Error::BadRequest(format!(
                "{node} is running; drain it (dfs-sim drain {node} --wait), stop it, then forget it"
            )));
        }
        let held = st
            .catalog
            .files()
            .values()
            .flat_map(|f| f.chunks())
            .filter(|(c, _)| c.nodes.contains(&node))
            .count();
        if held > 0 {
            return Err(Error::BadRequest(format!(
                "the catalog still counts {held} chunk copies on {node}; wait for repair (dfs-sim fsck) or drain it first"
            )));
        }
    }
    coord
        .commit(vec![Record::Forget { node: node.clone() }])
        .await?;
    coord.lock().parts().members.forget(&node);
    tracing::info!(%node, "node forgotten");
    Ok(())
}

pub fn scrub(coord: &Coord, node: Option<NodeId>) -> Result<()> {
    let mut guard = coord.lock();
    let st = guard.parts();
    let targets: Vec<NodeId> = match node {
        Some(n) => {
            if !st.members.contains(&n) {
                return Err(Error::BadRequest(format!("no node {n} in this cluster")));
            }
            vec![n]
        }
        None => st.members.ids().cloned().collect(),
    };
    let mut reached = 0;
    for n in &targets {
        if st.members.send(n, SessionMsg::Scrub) {
            reached += 1;
        }
    }
    if reached == 0 {
        return Err(Error::BadRequest("no live node to scrub".into()));
    }
    tracing::info!(nodes = reached, "scrub requested");
    Ok(())
}

/// `dfs-sim rebalance`: starts a run (`start`) and reports progress. The
/// rebalancing loop does the moving, after any repair.
pub fn rebalance(coord: &Coord, start: bool) -> Result<protocol::RebalanceStatus> {
    if start && coord.config().read_only {
        return Err(Error::ReadOnly);
    }
    let mut guard = coord.lock();
    let st = guard.parts();
    if start && !st.rebalance.active() {
        tracing::info!("rebalance requested");
        st.rebalance.request();
    }
    Ok(st.rebalance.status())
}

/// A reader saw a bad copy. The node is asked to verify it rather than the
/// copy being dropped on the client's word alone. The same (chunk, node) is
/// verified at most once a minute, and at most a fixed number of orders go out
/// per second (`crate::reports`): a flood of reports costs the nodes nothing.
pub fn report_bad(coord: &Coord, chunk: ChunkId, node: NodeId, reason: &str) -> Result<()> {
    let mut guard = coord.lock();
    let st = guard.parts();
    let now = std::time::Instant::now();
    if st.catalog.chunk(&chunk).is_none() {
        return Ok(());
    }
    if !st.reports.admit(chunk, &node, now) {
        return Ok(());
    }
    tracing::warn!(%chunk, %node, reason = %reason.chars().take(200).collect::<String>(), "reader reported a bad copy; asking the node to verify it");
    st.members.send(&node, SessionMsg::Verify(chunk));
    Ok(())
}
