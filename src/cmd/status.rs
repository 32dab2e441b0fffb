//! `dfs-sim status`: the cluster at a glance.

use super::{print_json, ClientArgs};
use crate::format::bytes;
use anyhow::Result;
use client::report::{state_str as state, StatusReport};
use protocol::NodeState;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `R=2+xor:4`, `rs:6+3` (one copy of data is the norm for codes).
fn label(u: &protocol::SchemeUsage) -> String {
    if u.replication == 1 {
        u.scheme.to_string()
    } else {
        format!("R={}+{}", u.replication, u.scheme)
    }
}

fn overhead(u: &protocol::SchemeUsage) -> f64 {
    if u.logical_bytes == 0 {
        0.0
    } else {
        u.stored_bytes as f64 / u.logical_bytes as f64
    }
}

pub async fn run(a: Args) -> Result<()> {
    let s = a.client.connect().await?.status().await?;
    if a.json {
        print_json(&StatusReport::from(&s));
        return Ok(());
    }
    outln!(
        "cluster {}{}: {} replica(s) + {}{}, chunk size {}",
        s.cluster,
        if s.read_only { " (READ-ONLY)" } else { "" },
        s.replication,
        s.scheme,
        if s.ha {
            ", HA over failure domains"
        } else {
            ""
        },
        bytes(s.chunk_size)
    );
    let mut nodes: Vec<&protocol::NodeStatus> = s.nodes.iter().collect();
    nodes.sort_by(|a, b| (&a.domain, &a.id).cmp(&(&b.domain, &b.id)));
    outln!(
        "{:<12} {:<10} {:<22} {:<8} {:>9} {:>7} {:>10} {:>10}",
        "DOMAIN",
        "NODE",
        "ADDR",
        "STATE",
        "LAST-HB",
        "CHUNKS",
        "STORED",
        "FREE"
    );
    for n in nodes {
        let st = match (n.state, n.draining, n.catalog_chunks) {
            (NodeState::Dead, _, _) if n.stats.failed.is_some() => "failed",
            (NodeState::Dead, _, _) => "dead",
            (_, true, 0) => "drained",
            (_, true, _) => "draining",
            (_, false, _) if n.spare => "spare",
            (s, false, _) => state(s),
        };
        outln!(
            "{:<12} {:<10} {:<22} {:<8} {:>9} {:>7} {:>10} {:>10}{}",
            n.domain,
            n.id.as_str(),
            n.addr,
            st,
            n.last_heartbeat_ms_ago
                .map(|ms| format!("{:.1}s ago", ms as f64 / 1000.0))
                .unwrap_or_else(|| "never".into()),
            n.catalog_chunks,
            bytes(n.stats.bytes),
            n.stats.free_bytes.map(bytes).unwrap_or_else(|| "?".into()),
            if n.was_spare {
                "  (was a spare; took over data)"
            } else {
                ""
            },
        );
    }
    let spares = s.nodes.iter().filter(|n| n.spare).count();
    let domains: std::collections::BTreeSet<&str> =
        s.nodes.iter().map(|n| n.domain.as_str()).collect();
    outln!(
        "{} node(s) in {} domain(s), {} spare(s) standing by",
        s.nodes.len(),
        domains.len(),
        spares
    );
    for u in &s.schemes {
        outln!(
            "scheme {:<14} {:>5} file(s): {} logical, {} stored, overhead {:.2}x",
            label(u),
            u.files,
            bytes(u.logical_bytes),
            bytes(u.stored_bytes),
            overhead(u)
        );
    }
    let (orphans, quarantined) = s.nodes.iter().fold((0, 0), |(o, q), n| {
        (o + n.stats.orphans, q + n.stats.quarantined)
    });
    if orphans + quarantined > 0 {
        outln!(
            "set aside on nodes: {orphans} orphan copies (unknown to the catalog), {quarantined} corrupt copies in quarantine; deleted after the grace period"
        );
    }
    for n in &s.nodes {
        if let Some(why) = &n.stats.failed {
            outln!(
                "FAILED: node {} is running but its store failed ({why}); it takes no writes and its copies are re-protected elsewhere. Fix or replace its data directory and restart it",
                n.id.as_str()
            );
        }
    }
    if !s.catalog_behind.is_empty() {
        outln!(
            "WARNING: nodes {} have seen a newer catalog than this coordinator holds (stale --data?); nothing is deleted on them",
            s.catalog_behind.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(",")
        );
    }
    outln!(
        "files: {}, {} in {} chunks (parity included); uploads in progress: {}",
        s.files,
        bytes(s.bytes),
        s.chunks,
        s.pending_uploads
    );
    let r = &s.repair;
    outln!(
        "repair: {} chunk(s) ({}) waiting, {} ({}) in flight, {} done ({}), {} failed; rate {:.0} MB/s; parallel {}",
        r.waiting_chunks,
        bytes(r.waiting_bytes),
        r.in_flight_chunks,
        bytes(r.in_flight_bytes),
        r.done_chunks,
        bytes(r.done_bytes),
        r.failed,
        r.rate_bytes_per_s as f64 / 1e6,
        r.parallel
    );
    if let Some(i) = &r.incident {
        let per = |read: u64, built: u64| {
            if built == 0 {
                0.0
            } else {
                read as f64 / built as f64
            }
        };
        let schemes: Vec<String> = i
            .schemes
            .iter()
            .map(|t| {
                let label = label(&protocol::SchemeUsage {
                    scheme: t.scheme,
                    replication: t.replication,
                    files: 0,
                    logical_bytes: 0,
                    stored_bytes: 0,
                });
                format!("{label} {:.2}", per(t.read_bytes, t.rebuilt_bytes))
            })
            .collect();
        outln!(
            "repair traffic, {} incident: {} read for {} rebuilt in {} chunk(s) ({:.2} bytes read per byte{}{})",
            if i.open { "current" } else { "last" },
            bytes(i.read_bytes),
            bytes(i.rebuilt_bytes),
            i.chunks,
            per(i.read_bytes, i.rebuilt_bytes),
            if schemes.is_empty() { "" } else { "; " },
            schemes.join(", ")
        );
    }
    if r.done_bytes > 0 {
        outln!(
            "repair traffic since start: {} read for {} rebuilt ({:.2} bytes read per byte)",
            bytes(r.read_bytes),
            bytes(r.done_bytes),
            r.read_bytes as f64 / r.done_bytes as f64
        );
    }
    for t in &s.traffic {
        outln!(
            "traffic {:<10} repair: reading {} ({} in flight), writing {} ({} in flight); rebalance: reading {} ({}), writing {} ({}); last {} s: read {}/s, written {}/s",
            t.node.as_str(),
            bytes(t.repair_read_bytes),
            t.repair_reads,
            bytes(t.repair_write_bytes),
            t.repair_writes,
            bytes(t.rebalance_read_bytes),
            t.rebalance_reads,
            bytes(t.rebalance_write_bytes),
            t.rebalance_writes,
            protocol::dashboard::TRAFFIC_WINDOW_MS / 1000,
            bytes(t.read_rate_bytes_per_s),
            bytes(t.write_rate_bytes_per_s),
        );
    }
    let b = client::report::RebalanceReport::from(&s.rebalance);
    let usage: Vec<String> = b
        .usage
        .iter()
        .map(|u| format!("{} {:+.0}%", u.node, u.vs_mean_pct))
        .collect();
    let run = format!(
        "{} of ~{} copies ({} of ~{}) moved, {} in flight",
        b.moved_chunks,
        b.planned_chunks.max(b.moved_chunks),
        bytes(b.moved_bytes),
        bytes(b.planned_bytes.max(b.moved_bytes)),
        b.in_flight_chunks
    );
    let state = match s.rebalance.state {
        protocol::RebalanceState::Running => format!("running ({}): {run}", b.trigger),
        protocol::RebalanceState::Paused => {
            format!("paused while repairs run ({}): {run}", b.trigger)
        }
        protocol::RebalanceState::Idle if b.stuck => format!(
            "idle; the last run ({}) stopped short: no move keeps every placement rule",
            b.trigger
        ),
        protocol::RebalanceState::Idle if b.deviation_pct <= f64::from(b.tolerance_pct) => {
            "balanced".to_string()
        }
        protocol::RebalanceState::Idle => "idle".to_string(),
    };
    outln!(
        "rebalance: {state}; furthest node {:.0}% from the mean of {} (tolerance {}%, rate limit {}/s)",
        b.deviation_pct,
        bytes(b.mean_bytes),
        b.tolerance_pct,
        bytes(b.rate_limit_bytes_per_s)
    );
    if !usage.is_empty() {
        outln!("usage vs mean: {}", usage.join(", "));
    }
    match (r.incident_open_ms, r.last_mttr_ms) {
        (Some(ms), _) => outln!(
            "repair: node lost {:.1} s ago, re-protection in progress",
            ms as f64 / 1000.0
        ),
        (None, Some(ms)) => outln!(
            "repair: last MTTR {:.1} s (node death to full protection)",
            ms as f64 / 1000.0
        ),
        (None, None) => {}
    }
    if s.under_replicated.is_empty() {
        outln!("under-protected chunks: none");
    } else {
        outln!("under-protected chunks: {}", s.under_replicated_total);
        for u in s.under_replicated.iter().take(20) {
            outln!(
                "  {} {} of {}: {}/{} live",
                if u.parity { "parity" } else { "chunk " },
                &u.chunk.to_hex()[..12],
                u.file,
                u.live_copies,
                u.target
            );
        }
        if s.under_replicated_total > 20 {
            outln!("  ... and {} more", s.under_replicated_total - 20);
        }
    }
    Ok(())
}
