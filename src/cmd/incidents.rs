//! `dfs-sim incidents [ID] [--json]`: the incident records the coordinator
//! keeps beside its catalog, newest first; with an id, that one in full.

use super::{print_json, ClientArgs};
use crate::format::bytes;
use anyhow::{bail, Result};
use client::report::IncidentDoc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show only this incident, in full.
    pub id: Option<u64>,
    /// Machine-readable output (the documents `GET /api/incidents` serves).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn when(ms: u64) -> String {
    // Seconds since the epoch, UTC; no calendar crate for one column.
    let s = ms / 1000;
    let (h, m, sec) = ((s / 3600) % 24, (s / 60) % 60, s % 60);
    format!("{h:02}:{m:02}:{sec:02}.{:03}Z", ms % 1000)
}

pub async fn run(a: Args) -> Result<()> {
    let list = a.client.connect().await?.incidents(a.id).await?;
    let docs: Vec<IncidentDoc> = list.iter().map(IncidentDoc::from).collect();
    if let Some(id) = a.id {
        let Some(d) = docs.first() else {
            bail!("no incident {id}; `dfs-sim incidents` lists those kept");
        };
        if a.json {
            print_json(d);
        } else {
            detail(d);
        }
        return Ok(());
    }
    if a.json {
        print_json(&docs);
        return Ok(());
    }
    if docs.is_empty() {
        outln!("no incidents recorded");
        return Ok(());
    }
    outln!(
        "{:>4} {:<14} {:<8} {:>9} {:>10} {:>7} {:>10} {:>10} {:>6} {:>8}  WHAT",
        "ID",
        "STARTED",
        "STATE",
        "DETECTED",
        "MTTR",
        "CHUNKS",
        "REBUILT",
        "READ",
        "R/B",
        "FAILURES"
    );
    for d in &docs {
        outln!(
            "{:>4} {:<14} {:<8} {:>9} {:>10} {:>7} {:>10} {:>10} {:>6.2} {:>8}  {}",
            d.id,
            when(d.started_ms),
            if d.open { "open" } else { "closed" },
            secs(d.detection_ms),
            d.mttr_ms.map(secs).unwrap_or_else(|| "-".into()),
            d.chunks,
            bytes(d.rebuilt_bytes),
            bytes(d.read_bytes),
            d.read_per_rebuilt,
            d.failures,
            d.summary
        );
    }
    Ok(())
}

fn detail(d: &IncidentDoc) {
    outln!(
        "incident {}: {} ({})",
        d.id,
        d.summary,
        if d.open { "open" } else { "closed" }
    );
    outln!("started   {}", when(d.started_ms));
    outln!(
        "detected  {} (+{})",
        when(d.detected_ms),
        secs(d.detection_ms)
    );
    match (d.ended_ms, d.mttr_ms) {
        (Some(e), Some(m)) => outln!("protected {} (MTTR {})", when(e), secs(m)),
        _ => outln!("protected not yet"),
    }
    outln!("failed nodes: {}", d.failed_nodes.join(", "));
    outln!(
        "rebuilt {} in {} chunk(s), read {} ({:.2} bytes read per byte rebuilt); {} failure(s), {} retr(ies), {} chunk(s) stuck at some point",
        bytes(d.rebuilt_bytes),
        d.chunks,
        bytes(d.read_bytes),
        d.read_per_rebuilt,
        d.failures,
        d.retries,
        d.stuck_chunks
    );
    for s in &d.schemes {
        outln!(
            "  scheme {} R={}: {} chunk(s), {} rebuilt, {} read ({:.2})",
            s.scheme,
            s.replication,
            s.chunks,
            bytes(s.rebuilt_bytes),
            bytes(s.read_bytes),
            s.read_per_rebuilt
        );
    }
    let list = |v: &[client::report::IncidentNodeDoc]| {
        v.iter()
            .map(|n| format!("{} {} ({})", n.node, bytes(n.bytes), n.repairs))
            .collect::<Vec<_>>()
            .join(", ")
    };
    outln!("read from:   {}", list(&d.sources));
    outln!("written to:  {}", list(&d.targets));
}
