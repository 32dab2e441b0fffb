//! The rebalancing loop: plan (the pure planner of `rebalance`), send
//! moves as repair copy orders, journal new holder and source drop together
//! once the node confirms. A child of `rebalance`, so `state` (which holds
//! the bookkeeping) never imports the loop.

use super::*;
use crate::state::Coord;
use std::sync::Arc;
use tokio::sync::watch;

/// The rebalancing loop: plan, send, until the coordinator stops.
pub async fn run(coord: Arc<Coord>, mut stop: watch::Receiver<bool>) {
    if coord.config().read_only {
        return;
    }
    let period =
        (coord.config().heartbeat / 6).clamp(Duration::from_millis(20), Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        // Only a leader moves anything (a group's followers wait).
        if coord.leading().is_none() {
            continue;
        }
        let orders = tick(&coord, Instant::now());
        for (node, order) in orders {
            coord.send_order(&node, order, |st, chunk| {
                st.rebalance.in_flight.remove(&chunk);
            });
        }
    }
}

/// One round: triggers, bookkeeping, and the orders to send.
fn tick(coord: &Coord, now: Instant) -> Vec<(NodeId, RepairOrder)> {
    let cfg = coord.config();
    let mut guard = coord.lock();
    let st = guard.parts();
    let rb = &mut *st.rebalance;

    // Rate limit: a bucket of up to one second of bytes (at least one
    // chunk, so a chunk larger than the rate still goes, at that rate).
    let rate = cfg.rebalance_rate as f64;
    let burst = rate.max(cfg.chunk_size as f64);
    let dt = rb
        .refilled
        .map(|t| now.saturating_duration_since(t).as_secs_f64())
        .unwrap_or(f64::INFINITY);
    rb.budget = (rb.budget + rate * dt).min(burst);
    rb.refilled = Some(now);
    rb.status.rate_limit_bytes_per_s = cfg.rebalance_rate;
    rb.status.tolerance_pct = (TOLERANCE * 100.0).round() as u32;

    // Moves that will not report back.
    let members = &st.members;
    let stale: Vec<ChunkId> = rb
        .in_flight
        .iter()
        .filter(|(_, t)| {
            now.saturating_duration_since(t.started) > cfg.repair_timeout
                || members.get(&t.mv.to).is_none_or(|m| m.session.is_none())
        })
        .map(|(c, _)| *c)
        .collect();
    for c in stale {
        if let Some(t) = rb.in_flight.remove(&c) {
            tracing::warn!(chunk = %c, target = %t.mv.to, "rebalance move abandoned (timeout or target lost)");
            rb.status.failed += 1;
            rb.retry_at.insert(c, now + RETRY_AFTER);
        }
    }
    rb.retry_at.retain(|_, t| *t > now);

    // Idle, nothing asked: look at the cluster only now and then (a full
    // catalog pass), not every round.
    if rb.running.is_none()
        && !rb.requested
        && rb.joined.is_none()
        && rb.in_flight.is_empty()
        && rb
            .looked
            .is_some_and(|t| now.saturating_duration_since(t) < IDLE_LOOK.max(rb.idle_every))
    {
        return Vec::new();
    }
    rb.looked = Some(now);
    let targets: Vec<Candidate> = members
        .candidates(now, cfg, st.catalog.draining(), st.used_spares)
        .into_iter()
        .filter(|c| !c.spare)
        .collect();
    // Nodes that take data: in session and alive, not draining, not a
    // spare still standing by (a full node too: it has most to give).
    let takes_data = members.iter().filter(|m| {
        m.session.is_some()
            && members.is_alive(&m.id, now, cfg)
            && !st.catalog.draining().contains(&m.id)
            && (!m.spare || st.used_spares.contains(&m.id))
    });
    let scan = Instant::now();
    let mut usage = usage(
        st.catalog.files().values(),
        takes_data.map(|m| m.id.clone()),
    );
    rb.idle_every = scan.elapsed() * 20;
    let mut per_node: HashMap<NodeId, usize> = HashMap::new();
    for t in rb.in_flight.values() {
        if let Some(u) = usage.get_mut(&t.mv.from) {
            *u = u.saturating_sub(t.mv.bytes);
        }
        if let Some(u) = usage.get_mut(&t.mv.to) {
            *u += t.mv.bytes;
        }
        *per_node.entry(t.mv.from.clone()).or_default() += 1;
        *per_node.entry(t.mv.to.clone()).or_default() += 1;
    }
    rb.status.mean_bytes = mean(&usage) as u64;
    rb.status.usage = usage
        .iter()
        .map(|(n, &b)| NodeUsage {
            node: n.clone(),
            bytes: b,
        })
        .collect();
    let bal = balanced(&usage);

    if rb.running.is_none() {
        let trigger = if std::mem::take(&mut rb.requested) {
            Some("operator".to_string())
        } else if !cfg.auto_rebalance || bal {
            rb.joined = None;
            rb.imbalanced_since = None;
            None
        } else if let Some(n) = rb
            .joined
            .take()
            .filter(|n| targets.iter().any(|c| c.node.id == *n))
        {
            Some(format!("node {n} joined"))
        } else if now.saturating_duration_since(*rb.imbalanced_since.get_or_insert(now)) >= PERSIST
        {
            Some("imbalance".to_string())
        } else {
            None
        };
        let Some(trigger) = trigger else {
            return Vec::new();
        };
        let planned = excess(&usage);
        // Mean size of a copy on these nodes, to turn bytes into copies.
        let copies: u64 = st
            .catalog
            .files()
            .values()
            .flat_map(|f| f.chunks())
            .map(|(c, _)| c.nodes.iter().filter(|n| usage.contains_key(*n)).count() as u64)
            .sum();
        let stored: u64 = usage.values().sum();
        let avg = stored.checked_div(copies).unwrap_or(1).max(1);
        tracing::info!(
            %trigger,
            deviation_pct = deviation(&usage) * 100.0,
            bytes = planned,
            "rebalance: starting"
        );
        rb.status = RebalanceStatus {
            state: RebalanceState::Running,
            trigger,
            planned_bytes: planned,
            planned_chunks: planned.div_ceil(avg),
            last_run_ms: rb.status.last_run_ms,
            ..std::mem::take(&mut rb.status)
        };
        rb.status.moved_chunks = 0;
        rb.status.moved_bytes = 0;
        rb.status.failed = 0;
        rb.status.stuck = false;
        rb.running = Some(now);
    }

    // Repairs first: nothing new moves while a chunk is short.
    if !st.repairs.in_flight.is_empty() || st.repairs.waiting_chunks > 0 {
        rb.status.state = RebalanceState::Paused;
        return Vec::new();
    }
    rb.status.state = RebalanceState::Running;
    if bal && rb.in_flight.is_empty() {
        rb.finish(now, false);
        return Vec::new();
    }
    let room = MAX_IN_FLIGHT.saturating_sub(rb.in_flight.len());
    if room == 0 || rb.budget <= 0.0 {
        return Vec::new();
    }
    let domains = members.domains();
    let alive = |n: &NodeId| members.is_alive(n, now, cfg);
    let repairs = &st.repairs;
    let (in_flight, retry_at) = (&rb.in_flight, &rb.retry_at);
    let busy = |c: &ChunkId| {
        repairs.in_flight.contains_key(c) || in_flight.contains_key(c) || retry_at.contains_key(c)
    };
    let inputs = Inputs {
        targets: &targets,
        domains: &domains,
        ha: cfg.ha,
        alive: &alive,
        busy: &busy,
    };
    let moves = plan(
        st.catalog.files().iter(),
        &inputs,
        &mut usage,
        &mut per_node,
        room,
    );
    if moves.is_empty() {
        // Nothing in flight and nothing waiting out a failure: no move
        // is left that keeps every rule.
        if rb.in_flight.is_empty() && rb.retry_at.is_empty() {
            rb.finish(now, !bal);
        }
        return Vec::new();
    }
    let mut orders = Vec::new();
    for mv in moves {
        if rb.budget <= 0.0 {
            break;
        }
        let Some((_, c, _)) = st.catalog.chunk(&mv.chunk) else {
            continue;
        };
        // The source first; other live holders if it fails mid-move.
        let mut sources = vec![members.node_addr(&mv.from)];
        sources.extend(
            c.nodes
                .iter()
                .filter(|n| **n != mv.from && alive(n))
                .map(|n| members.node_addr(n)),
        );
        rb.next_task += 1;
        let task = TASK_BIT | rb.next_task;
        tracing::info!(file = %mv.file, chunk = %mv.chunk, from = %mv.from, to = %mv.to, bytes = mv.bytes, "rebalance: moving a copy");
        orders.push((
            mv.to.clone(),
            RepairOrder {
                task,
                header: c.header.clone(),
                source: RepairSource::Copy(sources),
            },
        ));
        rb.budget -= mv.bytes as f64;
        rb.in_flight.insert(
            mv.chunk,
            MoveTask {
                task,
                mv,
                started: now,
            },
        );
    }
    orders
}

/// A node reports a copy made on a move's order. Returns false if the
/// report is not about a move (it is a repair's). The new holder is
/// journaled only now, checked once more against the catalog as it is
/// (another change may have made the move illegal meanwhile), together
/// with the source's drop; the source's copy is deleted after the delete
/// grace.
pub async fn done(
    coord: &Coord,
    node: &NodeId,
    task: u64,
    chunk: ChunkId,
    error: &Option<String>,
) -> bool {
    let mv = {
        let mut guard = coord.lock();
        let st = guard.parts();
        match st.rebalance.in_flight.get(&chunk) {
            Some(t) if t.task == task && &t.mv.to == node => {}
            _ => return task & TASK_BIT != 0,
        }
        if let Some(e) = error {
            st.rebalance.in_flight.remove(&chunk);
            st.rebalance.status.failed += 1;
            st.rebalance
                .retry_at
                .insert(chunk, Instant::now() + RETRY_AFTER);
            tracing::warn!(%chunk, %node, error = %e, "rebalance move failed; will re-plan");
            return true;
        }
        let Some(t) = st.rebalance.in_flight.get(&chunk) else {
            return true;
        };
        let mv = t.mv.clone();
        let now = Instant::now();
        let cfg = coord.config();
        let members = &st.members;
        let alive = |n: &NodeId| members.not_dead(n, now, cfg);
        let ok = match st.catalog.locate(&chunk) {
            Some(r) => st.catalog.files().get(&r.file).is_some_and(|f| {
                legal(
                    f,
                    r.stripe(),
                    r.slot(),
                    &mv.from,
                    &mv.to,
                    &members.domains(),
                    cfg.ha,
                    &alive,
                )
            }),
            None => false,
        };
        if !ok {
            // The file went away or the stripe changed under the move: the
            // new copy is not needed. It is not in the catalog, so the
            // delayed delete removes it.
            st.rebalance.in_flight.remove(&chunk);
            drop(guard);
            tracing::info!(%chunk, %node, "rebalance move no longer fits; dropping the new copy");
            coord.collect(vec![(chunk, vec![node.clone()])]);
            return true;
        }
        mv
    };
    let res = coord
        .commit(vec![
            Record::AddCopy {
                chunk,
                node: node.clone(),
            },
            Record::DropCopies {
                chunk,
                nodes: vec![mv.from.clone()],
            },
        ])
        .await;
    match res {
        Ok(garbage) => {
            coord.collect(garbage);
            coord.collect(vec![(chunk, vec![mv.from.clone()])]);
            let mut guard = coord.lock();
            let st = guard.parts();
            st.rebalance.in_flight.remove(&chunk);
            st.rebalance.status.moved_chunks += 1;
            st.rebalance.status.moved_bytes += mv.bytes;
            st.traffic.completed(
                protocol::FlowKind::Rebalance,
                vec![(mv.from.clone(), mv.bytes)],
                mv.to.clone(),
                mv.bytes,
                Instant::now(),
            );
            tracing::info!(%chunk, from = %mv.from, to = %mv.to, "rebalance: copy moved");
        }
        Err(e) => {
            let mut guard = coord.lock();
            let st = guard.parts();
            st.rebalance.in_flight.remove(&chunk);
            st.rebalance.status.failed += 1;
            tracing::error!(error = %e, "could not journal a moved copy");
        }
    }
    true
}
