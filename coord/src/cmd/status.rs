//! `Status`: nodes, liveness, usage and under-protected chunks.

use crate::membership::Membership;
use crate::placement;
use crate::state::Coord;
use crate::traffic::InFlight;
use protocol::FlowKind;
use protocol::{ClusterStatus, NodeStatus, Scheme, SchemeUsage, UnderProtected};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Under-protected chunks listed in full; beyond that only counted, so the
/// answer stays small whatever the state of the cluster.
const MAX_LISTED: usize = 1000;

pub fn status(coord: &Coord) -> ClusterStatus {
    let cfg = coord.config();
    let mut guard = coord.lock();
    let st = guard.parts();
    let now = Instant::now();
    let mut per_node: HashMap<&protocol::NodeId, u64> = HashMap::new();
    let mut under = Vec::new();
    let mut under_total = 0u64;
    let (mut bytes, mut chunks) = (0, 0);
    let mut usage: BTreeMap<(String, u32), SchemeUsage> = BTreeMap::new();
    for (name, f) in st.catalog.files() {
        bytes += f.size;
        let u = usage
            .entry((f.scheme.to_string(), f.replication))
            .or_insert_with(|| SchemeUsage {
                scheme: f.scheme,
                replication: f.replication,
                files: 0,
                logical_bytes: 0,
                stored_bytes: 0,
            });
        u.files += 1;
        u.logical_bytes += f.size;
        u.stored_bytes += f
            .chunks()
            .map(|(c, parity)| c.header.raw_len * u64::from(f.target(parity)))
            .sum::<u64>();
        for (c, parity) in f.chunks() {
            chunks += 1;
            let mut live = 0;
            for n in &c.nodes {
                *per_node.entry(n).or_default() += 1;
                if st.members.not_dead(n, now, cfg) {
                    live += 1;
                }
            }
            let target = f.target(parity);
            if live < target {
                under_total += 1;
                if under.len() >= MAX_LISTED {
                    continue;
                }
                under.push(UnderProtected {
                    file: name.clone(),
                    chunk: c.header.id,
                    parity,
                    live_copies: live,
                    target,
                });
            }
        }
    }
    let nodes: Vec<NodeStatus> = st
        .members
        .iter()
        .map(|m| NodeStatus {
            id: m.id.clone(),
            addr: m.addr.clone(),
            state: Membership::state(m, now, cfg),
            last_heartbeat_ms_ago: m
                .last_heartbeat
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            catalog_chunks: per_node.get(&m.id).copied().unwrap_or(0),
            stats: m.stats.clone(),
            draining: st.catalog.draining().contains(&m.id),
            domain: m.domain.clone(),
            spare: m.spare && !st.used_spares.contains(&m.id),
            was_spare: m.spare && st.used_spares.contains(&m.id),
        })
        .collect();
    let live = nodes
        .iter()
        .filter(|n| n.state == protocol::NodeState::Alive && !n.spare)
        .count();
    let in_flight = st
        .repairs
        .in_flight
        .values()
        .map(|t| InFlight {
            kind: FlowKind::Repair,
            sources: t.sources.iter().map(|(n, b)| (n, *b)).collect(),
            target: &t.target,
            bytes: t.bytes,
        })
        .chain(st.rebalance.in_flight.values().map(|t| InFlight {
            kind: FlowKind::Rebalance,
            sources: vec![(&t.mv.from, t.mv.bytes)],
            target: &t.mv.to,
            bytes: t.mv.bytes,
        }));
    let (traffic, flows) = st.traffic.report(in_flight, now);
    let scheme: Scheme = placement::effective_scheme(cfg.scheme, cfg.stripe, cfg.replication, live);
    ClusterStatus {
        cluster: coord.cluster().to_string(),
        read_only: cfg.read_only,
        catalog_behind: st
            .members
            .iter()
            .filter(|m| m.behind)
            .map(|m| m.id.clone())
            .collect(),
        files: st.catalog.files().len() as u64,
        bytes,
        chunks,
        replication: cfg.replication,
        scheme,
        ha: cfg.ha,
        schemes: usage.into_values().collect(),
        chunk_size: cfg.chunk_size,
        nodes,
        under_replicated: under,
        under_replicated_total: under_total,
        pending_uploads: st.uploads.len() as u64,
        repair: st.repairs.status(cfg.repair_parallel, now),
        rebalance: st.rebalance.status(),
        traffic,
        flows,
    }
}

/// Chunks (parity blocks included) counted by the health of their stripe:
/// healthy, degraded, at-risk, lost, in that order. For the metrics
/// exporter; the same classification `fsck` uses.
pub fn chunks_by_health(coord: &Coord) -> [u64; 4] {
    use protocol::health::{stripe_health, Health, StripeCopies};
    let cfg = coord.config();
    let mut guard = coord.lock();
    let st = guard.parts();
    let now = Instant::now();
    let mut out = [0u64; 4];
    // Codes are built once per scheme in use, not once per file.
    let mut codes: Vec<(protocol::Scheme, codes::Code)> = Vec::new();
    for f in st.catalog.files().values() {
        if !codes.iter().any(|(s, _)| *s == f.scheme) {
            match codes::Code::new(f.scheme) {
                Ok(c) => codes.push((f.scheme, c)),
                Err(_) => continue,
            }
        }
        let Some((_, code)) = codes.iter().find(|(s, _)| *s == f.scheme) else {
            continue;
        };
        for s in &f.stripes {
            let count = |c: &crate::catalog::ChunkEntry| {
                c.nodes
                    .iter()
                    .filter(|n| st.members.not_dead(n, now, cfg))
                    .count() as u32
            };
            let copies = StripeCopies {
                data: s.data.iter().map(count).collect(),
                parity: s.parity.iter().map(count).collect(),
            };
            let i = match stripe_health(code, &copies, f.replication) {
                Health::Healthy => 0,
                Health::Degraded => 1,
                Health::AtRisk => 2,
                Health::Lost => 3,
            };
            out[i] += (s.data.len() + s.parity.len()) as u64;
        }
    }
    out
}
