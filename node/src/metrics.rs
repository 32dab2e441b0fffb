//! Operation metrics through the `metrics` facade: a no-op unless the
//! process installed a recorder (`node --http` installs the Prometheus one),
//! so a node without `--http` pays nothing.

use std::time::Instant;

/// Counts one operation (`put`, `get`, `preview`, `repair`), records its
/// latency, and adds the chunk bytes it moved in or out.
pub fn op(op: &'static str, started: Instant, ok: bool, bytes_in: u64, bytes_out: u64) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("dfs_node_requests_total", "op" => op, "outcome" => outcome).increment(1);
    metrics::histogram!("dfs_node_request_duration_seconds", "op" => op)
        .record(started.elapsed().as_secs_f64());
    if bytes_in > 0 {
        metrics::counter!("dfs_node_received_bytes_total", "op" => op).increment(bytes_in);
    }
    if bytes_out > 0 {
        metrics::counter!("dfs_node_sent_bytes_total", "op" => op).increment(bytes_out);
    }
}

/// This node's own usage, refreshed with every heartbeat.
pub fn local(s: &protocol::NodeStats) {
    metrics::gauge!("dfs_local_chunks").set(s.chunks as f64);
    metrics::gauge!("dfs_local_stored_bytes").set(s.bytes as f64);
    if let Some(free) = s.free_bytes {
        metrics::gauge!("dfs_local_free_bytes").set(free as f64);
    }
}
