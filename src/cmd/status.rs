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

pub async fn run(a: Args) -> Result<()> {
    let s = a.client.connect().await?.status().await?;
    if a.json {
        print_json(&StatusReport::from(&s));
        return Ok(());
    }
    outln!(
        "cluster {}{}: {} replica(s){}, stripe {}, chunk size {}",
        s.cluster,
        if s.read_only { " (READ-ONLY)" } else { "" },
        s.replication,
        if s.parity { " + xor" } else { "" },
        s.stripe,
        bytes(s.chunk_size)
    );
    outln!(
        "{:<10} {:<22} {:<8} {:>9} {:>7} {:>10} {:>10}",
        "NODE",
        "ADDR",
        "STATE",
        "LAST-HB",
        "CHUNKS",
        "STORED",
        "FREE"
    );
    for n in &s.nodes {
        let st = match (n.state, n.draining, n.catalog_chunks) {
            (NodeState::Dead, _, _) => "dead",
            (_, true, 0) => "drained",
            (_, true, _) => "draining",
            (s, false, _) => state(s),
        };
        outln!(
            "{:<10} {:<22} {:<8} {:>9} {:>7} {:>10} {:>10}",
            n.id.as_str(),
            n.addr,
            st,
            n.last_heartbeat_ms_ago
                .map(|ms| format!("{:.1}s ago", ms as f64 / 1000.0))
                .unwrap_or_else(|| "never".into()),
            n.catalog_chunks,
            bytes(n.stats.bytes),
            n.stats.free_bytes.map(bytes).unwrap_or_else(|| "?".into()),
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
