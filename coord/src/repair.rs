//! Self-healing: bringing every chunk back to its target number of copies.
//!
//! A scan (a few times per heartbeat) compares each chunk's holders with its
//! target, counting only nodes that are not dead and not draining. Deficits
//! are ordered like GFS and HDFS do it, closest to loss first: a data chunk
//! with no readable copy (rebuilt from its stripe), then one with a single
//! copy, then other data deficits, then parity blocks. Up to
//! `repair_parallel` orders run at once, each sent to the node that will
//! hold the new copy, which fetches from its peers directly. A node's
//! report of success adds the copy to the catalog (journaled); a failure, a
//! timeout or the target's death drops the order, and the next scan plans it
//! again, elsewhere if need be. Chunks back at target are trimmed: holders
//! that are dead, draining or in excess are dropped from the catalog and
//! (when alive) told to delete their copy.

use crate::catalog::{FileEntry, Record};
use crate::state::{Coord, State};
use protocol::{
    ChunkId, NodeAddr, NodeId, NodeState, RebuildPart, RepairOrder, RepairSource, RepairStatus,
    SessionMsg,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Orders per target node at once, so one node is not flooded while others
/// idle.
const PER_TARGET: usize = 3;
/// Pause before a failed chunk is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

pub struct Task {
    pub id: u64,
    pub target: NodeId,
    pub started: Instant,
    pub bytes: u64,
}

/// Repair bookkeeping, kept in [`State`].
#[derive(Default)]
pub struct Repairs {
    pub in_flight: HashMap<ChunkId, Task>,
    next_task: u64,
    retry_at: HashMap<ChunkId, Instant>,
    pub done_chunks: u64,
    pub done_bytes: u64,
    pub failed: u64,
    pub waiting_chunks: u64,
    pub waiting_bytes: u64,
    /// Chunks below target that cannot be repaired now (all sources gone).
    pub stuck: HashSet<ChunkId>,
    /// Open incident: the earliest death not yet fully repaired.
    incident: Option<Incident>,
    last_mttr: Option<Duration>,
    last_rate: u64,
}

struct Incident {
    died: Instant,
    done_bytes_at_start: u64,
    first_repair: Option<Instant>,
}

impl Repairs {
    /// A node died at `died`: the clock for MTTR starts then.
    pub fn node_died(&mut self, node: &NodeId, died: Instant) {
        match &mut self.incident {
            Some(i) => i.died = i.died.min(died),
            None => {
                self.incident = Some(Incident {
                    died,
                    done_bytes_at_start: self.done_bytes,
                    first_repair: None,
                })
            }
        }
        tracing::warn!(%node, "repair: node lost, re-protecting its chunks");
    }

    pub fn status(&self, parallel: usize, now: Instant) -> RepairStatus {
        let rate = match &self.incident {
            Some(i) => {
                let secs = i
                    .first_repair
                    .map(|t| now.saturating_duration_since(t).as_secs_f64())
                    .unwrap_or(0.0);
                if secs > 0.0 {
                    ((self.done_bytes - i.done_bytes_at_start) as f64 / secs) as u64
                } else {
                    0
                }
            }
            None => self.last_rate,
        };
        RepairStatus {
            waiting_chunks: self.waiting_chunks,
            waiting_bytes: self.waiting_bytes,
            in_flight_chunks: self.in_flight.len() as u64,
            in_flight_bytes: self.in_flight.values().map(|t| t.bytes).sum(),
            done_chunks: self.done_chunks,
            done_bytes: self.done_bytes,
            failed: self.failed,
            rate_bytes_per_s: rate,
            last_mttr_ms: self.last_mttr.map(|d| d.as_millis() as u64),
            incident_open_ms: self
                .incident
                .as_ref()
                .map(|i| now.saturating_duration_since(i.died).as_millis() as u64),
            parallel: parallel as u32,
        }
    }
}

/// The repair loop: scan, journal, send; until the coordinator stops.
pub async fn run(coord: Arc<Coord>, mut stop: watch::Receiver<bool>) {
    if coord.config.read_only {
        return;
    }
    let period =
        (coord.config.heartbeat / 6).clamp(Duration::from_millis(20), Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        let Plan {
            records,
            deletes,
            orders,
        } = scan(&coord);
        if let Err(e) = coord.commit(records).await {
            tracing::error!(error = %e, "repair: could not journal trimmed locations");
            continue;
        }
        // Trimmed copies go after the delete grace, like every delete.
        coord.collect(
            deletes
                .into_iter()
                .flat_map(|(node, ids)| ids.into_iter().map(move |id| (id, vec![node.clone()])))
                .collect(),
        );
        for (node, order) in orders {
            let chunk = order.header.id;
            let sent = coord.lock().members.send(&node, SessionMsg::Repair(order));
            if !sent {
                coord.lock().repairs.in_flight.remove(&chunk);
            }
        }
    }
}

#[derive(Default)]
struct Plan {
    records: Vec<Record>,
    deletes: Vec<(NodeId, Vec<ChunkId>)>,
    orders: Vec<(NodeId, RepairOrder)>,
}

struct Need {
    /// Enough copies, but some sit where they weaken the stripe.
    relocate: bool,
    priority: u8,
    chunk: ChunkId,
    file: protocol::FileName,
    stripe: usize,
    slot: Option<usize>,
    bytes: u64,
    sources: Vec<NodeId>,
}

fn scan(coord: &Coord) -> Plan {
    let cfg = &coord.config;
    let now = Instant::now();
    let mut guard = coord.lock();
    let st: &mut State = &mut guard;
    let mut plan = Plan::default();
    // Deaths are noticed here too (not only by the monitor), so an incident
    // is always open before its first repair is planned.
    for (node, died) in st.members.check(now, cfg) {
        st.repairs.node_died(&node, died);
    }

    // Orders that will not report back: timed out, or target gone.
    let stale: Vec<ChunkId> = st
        .repairs
        .in_flight
        .iter()
        .filter(|(_, t)| {
            now.saturating_duration_since(t.started) > cfg.repair_timeout
                || !has_session(st, &t.target)
        })
        .map(|(c, _)| *c)
        .collect();
    for c in stale {
        if let Some(t) = st.repairs.in_flight.remove(&c) {
            tracing::warn!(chunk = %c, target = %t.target, "repair abandoned (timeout or target lost); re-planning");
            st.repairs.failed += 1;
        }
    }

    let state_of = |st: &State, n: &NodeId| {
        st.members
            .members
            .get(n)
            .map(|m| crate::membership::Membership::state(m, now, cfg))
            .unwrap_or(NodeState::Dead)
    };
    let mut load: HashMap<NodeId, u64> = HashMap::new();
    for f in st.catalog.files.values() {
        for (c, _) in f.chunks() {
            for n in &c.nodes {
                *load.entry(n.clone()).or_default() += 1;
            }
        }
    }
    let mut needs = Vec::new();
    let mut deletes: HashMap<NodeId, Vec<ChunkId>> = HashMap::new();
    for (name, f) in &st.catalog.files {
        for (si, s) in f.stripes.iter().enumerate() {
            let slots = (0..s.data.len())
                .map(Some)
                .chain(s.parity.iter().map(|_| None));
            for slot in slots {
                let c = match slot {
                    Some(i) => &s.data[i],
                    None => s.parity.as_ref().expect("slot exists"),
                };
                let id = c.header.id;
                if st.repairs.in_flight.contains_key(&id) {
                    continue;
                }
                let target = f.target(slot.is_none()) as usize;
                let alive: Vec<&NodeId> = c
                    .nodes
                    .iter()
                    .filter(|n| state_of(st, n) != NodeState::Dead)
                    .collect();
                let usable: Vec<&NodeId> = alive
                    .iter()
                    .copied()
                    .filter(|n| !st.catalog.draining.contains(*n))
                    .collect();
                // Copies that break the stripe's independence (a repair had
                // to fall back on them when nodes were short) are moved once
                // a better node is available.
                let conflicted = conflicts(f, si, slot);
                let good: Vec<&NodeId> = usable
                    .iter()
                    .copied()
                    .filter(|n| !conflicted.contains(*n))
                    .collect();
                if usable.len() >= target {
                    // Trim: keep `target` copies, well-placed ones first (then
                    // least loaded); dead, draining and excess holders go.
                    // Misplaced copies stay until a relocation replaces them.
                    let mut keep: Vec<&NodeId> = usable.clone();
                    keep.sort_by_key(|n| {
                        (conflicted.contains(*n), load.get(*n).copied().unwrap_or(0))
                    });
                    keep.truncate(target);
                    if keep.len() < c.nodes.len() {
                        let drop: Vec<NodeId> = c
                            .nodes
                            .iter()
                            .filter(|n| !keep.contains(n))
                            .cloned()
                            .collect();
                        for n in &drop {
                            if alive.contains(&n) {
                                deletes.entry(n.clone()).or_default().push(id);
                            }
                        }
                        plan.records.push(Record::DropCopies {
                            chunk: id,
                            nodes: drop,
                        });
                    }
                    if good.len() >= target {
                        continue;
                    }
                }
                let mut sources: Vec<NodeId> = alive.iter().map(|n| (*n).clone()).collect();
                sources.sort_by_key(|n| {
                    (
                        state_of(st, n) != NodeState::Alive,
                        st.catalog.draining.contains(n),
                    )
                });
                // Only misplaced, not short: a low-priority move that never
                // holds up an incident and waits for a node that fits.
                let relocate = usable.len() >= target;
                let priority = match (slot, sources.len()) {
                    _ if relocate => 4,
                    (None, _) => 3,
                    (Some(_), 0) => 0,
                    (Some(_), 1) => 1,
                    _ => 2,
                };
                needs.push(Need {
                    relocate,
                    priority,
                    chunk: id,
                    file: name.clone(),
                    stripe: si,
                    slot,
                    bytes: c.header.stored_len,
                    sources,
                });
            }
        }
    }
    plan.deletes = deletes.into_iter().collect();
    needs.sort_by_key(|n| n.priority);

    let mut per_target: HashMap<NodeId, usize> = HashMap::new();
    for t in st.repairs.in_flight.values() {
        *per_target.entry(t.target.clone()).or_default() += 1;
    }
    let writable: Vec<NodeAddr> = st.members.writable(now, cfg, &st.catalog.draining);
    let (mut waiting_chunks, mut waiting_bytes) = (0, 0);
    let mut stuck = HashSet::new();
    for need in &needs {
        let room = st.repairs.in_flight.len() < cfg.repair_parallel.max(1);
        let backed_off = st
            .repairs
            .retry_at
            .get(&need.chunk)
            .is_some_and(|t| *t > now);
        let order = if room && !backed_off {
            make_order(st, need, &writable, &per_target, &load, now, cfg)
        } else {
            None
        };
        match order {
            Some((target, order)) => {
                tracing::info!(
                    file = %need.file, chunk = %need.chunk, priority = need.priority, %target,
                    kind = match order.source { RepairSource::Copy(_) => "copy", RepairSource::Rebuild(_) => "rebuild" },
                    "repair scheduled"
                );
                *per_target.entry(target.clone()).or_default() += 1;
                *load.entry(target.clone()).or_default() += 1;
                st.repairs.next_task += 1;
                st.repairs.in_flight.insert(
                    need.chunk,
                    Task {
                        id: order.task,
                        target: target.clone(),
                        started: now,
                        bytes: need.bytes,
                    },
                );
                if let Some(i) = st.repairs.incident.as_mut() {
                    i.first_repair.get_or_insert(now);
                }
                plan.orders.push((target, order));
            }
            None if need.relocate => {}
            None => {
                waiting_chunks += 1;
                waiting_bytes += need.bytes;
                if room && !backed_off {
                    stuck.insert(need.chunk);
                }
            }
        }
    }
    for c in &stuck {
        if !st.repairs.stuck.contains(c) {
            tracing::warn!(chunk = %c, "repair: no source or no eligible target for this chunk now");
        }
    }
    st.repairs.stuck = stuck;
    st.repairs.waiting_chunks = waiting_chunks;
    st.repairs.waiting_bytes = waiting_bytes;
    if needs.iter().all(|n| n.relocate) && st.repairs.in_flight.is_empty() {
        if let Some(i) = st.repairs.incident.take() {
            let mttr = now.saturating_duration_since(i.died);
            let bytes = st.repairs.done_bytes - i.done_bytes_at_start;
            let busy = i
                .first_repair
                .map(|t| now.saturating_duration_since(t).as_secs_f64())
                .unwrap_or(0.0);
            st.repairs.last_rate = if busy > 0.0 {
                (bytes as f64 / busy) as u64
            } else {
                0
            };
            st.repairs.last_mttr = Some(mttr);
            tracing::info!(
                mttr_s = mttr.as_secs_f64(),
                repaired_bytes = bytes,
                rate_mb_s = st.repairs.last_rate as f64 / 1e6,
                "repair: every chunk is fully protected again"
            );
        }
    }
    plan
}

/// Holders of chunk `slot` of stripe `si` whose copy weakens the stripe:
/// a parity copy on a node holding data of the stripe, and (with a single
/// copy per chunk) a data copy on a node holding an earlier chunk of the
/// stripe. The later chunk is the one that moves, so exactly one does.
fn conflicts(f: &FileEntry, si: usize, slot: Option<usize>) -> HashSet<NodeId> {
    let s = &f.stripes[si];
    match slot {
        None => s
            .data
            .iter()
            .flat_map(|d| d.nodes.iter().cloned())
            .collect(),
        Some(i) if f.replication == 1 => s.data[..i]
            .iter()
            .flat_map(|d| d.nodes.iter().cloned())
            .collect(),
        Some(_) => HashSet::new(),
    }
}

fn has_session(st: &State, n: &NodeId) -> bool {
    st.members
        .members
        .get(n)
        .is_some_and(|m| m.session.is_some())
}

/// Picks the node to hold the new copy and what it fetches from.
fn make_order(
    st: &mut State,
    need: &Need,
    writable: &[NodeAddr],
    per_target: &HashMap<NodeId, usize>,
    load: &HashMap<NodeId, u64>,
    now: Instant,
    cfg: &crate::config::CoordConfig,
) -> Option<(NodeId, RepairOrder)> {
    let f: &FileEntry = st.catalog.files.get(&need.file)?;
    let stripe = f.stripes.get(need.stripe)?;
    let chunk = match need.slot {
        Some(i) => stripe.data.get(i)?,
        None => stripe.parity.as_ref()?,
    };
    // Nodes that would break the stripe's independence if they held this
    // copy: for data, the parity holder (and, at one copy, the holders of
    // its stripe siblings); for parity, every data holder of the stripe.
    let mut avoid: HashSet<&NodeId> = HashSet::new();
    match need.slot {
        Some(i) => {
            if let Some(p) = &stripe.parity {
                avoid.extend(p.nodes.iter());
            }
            if f.replication == 1 {
                for (j, d) in stripe.data.iter().enumerate() {
                    if j != i {
                        avoid.extend(d.nodes.iter());
                    }
                }
            }
        }
        None => {
            for d in &stripe.data {
                avoid.extend(d.nodes.iter());
            }
        }
    }
    let eligible = |n: &&NodeAddr| {
        !chunk.nodes.contains(&n.id) && per_target.get(&n.id).copied().unwrap_or(0) < PER_TARGET
    };
    let pick = |strict: bool| {
        writable
            .iter()
            .filter(eligible)
            .filter(|n| !strict || !avoid.contains(&n.id))
            .min_by_key(|n| load.get(&n.id).copied().unwrap_or(0))
            .cloned()
    };
    // Protection first: when no node keeps the stripe independent, any
    // node is better than staying below target. A relocation exists only to
    // restore independence, so it waits for a node that does.
    let target = match pick(true) {
        Some(t) => t,
        None if need.relocate => return None,
        None => pick(false)?,
    };
    let source = if !need.sources.is_empty() {
        RepairSource::Copy(
            need.sources
                .iter()
                .map(|n| st.members.node_addr(n))
                .collect(),
        )
    } else {
        let mut parts = Vec::new();
        let others = stripe
            .data
            .iter()
            .enumerate()
            .filter(|(j, _)| Some(*j) != need.slot)
            .map(|(_, c)| c)
            .chain(stripe.parity.iter().filter(|_| need.slot.is_some()));
        for c in others {
            let nodes: Vec<NodeAddr> = c
                .nodes
                .iter()
                .filter(|n| st.members.is_alive(n, now, cfg))
                .map(|n| st.members.node_addr(n))
                .collect();
            if nodes.is_empty() {
                return None;
            }
            parts.push(RebuildPart {
                header: c.header.clone(),
                nodes,
            });
        }
        if need.slot.is_some() && stripe.parity.is_none() {
            return None;
        }
        RepairSource::Rebuild(parts)
    };
    Some((
        target.id,
        RepairOrder {
            task: st.repairs.next_task + 1,
            header: chunk.header.clone(),
            source,
        },
    ))
}

/// A node reports the outcome of an order. The order stays in flight until
/// the new copy is journaled, so no scan sees the chunk short meanwhile and
/// orders it twice.
pub async fn done(coord: &Coord, node: &NodeId, task: u64, chunk: ChunkId, error: Option<String>) {
    {
        let mut st = coord.lock();
        match st.repairs.in_flight.get(&chunk) {
            Some(t) if t.id == task && &t.target == node => {}
            _ => {
                tracing::debug!(%chunk, %node, task, "stale repair report ignored");
                return;
            }
        }
        if let Some(e) = error {
            st.repairs.in_flight.remove(&chunk);
            st.repairs.failed += 1;
            st.repairs
                .retry_at
                .insert(chunk, Instant::now() + RETRY_AFTER);
            tracing::warn!(%chunk, %node, error = %e, "repair failed; will re-plan");
            return;
        }
        if st.catalog.chunk(&chunk).is_none() {
            // The file went away meanwhile: the new copy is garbage.
            st.repairs.in_flight.remove(&chunk);
            st.members.send(node, SessionMsg::Delete(vec![chunk]));
            return;
        }
    }
    let res = coord
        .commit(vec![Record::AddCopy {
            chunk,
            node: node.clone(),
        }])
        .await;
    let mut st = coord.lock();
    let Some(t) = st.repairs.in_flight.remove(&chunk) else {
        return;
    };
    match res {
        Ok(_) => {
            st.repairs.retry_at.remove(&chunk);
            st.repairs.done_chunks += 1;
            st.repairs.done_bytes += t.bytes;
            tracing::info!(%chunk, %node, bytes = t.bytes, "repair done");
        }
        Err(e) => {
            st.repairs.failed += 1;
            tracing::error!(error = %e, "could not journal a repaired copy");
        }
    }
}

/// A node found its copy corrupt and quarantined it.
pub async fn corrupt(coord: &Coord, node: &NodeId, chunk: ChunkId) {
    let record = {
        let st = coord.lock();
        match st.catalog.chunk(&chunk) {
            Some((_, c, _)) if c.nodes.contains(node) => Record::DropCopies {
                chunk,
                nodes: vec![node.clone()],
            },
            _ => return,
        }
    };
    tracing::warn!(%chunk, %node, "copy reported corrupt; dropping it and scheduling repair");
    if let Err(e) = coord.commit(vec![record]).await {
        tracing::error!(error = %e, "could not journal a corrupt copy");
    }
}
