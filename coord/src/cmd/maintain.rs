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
        let st = coord.lock();
        if !st.members.members.contains_key(&node) {
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

pub fn scrub(coord: &Coord, node: Option<NodeId>) -> Result<()> {
    let st = coord.lock();
    let targets: Vec<NodeId> = match node {
        Some(n) => {
            if !st.members.members.contains_key(&n) {
                return Err(Error::BadRequest(format!("no node {n} in this cluster")));
            }
            vec![n]
        }
        None => st.members.members.keys().cloned().collect(),
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

/// A reader saw a bad copy. The node is asked to verify it rather than the
/// copy being dropped on the client's word alone.
pub fn report_bad(coord: &Coord, chunk: ChunkId, node: NodeId, reason: &str) -> Result<()> {
    let st = coord.lock();
    tracing::warn!(%chunk, %node, reason, "reader reported a bad copy; asking the node to verify it");
    st.members.send(&node, SessionMsg::Verify(chunk));
    Ok(())
}
