//! The Prometheus exporter: one process-wide recorder behind the `metrics`
//! facade (which `coord` and `node` feed a line per operation), plus the
//! coordinator's cluster gauges, computed from the same status the API
//! serves; at each scrape for a small catalog, at a bounded rate (in the
//! background) for a catalog of millions, where they walk every file.

use crate::error::{Error, Result};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Latency buckets in seconds: from a cached lookup to a 64 MiB chunk on a
/// slow disk.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder once per process and returns its handle.
pub fn install() -> Result<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
        .map_err(|e| Error::Recorder(e.to_string()))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| Error::Recorder(e.to_string()))?;
    describe();
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "dfs_coord_requests_total",
        "Control-path requests served by the coordinator"
    );
    describe_histogram!(
        "dfs_coord_request_duration_seconds",
        Unit::Seconds,
        "Latency of control-path requests"
    );
    describe_counter!(
        "dfs_node_requests_total",
        "Data-path operations served by a node"
    );
    describe_histogram!(
        "dfs_node_request_duration_seconds",
        Unit::Seconds,
        "Latency of data-path operations"
    );
    describe_counter!(
        "dfs_node_received_bytes_total",
        Unit::Bytes,
        "Chunk bytes stored by a node"
    );
    describe_counter!(
        "dfs_node_sent_bytes_total",
        Unit::Bytes,
        "Chunk bytes served by a node"
    );
    describe_gauge!("dfs_node_up", "1 when the node is alive");
    describe_gauge!("dfs_node_state", "1 for the node's current state");
    describe_gauge!(
        "dfs_node_stored_bytes",
        Unit::Bytes,
        "Stored bytes a node reported"
    );
    describe_gauge!(
        "dfs_node_free_bytes",
        Unit::Bytes,
        "Free bytes on a node's file system"
    );
    describe_gauge!("dfs_node_chunks", "Chunks the catalog places on a node");
    describe_gauge!("dfs_files", "Files in the namespace");
    describe_gauge!("dfs_file_bytes", Unit::Bytes, "Logical bytes of all files");
    describe_gauge!(
        "dfs_chunks",
        "Chunks (parity included) by the health of their stripe"
    );
    describe_gauge!(
        "dfs_repair_queue_chunks",
        "Chunks waiting or in flight for repair"
    );
    describe_gauge!(
        "dfs_repair_queue_bytes",
        Unit::Bytes,
        "Bytes waiting or in flight for repair"
    );
    describe_counter!("dfs_repaired_chunks_total", "Chunk copies repaired");
    describe_counter!("dfs_repaired_bytes_total", Unit::Bytes, "Bytes repaired");
    describe_counter!("dfs_repair_failures_total", "Repairs that failed");
    describe_gauge!(
        "dfs_repair_rate_bytes_per_second",
        "Repair rate during the current or last incident"
    );
    describe_gauge!(
        "dfs_repair_last_mttr_seconds",
        Unit::Seconds,
        "Node death to full protection, last incident"
    );
    describe_gauge!(
        "dfs_local_stored_bytes",
        Unit::Bytes,
        "Stored chunk bytes on this node"
    );
    describe_gauge!("dfs_local_chunks", "Chunks stored on this node");
    describe_gauge!(
        "dfs_local_free_bytes",
        Unit::Bytes,
        "Free bytes on this node's file system"
    );
}

/// When the cluster gauges were last computed, what that cost, and whether
/// a computation is under way.
struct Refresh {
    at: Option<Instant>,
    cost: Duration,
    running: bool,
}

static REFRESH: Mutex<Refresh> = Mutex::new(Refresh {
    at: None,
    cost: Duration::ZERO,
    running: false,
});

/// Gauges are recomputed once they are older than this many times what
/// computing them cost: the catalog walks behind them take at most a
/// twentieth of the coordinator's time however often Prometheus scrapes.
const STALE_AFTER_COSTS: u32 = 20;
/// A computation cheaper than this runs in the scrape itself, so a small
/// cluster's gauges are always current; a dearer one (a catalog of
/// millions) runs beside it and the scrape answers with the previous values
/// at once.
const INLINE_MAX: Duration = Duration::from_millis(20);

/// Brings the cluster gauges up to date for a scrape, cheaply: see
/// [`STALE_AFTER_COSTS`] and [`INLINE_MAX`].
pub fn refresh_cluster_gauges(c: &Arc<coord::Coord>) {
    let now = Instant::now();
    let inline = {
        let mut r = REFRESH.lock().unwrap_or_else(|p| p.into_inner());
        let fresh =
            r.at.is_some_and(|at| now.saturating_duration_since(at) < r.cost * STALE_AFTER_COSTS);
        if r.running || fresh {
            return;
        }
        r.running = true;
        r.at.is_none() || r.cost < INLINE_MAX
    };
    let c = c.clone();
    let work = move || {
        let start = Instant::now();
        cluster_gauges(&c);
        let mut r = REFRESH.lock().unwrap_or_else(|p| p.into_inner());
        r.at = Some(start);
        r.cost = start.elapsed();
        r.running = false;
    };
    if inline {
        work();
    } else {
        tokio::task::spawn_blocking(work);
    }
}

/// Sets the coordinator's cluster gauges from its current state.
pub fn cluster_gauges(c: &coord::Coord) {
    use metrics::{counter, gauge};
    let s = coord::cmd::status::status(c);
    for n in &s.nodes {
        let id = n.id.to_string();
        let alive = n.state == protocol::NodeState::Alive;
        gauge!("dfs_node_up", "node" => id.clone()).set(if alive { 1.0 } else { 0.0 });
        for st in [
            protocol::NodeState::Alive,
            protocol::NodeState::Suspect,
            protocol::NodeState::Dead,
        ] {
            let v = if n.state == st { 1.0 } else { 0.0 };
            gauge!("dfs_node_state", "node" => id.clone(), "state" => client::report::state_str(st))
                .set(v);
        }
        gauge!("dfs_node_stored_bytes", "node" => id.clone()).set(n.stats.bytes as f64);
        if let Some(free) = n.stats.free_bytes {
            gauge!("dfs_node_free_bytes", "node" => id.clone()).set(free as f64);
        }
        gauge!("dfs_node_chunks", "node" => id).set(n.catalog_chunks as f64);
    }
    gauge!("dfs_files").set(s.files as f64);
    gauge!("dfs_file_bytes").set(s.bytes as f64);
    let r = &s.repair;
    gauge!("dfs_repair_queue_chunks", "state" => "waiting").set(r.waiting_chunks as f64);
    gauge!("dfs_repair_queue_chunks", "state" => "in_flight").set(r.in_flight_chunks as f64);
    gauge!("dfs_repair_queue_bytes", "state" => "waiting").set(r.waiting_bytes as f64);
    gauge!("dfs_repair_queue_bytes", "state" => "in_flight").set(r.in_flight_bytes as f64);
    counter!("dfs_repaired_chunks_total").absolute(r.done_chunks);
    counter!("dfs_repaired_bytes_total").absolute(r.done_bytes);
    counter!("dfs_repair_failures_total").absolute(r.failed);
    gauge!("dfs_repair_rate_bytes_per_second").set(r.rate_bytes_per_s as f64);
    if let Some(ms) = r.last_mttr_ms {
        gauge!("dfs_repair_last_mttr_seconds").set(ms as f64 / 1000.0);
    }
    let levels = coord::cmd::status::chunks_by_health(c);
    for (level, n) in ["healthy", "degraded", "at-risk", "lost"]
        .iter()
        .zip(levels)
    {
        gauge!("dfs_chunks", "level" => *level).set(n as f64);
    }
}

/// The Prometheus text exposition format response.
pub fn text_response(body: String) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}
