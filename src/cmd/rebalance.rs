//! `dfs-sim rebalance [--no-wait]`: move copies until every node's usage is
//! within 10% of the mean, showing progress.

use super::ClientArgs;
use crate::format::bytes;
use anyhow::Result;
use protocol::{RebalanceState, RebalanceStatus};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Start it and return; `dfs-sim status` shows progress.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Largest distance from the mean, in percent of it.
pub fn deviation_pct(s: &RebalanceStatus) -> f64 {
    if s.mean_bytes == 0 || s.usage.len() < 2 {
        return 0.0;
    }
    let m = s.mean_bytes as f64;
    s.usage
        .iter()
        .map(|u| (u.bytes as f64 - m).abs() / m * 100.0)
        .fold(0.0, f64::max)
}

fn progress(s: &RebalanceStatus) -> String {
    format!(
        "{} of ~{} copies moved ({} of ~{}), {} in flight; furthest node {:.0}% from the mean of {}",
        s.moved_chunks,
        s.planned_chunks.max(s.moved_chunks),
        bytes(s.moved_bytes),
        bytes(s.planned_bytes.max(s.moved_bytes)),
        s.in_flight_chunks,
        deviation_pct(s),
        bytes(s.mean_bytes)
    )
}

pub async fn run(a: Args) -> Result<()> {
    let mut coord = a.client.connect().await?;
    let s = coord.rebalance(true).await?;
    if a.no_wait {
        outln!(
            "rebalancing started (rate limit {}/s); `dfs-sim status` shows progress",
            bytes(s.rate_limit_bytes_per_s)
        );
        return Ok(());
    }
    let mut last = String::new();
    loop {
        let s = coord.rebalance(false).await?;
        if s.state == RebalanceState::Idle {
            if s.stuck {
                outln!(
                    "rebalance stopped: {} copies moved ({}); furthest node still {:.0}% from the mean, and no move left keeps every placement rule",
                    s.moved_chunks,
                    bytes(s.moved_bytes),
                    deviation_pct(&s)
                );
            } else {
                outln!(
                    "balanced: every node within {}% of the mean of {} ({} copies, {} moved{})",
                    s.tolerance_pct,
                    bytes(s.mean_bytes),
                    s.moved_chunks,
                    bytes(s.moved_bytes),
                    s.last_run_ms
                        .map(|ms| format!(" in {:.1} s", ms as f64 / 1000.0))
                        .unwrap_or_default()
                );
            }
            return Ok(());
        }
        let line = match s.state {
            RebalanceState::Paused => format!("paused while repairs run; {}", progress(&s)),
            _ => progress(&s),
        };
        if line != last {
            outln!("{line}");
            last = line;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
