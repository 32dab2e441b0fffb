//! The repair loop and its messages: scan (a pure plan from `planner`),
//! journal, send orders, record their outcome. A child of `repair` so that
//! it reaches the bookkeeping's private fields while `state` (which holds
//! the bookkeeping) never imports the loop.

use super::*;
use crate::catalog::{Record, Slot};
use crate::planner;
use crate::state::{Coord, Parts};
use protocol::{NodeState, Rebuild, RebuildPart, RepairOrder, RepairSource, SessionMsg};
use std::sync::Arc;
use tokio::sync::watch;

/// The repair loop: scan, journal, send; until the coordinator stops.
pub async fn run(coord: Arc<Coord>, mut stop: watch::Receiver<bool>) {
    let dir = coord.config().data_dir.clone();
    if coord.config().read_only {
        return;
    }
    let period =
        (coord.config().heartbeat / 6).clamp(Duration::from_millis(20), Duration::from_millis(500));
    let mut pause = period;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        // Only a leader repairs (a group's followers wait).
        if coord.leading().is_none() {
            continue;
        }
        let started = Instant::now();
        let Plan {
            records,
            deletes,
            orders,
        } = scan(&coord);
        // A scan walks the whole catalog under its lock: with millions of
        // files it takes long enough that running it every `period` would
        // leave puts little time. Keep it to a tenth of the time (about 90
        // ms of pause per 10 ms of scan), so the loop reacts later in a huge
        // catalog but never starves the rest.
        pause = period.max(started.elapsed() * DUTY);
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
            coord.send_order(&node, order, |st, chunk| {
                st.repairs.in_flight.remove(&chunk);
            });
        }
        let due = coord
            .lock()
            .parts()
            .repairs
            .incidents
            .take_due(Instant::now());
        if let Some(bytes) = due {
            let dir = dir.clone();
            let _ = tokio::task::spawn_blocking(move || crate::incidents::save(dir, bytes)).await;
        }
    }
}

/// Pause after a scan, in multiples of the scan's own duration: scans take
/// at most one part in `DUTY + 1` of the coordinator's time.
const DUTY: u32 = 9;

#[derive(Default)]
struct Plan {
    records: Vec<Record>,
    deletes: Vec<(NodeId, Vec<ChunkId>)>,
    orders: Vec<(NodeId, RepairOrder)>,
}

fn scan(coord: &Coord) -> Plan {
    let cfg = coord.config();
    let now = Instant::now();
    let mut guard = coord.lock();
    let st = guard.parts();
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
                || !has_session(&st, &t.target)
        })
        .map(|(c, _)| *c)
        .collect();
    for c in stale {
        if let Some(t) = st.repairs.in_flight.remove(&c) {
            tracing::warn!(chunk = %c, target = %t.target, "repair abandoned (timeout or target lost); re-planning");
            st.repairs.failed += 1;
            st.repairs.incidents.failed(c);
        }
    }

    // The decisions: a pure function of catalog, liveness and in-flight
    // repairs (`planner`), shared with the simulator.
    let members = &st.members;
    let state = |n: &NodeId| {
        members
            .get(n)
            .map(|m| crate::membership::Membership::state(m, now, cfg))
            .unwrap_or(NodeState::Dead)
    };
    let domains = members.domains();
    let writable = members.candidates(now, cfg, st.catalog.draining(), st.used_spares);
    let repairs = &mut *st.repairs;
    let mut per_target: HashMap<NodeId, usize> = HashMap::new();
    for t in repairs.in_flight.values() {
        *per_target.entry(t.target.clone()).or_default() += 1;
    }
    let mut load = planner::load(st.catalog.files().values());
    // A chunk being moved by rebalancing is neither repaired nor trimmed
    // until the move is journaled (or abandoned).
    let moving = &st.rebalance.in_flight;
    let in_flight = |c: &ChunkId| repairs.in_flight.contains_key(c) || moving.contains_key(c);
    let backed_off = |c: &ChunkId| repairs.retry_at.get(c).is_some_and(|t| *t > now);
    let inputs = planner::Inputs {
        state: &state,
        draining: st.catalog.draining(),
        domains: &domains,
        writable: &writable,
        ha: cfg.ha,
        in_flight: &in_flight,
        backed_off: &backed_off,
        running: repairs.in_flight.len(),
        parallel: cfg.repair_parallel,
        per_target_cap: PER_TARGET,
    };
    let stripes = st
        .catalog
        .files()
        .iter()
        .flat_map(|(name, f)| (0..f.stripes.len()).map(move |i| (name, f, i)));
    let decided = planner::plan(stripes, &inputs, &mut load, &mut per_target);

    let mut deletes: HashMap<NodeId, Vec<ChunkId>> = HashMap::new();
    for t in decided.trims.iter() {
        for n in &t.delete_on {
            deletes.entry(n.clone()).or_default().push(t.chunk);
        }
        plan.records.push(Record::DropCopies {
            chunk: t.chunk,
            nodes: t.drop.clone(),
        });
    }
    plan.deletes = deletes.into_iter().collect();

    for d in &decided.decisions {
        let Some(choice) = &d.choice else { continue };
        let need = &d.need;
        let Some(order) = order_for(members, need, choice, repairs.next_task + 1) else {
            continue;
        };
        let target = choice.target.clone();
        tracing::info!(
            file = %need.file, chunk = %need.chunk, priority = need.priority, %target,
            kind = match order.source { RepairSource::Copy(_) => "copy", RepairSource::Rebuild(_) => "rebuild" },
            "repair scheduled"
        );
        repairs.next_task += 1;
        repairs.in_flight.insert(
            need.chunk,
            Task {
                id: order.task,
                target: target.clone(),
                started: now,
                bytes: need.bytes,
                read: match &order.source {
                    RepairSource::Copy(_) => need.bytes,
                    RepairSource::Rebuild(r) => r.parts.iter().map(|p| p.header.stored_len).sum(),
                },
                scheme: need.entry.scheme,
                replication: need.entry.replication,
                sources: match &order.source {
                    RepairSource::Copy(from) => from
                        .first()
                        .map(|n| vec![(n.id.clone(), need.bytes)])
                        .unwrap_or_default(),
                    RepairSource::Rebuild(r) => r
                        .parts
                        .iter()
                        .filter_map(|p| Some((p.nodes.first()?.id.clone(), p.header.stored_len)))
                        .collect(),
                },
            },
        );
        repairs.incidents.scheduled(need.chunk);
        repairs.traffic_opens();
        if let Some(i) = repairs.incident.as_mut() {
            i.first_repair.get_or_insert(now);
        }
        plan.orders.push((target, order));
    }
    for c in &decided.stuck {
        if !repairs.stuck.contains(c) {
            tracing::warn!(chunk = %c, "repair: no source or no eligible target for this chunk now");
        }
    }
    repairs.waiting_chunks = decided.waiting_chunks;
    repairs.waiting_bytes = decided.waiting_bytes;
    let settled = decided.only_relocations() && repairs.in_flight.is_empty();
    repairs.incidents.stuck(decided.stuck.len());
    repairs.stuck = decided.stuck;
    if settled {
        repairs.incidents.settled();
    }
    if settled && repairs.traffic.open {
        repairs.traffic.open = false;
        let t = &repairs.traffic;
        tracing::info!(
            chunks = t.chunks,
            read_bytes = t.read_bytes,
            rebuilt_bytes = t.rebuilt_bytes,
            "repair: incident over"
        );
    }
    if settled {
        if let Some(i) = repairs.incident.take() {
            let mttr = now.saturating_duration_since(i.died);
            let bytes = repairs.done_bytes - i.done_bytes_at_start;
            let busy = i
                .first_repair
                .map(|t| now.saturating_duration_since(t).as_secs_f64())
                .unwrap_or(0.0);
            repairs.last_rate = if busy > 0.0 {
                (bytes as f64 / busy) as u64
            } else {
                0
            };
            repairs.last_mttr = Some(mttr);
            tracing::info!(
                mttr_s = mttr.as_secs_f64(),
                repaired_bytes = bytes,
                rate_mb_s = repairs.last_rate as f64 / 1e6,
                "repair: every chunk is fully protected again"
            );
        }
    }
    plan
}

fn has_session(st: &Parts, n: &NodeId) -> bool {
    st.members.get(n).is_some_and(|m| m.session.is_some())
}

/// The order a planner decision becomes on the wire: node addresses, the
/// chunk's header, and for a rebuild the read plan's members with theirs.
fn order_for(
    members: &crate::membership::Membership,
    need: &planner::Need,
    choice: &planner::Choice,
    task: u64,
) -> Option<RepairOrder> {
    let f = need.entry;
    let stripe = f.stripes.get(need.stripe)?;
    let chunk = stripe.get(need.slot)?;
    let source = match &choice.source {
        planner::Source::Copy(nodes) => {
            RepairSource::Copy(nodes.iter().map(|n| members.node_addr(n)).collect())
        }
        planner::Source::Rebuild(read) => {
            let k = f.code().k();
            let mut parts = Vec::new();
            for (m, nodes) in read {
                let slot = if *m < k {
                    Slot::Data(*m)
                } else {
                    Slot::Parity(*m - k)
                };
                parts.push(RebuildPart {
                    member: *m as u32,
                    header: stripe.get(slot)?.header.clone(),
                    nodes: nodes.iter().map(|n| members.node_addr(n)).collect(),
                });
            }
            RepairSource::Rebuild(Rebuild {
                scheme: f.scheme,
                data: stripe.data.len() as u32,
                member: need.slot.member(k) as u32,
                parity_len: stripe
                    .data
                    .iter()
                    .map(|c| c.header.raw_len)
                    .max()
                    .unwrap_or(0),
                parts,
            })
        }
    };
    Some(RepairOrder {
        task,
        header: chunk.header.clone(),
        source,
    })
}

/// A node reports the outcome of an order. The order stays in flight until
/// the new copy is journaled, so no scan sees the chunk short meanwhile and
/// orders it twice.
pub async fn done(coord: &Coord, node: &NodeId, task: u64, chunk: ChunkId, error: Option<String>) {
    {
        let mut guard = coord.lock();
        let st = guard.parts();
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
            st.repairs.incidents.failed(chunk);
            st.members.transfer_failed(node, Instant::now());
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
    // The file may have gone between the check above and the record.
    if let Ok(garbage) = &res {
        coord.collect(garbage.clone());
    }
    let mut guard = coord.lock();
    let st = guard.parts();
    let Some(t) = st.repairs.in_flight.remove(&chunk) else {
        return;
    };
    match res {
        Ok(_) => {
            st.members.transfer_ok(node);
            st.repairs.retry_at.remove(&chunk);
            st.repairs.done_chunks += 1;
            st.repairs.done_bytes += t.bytes;
            st.repairs.done_read_bytes += t.read;
            st.repairs.traffic_adds(&t);
            st.repairs
                .incidents
                .repaired(t.scheme, t.replication, &t.sources, node, t.bytes);
            st.traffic.completed(
                protocol::FlowKind::Repair,
                t.sources.clone(),
                node.clone(),
                t.bytes,
                Instant::now(),
            );
            let spare = st.members.get(node).is_some_and(|m| m.spare);
            if spare && st.used_spares.insert(node.clone()) {
                tracing::warn!(%node, "spare took over data: it is a regular node from now on");
            }
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
        let mut guard = coord.lock();
        let st = guard.parts();
        match st.catalog.chunk(&chunk) {
            Some((_, c, _)) if c.nodes.contains(node) => {
                st.repairs.copy_lost(node, chunk);
                Record::DropCopies {
                    chunk,
                    nodes: vec![node.clone()],
                }
            }
            _ => return,
        }
    };
    tracing::warn!(%chunk, %node, "copy reported corrupt; dropping it and scheduling repair");
    if let Err(e) = coord.commit(vec![record]).await {
        tracing::error!(error = %e, "could not journal a corrupt copy");
    }
}
