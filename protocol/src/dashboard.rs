//! Wire types of what the dashboard shows beyond the catalog: repair and
//! rebalance traffic per node (and the flows between nodes), and incident
//! records (a node's death or a corrupt copy, until full protection again).
//!
//! They live apart from `message.rs` so that the enums there only grow at
//! their ends: `ClusterStatus` carries the traffic in its last fields, and
//! `CoordRequest::Incidents` / `CoordResponse::Incidents` are the last
//! variants.

use crate::{NodeId, Scheme};
use serde::{Deserialize, Serialize};

/// What moves copies between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FlowKind {
    Repair,
    Rebalance,
}

/// One node's share of repair and rebalance traffic: what is in flight now
/// (orders sent, not yet reported) and what completed in the last
/// [`TRAFFIC_WINDOW_MS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTraffic {
    pub node: NodeId,
    /// Repairs reading from this node now, and the bytes they read here.
    pub repair_reads: u32,
    pub repair_read_bytes: u64,
    /// Repairs writing a new copy on this node now, and its bytes.
    pub repair_writes: u32,
    pub repair_write_bytes: u64,
    /// The same for rebalancing moves.
    pub rebalance_reads: u32,
    pub rebalance_read_bytes: u64,
    pub rebalance_writes: u32,
    pub rebalance_write_bytes: u64,
    /// Bytes read here / written here by repairs and moves that completed
    /// within the window, per second.
    pub read_rate_bytes_per_s: u64,
    pub write_rate_bytes_per_s: u64,
    /// The same bytes, summed over the window (a repair of small chunks is
    /// over before the next screen refresh: this says it happened).
    pub recent_read_bytes: u64,
    pub recent_write_bytes: u64,
    /// The repairs' share of those.
    pub recent_repair_read_bytes: u64,
    pub recent_repair_write_bytes: u64,
}

/// How far back "recent" traffic and its rates reach.
pub const TRAFFIC_WINDOW_MS: u64 = 5_000;

/// Copies moving from one node to another, in flight or within the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub kind: FlowKind,
    pub source: NodeId,
    pub target: NodeId,
    /// Orders from `source` to `target` in flight now, and their bytes.
    pub in_flight: u32,
    pub in_flight_bytes: u64,
    /// Bytes that went this way within the window.
    pub recent_bytes: u64,
}

/// What started an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncidentCause {
    /// A node was declared dead.
    NodeDied(NodeId),
    /// A node found (or was found to hold) a bad or missing copy.
    Corrupt { node: NodeId, chunk: crate::ChunkId },
    /// Chunks below target for another reason (a drain, a node forgotten,
    /// a coordinator started on a degraded catalog).
    UnderProtected,
}

/// Repair traffic of one scheme and replication within an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentScheme {
    pub scheme: Scheme,
    pub replication: u32,
    pub chunks: u64,
    pub read_bytes: u64,
    pub rebuilt_bytes: u64,
}

/// Bytes one node gave or received during an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentNode {
    pub node: NodeId,
    pub bytes: u64,
    pub repairs: u64,
}

/// One incident: from a node's death (or a corrupt copy) to full
/// protection. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u64,
    /// The first cause; later deaths during the same repair join it.
    pub cause: IncidentCause,
    /// When the failure happened (a dead node's last heartbeat).
    pub started_ms: u64,
    /// When the coordinator noticed it.
    pub detected_ms: u64,
    /// When every chunk was fully protected again; `None` while open.
    pub ended_ms: Option<u64>,
    /// Nodes that failed (died, or held a corrupt copy).
    pub failed_nodes: Vec<NodeId>,
    /// Nodes read from, and nodes that received new copies.
    pub sources: Vec<IncidentNode>,
    pub targets: Vec<IncidentNode>,
    pub chunks: u64,
    pub read_bytes: u64,
    pub rebuilt_bytes: u64,
    pub schemes: Vec<IncidentScheme>,
    /// Repair orders that failed or timed out, and orders sent for chunks
    /// that had failed before in this incident.
    pub failures: u64,
    pub retries: u64,
    /// Chunks that could not be repaired at some point (no source left).
    pub stuck_chunks: u64,
}
