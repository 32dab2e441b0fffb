//! The coordinator's side of node sessions: registration (with inventory
//! reconciliation), heartbeats in, commands out.

use crate::catalog::Record;
use crate::state::{Coord, State};
use protocol::handshake::{self, Role};
use protocol::{
    ChunkId, Connection, CoordResponse, NodeId, NodeRequest, Register, RegisterAck, SessionMsg,
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
    handshake::initiate(&mut conn, Role::Coord, coord.config.secret.as_ref()).await?;
    conn.send(&NodeRequest::Attach).await?;
    let reg: Register = conn.recv_reply().await?;
    Ok((conn, reg))
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
    let (tx, mut rx) = mpsc::channel(256);
    let (gen, records, deletes) = {
        let mut st = coord.lock();
        let mut records = Vec::new();
        if st.catalog.node_addrs.get(&id) != Some(&reg.addr) {
            records.push(Record::NodeAddr {
                id: id.clone(),
                addr: reg.addr.clone(),
            });
        }
        let gen = st.members.register(&id, &reg.addr, reg.stats.clone(), tx);
        let (more, deletes) = reconcile(&st, &coord, &id, &reg.inventory);
        records.extend(more);
        (gen, records, deletes)
    };
    let ack = RegisterAck {
        heartbeat_ms: coord.config.heartbeat.as_millis() as u64,
    };
    let sent = match origin {
        Origin::Node => conn.reply(&CoordResponse::Registered(ack)).await,
        Origin::Coord => conn.reply(&ack).await,
    };
    if let Err(e) = sent {
        tracing::warn!(node = %id, error = %e, "registration failed");
        coord.lock().members.session_closed(&id, gen);
        return;
    }
    tracing::info!(node = %id, addr = %reg.addr, chunks = reg.inventory.len(), "node registered");
    if let Err(e) = coord.commit(records).await {
        tracing::error!(node = %id, error = %e, "could not record reconciliation");
    }
    if !deletes.is_empty() {
        tracing::info!(node = %id, chunks = deletes.len(), "node holds unreferenced chunks; deleting");
        let _ = conn.send(&SessionMsg::Delete(deletes)).await;
    }
    loop {
        tokio::select! {
            m = conn.recv::<SessionMsg>() => match m {
                Ok(SessionMsg::Heartbeat(stats)) => {
                    // Back from the dead on the same connection (a hang, not
                    // a crash): close the session so that the node registers
                    // again and copies dropped meanwhile are deleted (found by
                    // `dfs-sim chaos`: SIGSTOP outlasting `dead_after` left
                    // orphan chunks).
                    if coord.lock().members.heartbeat(&id, stats) {
                        tracing::warn!(node = %id, "node declared dead is back on its old session; closing it so that it registers again");
                        break;
                    }
                }
                Ok(SessionMsg::RepairDone { task, chunk, error }) => {
                    crate::repair::done(&coord, &id, task, chunk, error).await
                }
                Ok(SessionMsg::Corrupt(chunk)) => crate::repair::corrupt(&coord, &id, chunk).await,
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
    coord.lock().members.session_closed(&id, gen);
}

/// Compares a node's inventory with the catalog. Copies still needed are
/// counted again; copies of chunks that are fully protected elsewhere, or of
/// no committed file and no upload in progress, are deleted. Chunks the
/// catalog places on the node but the node no longer has are dropped from
/// its entry, which makes them visibly under-protected.
fn reconcile(
    st: &State,
    coord: &Coord,
    node: &NodeId,
    inventory: &[ChunkId],
) -> (Vec<Record>, Vec<ChunkId>) {
    let now = Instant::now();
    let inv: HashSet<ChunkId> = inventory.iter().copied().collect();
    let pending: HashSet<ChunkId> = st.uploads.values().flat_map(|u| u.chunk_ids()).collect();
    let mut records = Vec::new();
    let mut deletes = Vec::new();
    for id in &inv {
        match st.catalog.chunk(id) {
            Some((f, c, parity)) => {
                if c.nodes.contains(node) {
                    continue;
                }
                let live = c
                    .nodes
                    .iter()
                    .filter(|n| st.members.is_alive(n, now, &coord.config))
                    .count() as u32;
                if live < f.target(parity) {
                    records.push(Record::AddCopy {
                        chunk: *id,
                        node: node.clone(),
                    });
                } else {
                    deletes.push(*id);
                }
            }
            None if pending.contains(id) => {}
            None => deletes.push(*id),
        }
    }
    for f in st.catalog.files.values() {
        for (c, _) in f.chunks() {
            if c.nodes.contains(node) && !inv.contains(&c.header.id) {
                tracing::warn!(%node, chunk = %c.header.id, "node lost a chunk copy");
                records.push(Record::DropCopies {
                    chunk: c.header.id,
                    nodes: vec![node.clone()],
                });
            }
        }
    }
    (records, deletes)
}
