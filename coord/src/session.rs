//! The coordinator's side of node sessions: registration (with inventory
//! reconciliation), heartbeats in, commands out.

use crate::catalog::{Garbage, Record};
use crate::state::{Coord, Parts};
use protocol::handshake::{self, Credential, Role};
use protocol::{
    ChunkId, Connection, CoordResponse, ErrorKind, NodeId, NodeRequest, Register, RegisterAck,
    SessionMsg, WireError,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Who opened the session, which decides how registration is answered.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The node dialled us with `CoordRequest::Register`.
    Node,
    /// We dialled the node with `NodeRequest::Attach`.
    Coord,
}

/// Keeps a session with a node listed in `--nodes` open, redialling forever.
pub async fn dial_loop(coord: Arc<Coord>, addr: String, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    let mut last_err = String::new();
    loop {
        match attach(&coord, &addr).await {
            Ok((conn, reg)) => {
                backoff = Duration::from_millis(100);
                last_err.clear();
                serve(coord.clone(), conn, reg, Origin::Coord, stop.clone()).await;
            }
            Err(e) => {
                let msg = e.to_string();
                if msg != last_err {
                    tracing::warn!(%addr, error = %msg, "cannot reach node, retrying");
                    last_err = msg;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn attach(coord: &Coord, addr: &str) -> protocol::Result<(Connection, Register)> {
    let mut conn = Connection::connect(addr).await?;
    let cred = coord.config().secret.clone().map(Credential::Internal);
    handshake::initiate(&mut conn, Role::Coord, cred.as_ref(), Some(coord.cluster())).await?;
    conn.send(&NodeRequest::Attach).await?;
    let reg: Register = conn.recv_reply().await?;
    Ok((conn, reg))
}

/// Why a registration is refused, if it is.
fn refuse(coord: &Coord, reg: &Register) -> Option<String> {
    match reg.cluster {
        Some(c) if c != coord.cluster() => Some(format!(
            "node {} belongs to cluster {c}, but this coordinator's catalog ({}) is cluster {}: refusing it. Was the coordinator started with the wrong --data?",
            reg.node_id,
            coord.config().data_dir.display(),
            coord.cluster()
        )),
        _ => None,
    }
}

/// Why a registration claiming a live node's id is refused, if it is: the
/// id is taken by a node with an open session that is not dead, and the
/// two data directories' identities differ (two processes started with one
/// `--id`). The same directory on a new address is the node moving (or
/// restarting before its old session was seen closed), and is fine; so is
/// any registration while the id's holder is dead (a replaced disk), or
/// when either side predates identities.
fn identity_conflict(
    members: &crate::membership::Membership,
    coord: &Coord,
    reg: &Register,
) -> Option<String> {
    let m = members.get(&reg.node_id)?;
    let theirs = reg.node_uuid.as_ref()?;
    let ours = m.identity.as_ref()?;
    let live = m.session.is_some()
        && crate::membership::Membership::state(m, Instant::now(), coord.config())
            != protocol::NodeState::Dead;
    (live && ours != theirs).then(|| {
        format!(
            "refusing node {} at {}: another node is registered as {} at {} and alive, with data directory identity {ours}; this one's is {theirs}. Two nodes were started with --id {}? Give each node its own id (a node moving to another address keeps its directory, and is accepted)",
            reg.node_id, reg.addr, reg.node_id, m.addr, reg.node_id
        )
    })
}

/// Runs one registered session until it breaks or the coordinator stops.
pub async fn serve(
    coord: Arc<Coord>,
    mut conn: Connection,
    reg: Register,
    origin: Origin,
    mut stop: watch::Receiver<bool>,
) {
    let id = reg.node_id.clone();
    if let Some(why) = refuse(&coord, &reg) {
        tracing::error!(node = %id, "{why}");
        let _ = conn
            .reply_err(WireError::new(ErrorKind::Forbidden, why))
            .await;
        return;
    }
    // The term this session runs under: nodes refuse orders from a lower
    // one, and the session ends as soon as this coordinator stops leading.
    let Some(term) = coord.leading() else {
        if matches!(origin, Origin::Coord) {
            return;
        }
        let _ = conn
            .reply(&CoordResponse::NotLeader {
                leader: coord.group().and_then(|g| g.leader_addr()),
            })
            .await;
        return;
    };
    let seq = coord.seq();
    let behind = reg.seq_seen > seq;
    if behind {
        tracing::error!(
            node = %id,
            node_saw = reg.seq_seen,
            catalog_seq = seq,
            "node has seen a newer catalog than this coordinator holds (a stale copy of the data directory?): nothing will be deleted or set aside on it"
        );
    }
    let conflict = identity_conflict(coord.lock().parts().members, &coord, &reg);
    if let Some(why) = conflict {
        tracing::error!(node = %id, addr = %reg.addr, "{why}");
        let _ = conn
            .reply_err(WireError::new(ErrorKind::Forbidden, why))
            .await;
        return;
    }
    let (tx, mut rx) = mpsc::channel(256);
    let (gen, records, actions) = {
        let mut guard = coord.lock();
        let st = guard.parts();
        let mut records = Vec::new();
        if st.catalog.node_addrs().get(&id) != Some(&reg.addr) {
            records.push(Record::NodeAddr {
                id: id.clone(),
                addr: reg.addr.clone(),
            });
        }
        let gen = st.members.register(
            &id,
            &reg.addr,
            reg.stats.clone(),
            &reg.domain,
            reg.spare,
            tx,
        );
        let (more, actions) = reconcile(&st, &coord, &id, &reg, behind);
        // An empty regular node joined: rebalancing evens the cluster out
        // onto it (once repairs are done).
        if !reg.spare && reg.inventory.is_empty() && reg.set_aside.is_empty() {
            st.rebalance.node_joined(&id);
        }
        // A spare the catalog already places copies on took over data
        // before (e.g. before a coordinator restart): it is regular now.
        if reg.spare && st.catalog.holds_any(&id) {
            st.used_spares.insert(id.clone());
        }
        records.extend(more);
        if let Some(m) = st.members.get_mut(&id) {
            if reg.node_uuid.is_some() && m.identity.is_some() && m.identity != reg.node_uuid {
                tracing::warn!(node = %id, was = ?m.identity, now = ?reg.node_uuid, "node registers with another data directory than before (replaced disk?); its old copies count as lost");
            }
            if reg.node_uuid.is_some() {
                m.identity = reg.node_uuid.clone();
            }
            m.behind = behind;
            let now = Instant::now();
            m.set_aside = reg
                .set_aside
                .iter()
                .filter(|a| !actions.reclaim.contains(&a.id))
                .map(|a| {
                    let since = now.checked_sub(Duration::from_secs(a.age_s)).unwrap_or(now);
                    (a.id, (since, a.corrupt))
                })
                .chain(actions.set_aside.iter().map(|c| (*c, (now, false))))
                .collect();
        }
        (gen, records, actions)
    };
    let ack = RegisterAck {
        heartbeat_ms: coord.config().heartbeat.as_millis() as u64,
        cluster: coord.cluster(),
        catalog_seq: seq,
        term,
    };
    let sent = match origin {
        Origin::Node => conn.reply(&CoordResponse::Registered(ack)).await,
        Origin::Coord => conn.reply(&ack).await,
    };
    if let Err(e) = sent {
        tracing::warn!(node = %id, error = %e, "registration failed");
        coord.lock().parts().members.session_closed(&id, gen);
        return;
    }
    tracing::info!(node = %id, addr = %reg.addr, chunks = reg.inventory.len(), set_aside = reg.set_aside.len(), "node registered");
    match coord.commit(records).await {
        // Copies counted again for files removed meanwhile.
        Ok(garbage) => coord.collect(garbage),
        Err(e) => tracing::error!(node = %id, error = %e, "could not record reconciliation"),
    }
    if !actions.reclaim.is_empty() {
        tracing::info!(node = %id, chunks = actions.reclaim.len(), "node holds needed copies aside; reclaiming them");
        let _ = conn.send(&SessionMsg::Reclaim(actions.reclaim)).await;
    }
    if !actions.set_aside.is_empty() {
        tracing::warn!(node = %id, chunks = actions.set_aside.len(), grace_s = coord.config().orphan_grace.as_secs(), "node holds copies the catalog does not know; setting them aside (deleted only after the orphan grace period)");
        let _ = conn.send(&SessionMsg::SetAside(actions.set_aside)).await;
    }
    coord.collect(actions.excess);
    loop {
        tokio::select! {
            m = conn.recv::<SessionMsg>() => match m {
                Ok(SessionMsg::Heartbeat(stats)) => {
                    if coord.leading() != Some(term) {
                        tracing::info!(node = %id, term, "no longer leading: ending the node's session");
                        break;
                    }
                    coord.lock().parts().members.heartbeat(&id, stats);
                    if conn.send(&SessionMsg::Beat { term }).await.is_err() {
                        break;
                    }
                }
                Ok(SessionMsg::RepairDone { task, chunk, error }) => {
                    if !crate::rebalance::run::done(&coord, &id, task, chunk, &error).await {
                        crate::repair::run::done(&coord, &id, task, chunk, error).await
                    }
                }
                Ok(SessionMsg::Corrupt(chunk)) => {
                    if let Some(m) = coord.lock().parts().members.get_mut(&id) {
                        m.set_aside.insert(chunk, (Instant::now(), true));
                    }
                    crate::repair::run::corrupt(&coord, &id, chunk).await
                }
                Ok(SessionMsg::Missing(chunk)) => crate::repair::run::corrupt(&coord, &id, chunk).await,
                Ok(other) => tracing::debug!(node = %id, ?other, "ignoring session message"),
                Err(e) => {
                    tracing::debug!(node = %id, error = %e, "session read ended");
                    break;
                }
            },
            Some(cmd) = rx.recv() => {
                if conn.send(&cmd).await.is_err() {
                    break;
                }
            }
            _ = stop.changed() => break,
        }
    }
    coord.lock().parts().members.session_closed(&id, gen);
}

/// What registration asks of a node besides the journal records.
#[derive(Default)]
struct Actions {
    /// Copies the catalog does not know: move aside, never delete yet.
    set_aside: Vec<ChunkId>,
    /// Set-aside copies the catalog needs: move back.
    reclaim: Vec<ChunkId>,
    /// Copies of known chunks that are fully protected elsewhere.
    excess: Garbage,
}

/// Compares a node's inventory with the catalog. Copies still needed are
/// counted again (including set-aside ones, which are reclaimed); excess
/// copies of known chunks are deleted after the delete grace; copies of no
/// committed file and no upload in progress are set aside, never deleted
/// here. Nothing at all is set aside or deleted on a node that has seen a
/// newer catalog, or while the catalog is empty. Chunks the catalog places on
/// the node but the node no longer has are dropped from its entry, which
/// makes them visibly under-protected.
fn reconcile(
    st: &Parts,
    coord: &Coord,
    node: &NodeId,
    reg: &Register,
    behind: bool,
) -> (Vec<Record>, Actions) {
    let now = Instant::now();
    let inv: HashSet<ChunkId> = reg.inventory.iter().copied().collect();
    let pending: HashSet<ChunkId> = st.uploads.chunk_ids();
    let trusted = !behind && !st.catalog.files().is_empty();
    let mut records = Vec::new();
    let mut actions = Actions::default();
    let below_target = |id: &ChunkId| -> Option<bool> {
        let (f, c, parity) = st.catalog.chunk(id)?;
        let live = c
            .nodes
            .iter()
            .filter(|n| *n != node && st.members.not_dead(n, now, coord.config()))
            .count() as u32;
        Some(live < f.target(parity))
    };
    for id in &inv {
        match st.catalog.chunk(id) {
            Some((_, c, _)) if c.nodes.contains(node) => {}
            Some(_) => {
                if below_target(id) == Some(true) {
                    records.push(Record::AddCopy {
                        chunk: *id,
                        node: node.clone(),
                    });
                } else if trusted {
                    actions.excess.push((*id, vec![node.clone()]));
                }
            }
            None if pending.contains(id) => {}
            None if trusted => actions.set_aside.push(*id),
            None => {}
        }
    }
    for a in &reg.set_aside {
        if a.corrupt || inv.contains(&a.id) {
            continue;
        }
        let listed = st
            .catalog
            .chunk(&a.id)
            .is_some_and(|(_, c, _)| c.nodes.contains(node));
        if listed || below_target(&a.id) == Some(true) {
            actions.reclaim.push(a.id);
            if !listed {
                records.push(Record::AddCopy {
                    chunk: a.id,
                    node: node.clone(),
                });
            }
        }
    }
    let reclaimed: HashSet<ChunkId> = actions.reclaim.iter().copied().collect();
    for f in st.catalog.files().values() {
        for (c, _) in f.chunks() {
            let id = c.header.id;
            if c.nodes.contains(node) && !inv.contains(&id) && !reclaimed.contains(&id) {
                tracing::warn!(%node, chunk = %id, "node lost a chunk copy");
                records.push(Record::DropCopies {
                    chunk: id,
                    nodes: vec![node.clone()],
                });
            }
        }
    }
    (records, actions)
}

/// Deletes set-aside copies whose grace period is over, on nodes for which
/// the catalog is known complete: the node is of this cluster (checked at
/// registration), has not seen a newer catalog, the catalog is not empty,
/// and the chunk is still unknown or not needed there.
pub fn purge_set_aside(coord: &Coord, now: Instant) {
    if coord.config().read_only {
        return;
    }
    let grace = coord.config().orphan_grace;
    let mut guard = coord.lock();
    let st = guard.parts();
    if st.catalog.files().is_empty() {
        return;
    }
    let pending: HashSet<ChunkId> = st.uploads.chunk_ids();
    let mut sends = Vec::new();
    for m in st.members.iter_mut() {
        if m.behind || m.session.is_none() {
            continue;
        }
        let due: Vec<ChunkId> = m
            .set_aside
            .iter()
            .filter(|(id, (since, corrupt))| {
                now.saturating_duration_since(*since) >= grace
                    && !pending.contains(id)
                    && (*corrupt
                        || st
                            .catalog
                            .chunk(id)
                            .is_none_or(|(_, c, _)| !c.nodes.contains(&m.id)))
            })
            .map(|(id, _)| *id)
            .take(4096)
            .collect();
        if due.is_empty() {
            continue;
        }
        for id in &due {
            m.set_aside.remove(id);
        }
        sends.push((m.id.clone(), due));
    }
    for (node, ids) in sends {
        tracing::info!(%node, chunks = ids.len(), "purging set-aside copies past their grace period");
        st.members.send(&node, SessionMsg::Purge(ids));
    }
}
