//! Background scrubbing: every chunk is re-read and fully verified (CRC,
//! decompression, SHA-256) at a bounded rate, so silent corruption is found
//! before a reader needs the copy. A corrupt copy is quarantined and
//! reported; the coordinator then repairs it from the other copies or parity.

use crate::ctx::Ctx;
use crate::error::Error;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub(crate) async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let interval = ctx.config.scrub_interval.max(Duration::from_secs(1));
    loop {
        let manual = tokio::select! {
            _ = tokio::time::sleep(interval), if ctx.config.scrub_rate > 0 => false,
            _ = ctx.scrub.requested() => true,
            _ = stop.changed() => return,
        };
        let rate = if manual {
            None
        } else {
            Some(ctx.config.scrub_rate)
        };
        tokio::select! {
            _ = pass(&ctx, rate) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One pass over every chunk present when it starts.
async fn pass(ctx: &Ctx, rate: Option<u64>) {
    ctx.scrub.running.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let ids = ctx.store.inventory();
    let (mut bytes, mut bad) = (0u64, 0u64);
    tracing::info!(chunks = ids.len(), "scrub pass started");
    for id in &ids {
        match ctx.store.verify(id).await {
            Ok(h) => bytes += h.stored_len,
            Err(Error::Corrupt { reason, .. }) => {
                bad += 1;
                ctx.corrupt(id, &reason).await;
            }
            // Deleted or set aside since the pass started: nothing to
            // check. Gone behind the node's back: missing is bad.
            Err(Error::NoSuchChunk(_)) => {
                if !ctx.store.tombstoned(id) && !ctx.store.is_set_aside(id) {
                    bad += 1;
                    ctx.missing(id);
                }
            }
            Err(e) => tracing::warn!(chunk = %id, error = %e, "scrub could not read chunk"),
        }
        if let Some(rate) = rate.filter(|r| *r > 0) {
            // Sleep until the average rate is back under the bound.
            let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    ctx.scrub.passes.fetch_add(1, Ordering::Relaxed);
    ctx.scrub.running.store(false, Ordering::Relaxed);
    tracing::info!(
        chunks = ids.len(),
        bytes,
        corrupt = bad,
        secs = start.elapsed().as_secs_f64(),
        "scrub pass finished"
    );
}
