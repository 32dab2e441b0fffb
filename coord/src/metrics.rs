//! Request metrics through the `metrics` facade: a no-op unless the process
//! installed a recorder (the `web` crate's Prometheus exporter does when
//! `--http` is given), so the coordinator pays nothing without it.

use std::time::Instant;

/// Counts one control-path request and records its latency.
pub fn request(op: &'static str, started: Instant, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("dfs_coord_requests_total", "op" => op, "outcome" => outcome).increment(1);
    metrics::histogram!("dfs_coord_request_duration_seconds", "op" => op)
        .record(started.elapsed().as_secs_f64());
}
