//! The typed JSON documents of `status`, `stat`, `ls` and `fsck`, built from
//! the coordinator's wire replies.
//!
//! Why a module of its own: the CLI's `--json` and the HTTP API (the `web`
//! crate) both serialize these same structs, so the two faces cannot drift.
//! The wire types stay free to change shape for the protocol's sake; these
//! are the stable, user-facing documents.

use protocol::health::{file_health, Health, StripeCopies};
use protocol::{
    ChunkInfo, ClusterStatus, Codec, FileInfo, FileSummary, FsckReport, NodeState, RepairState,
};
use serde::Serialize;

/// `"alive"`, `"suspect"` or `"dead"`: liveness as the coordinator sees it.
pub fn state_str(s: NodeState) -> &'static str {
    match s {
        NodeState::Alive => "alive",
        NodeState::Suspect => "suspect",
        NodeState::Dead => "dead",
    }
}

pub fn repair_str(r: RepairState) -> &'static str {
    match r {
        RepairState::Idle => "idle",
        RepairState::Queued => "queued",
        RepairState::Running => "running",
    }
}

fn parity_str(parity: bool) -> &'static str {
    if parity {
        "xor"
    } else {
        "none"
    }
}

// ------------------------------------------------------------------ status

/// `status --json` and `GET /api/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub nodes: Vec<NodeReport>,
    /// The cluster's identity (hex).
    pub cluster: String,
    /// The coordinator serves reads only (`coord --read-only`).
    pub read_only: bool,
    /// Nodes that have seen a newer catalog than this coordinator holds
    /// (no delete is sent to them).
    pub catalog_behind: Vec<String>,
    pub files: u64,
    pub bytes: u64,
    pub chunks: u64,
    pub replication: u32,
    pub parity: &'static str,
    pub stripe: u32,
    pub chunk_size: u64,
    pub pending_uploads: u64,
    pub repair: RepairReport,
    pub under_protected_total: u64,
    pub under_protected: Vec<UnderProtectedReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub id: String,
    pub addr: String,
    pub state: &'static str,
    pub last_heartbeat_ms_ago: Option<u64>,
    /// Chunks the catalog places on the node.
    pub chunks: u64,
    /// Chunks the node itself reported.
    pub stored_chunks: u64,
    pub bytes: u64,
    pub free_bytes: Option<u64>,
    pub draining: bool,
    pub scrub_passes: u64,
    pub scrub_running: bool,
    pub corrupt_found: u64,
    pub orphans_set_aside: u64,
    pub quarantined: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    pub waiting_chunks: u64,
    pub waiting_bytes: u64,
    pub in_flight_chunks: u64,
    pub in_flight_bytes: u64,
    pub done_chunks: u64,
    pub done_bytes: u64,
    pub failed: u64,
    pub rate_bytes_per_s: u64,
    pub last_mttr_ms: Option<u64>,
    pub incident_open_ms: Option<u64>,
    pub parallel: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnderProtectedReport {
    pub file: String,
    pub chunk: String,
    pub parity: bool,
    pub live_copies: u32,
    pub target: u32,
}

impl From<&ClusterStatus> for StatusReport {
    fn from(s: &ClusterStatus) -> Self {
        let r = &s.repair;
        StatusReport {
            nodes: s
                .nodes
                .iter()
                .map(|n| NodeReport {
                    id: n.id.to_string(),
                    addr: n.addr.clone(),
                    state: state_str(n.state),
                    last_heartbeat_ms_ago: n.last_heartbeat_ms_ago,
                    chunks: n.catalog_chunks,
                    stored_chunks: n.stats.chunks,
                    bytes: n.stats.bytes,
                    free_bytes: n.stats.free_bytes,
                    draining: n.draining,
                    scrub_passes: n.stats.scrub_passes,
                    scrub_running: n.stats.scrub_running,
                    corrupt_found: n.stats.corrupt_found,
                    orphans_set_aside: n.stats.orphans,
                    quarantined: n.stats.quarantined,
                })
                .collect(),
            cluster: s.cluster.clone(),
            read_only: s.read_only,
            catalog_behind: s.catalog_behind.iter().map(|n| n.to_string()).collect(),
            files: s.files,
            bytes: s.bytes,
            chunks: s.chunks,
            replication: s.replication,
            parity: parity_str(s.parity),
            stripe: s.stripe,
            chunk_size: s.chunk_size,
            pending_uploads: s.pending_uploads,
            repair: RepairReport {
                waiting_chunks: r.waiting_chunks,
                waiting_bytes: r.waiting_bytes,
                in_flight_chunks: r.in_flight_chunks,
                in_flight_bytes: r.in_flight_bytes,
                done_chunks: r.done_chunks,
                done_bytes: r.done_bytes,
                failed: r.failed,
                rate_bytes_per_s: r.rate_bytes_per_s,
                last_mttr_ms: r.last_mttr_ms,
                incident_open_ms: r.incident_open_ms,
                parallel: r.parallel,
            },
            under_protected_total: s.under_replicated_total,
            under_protected: s
                .under_replicated
                .iter()
                .map(|u| UnderProtectedReport {
                    file: u.file.to_string(),
                    chunk: u.chunk.to_hex(),
                    parity: u.parity,
                    live_copies: u.live_copies,
                    target: u.target,
                })
                .collect(),
        }
    }
}

// -------------------------------------------------------------------- stat

/// `stat --json` and `GET /api/files/{name}`.
#[derive(Debug, Clone, Serialize)]
pub struct StatReport {
    pub name: String,
    pub size: u64,
    pub created_ms: u64,
    pub chunk_size: u64,
    pub replication: u32,
    pub parity: &'static str,
    pub health: &'static str,
    pub stripes: Vec<StripeReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StripeReport {
    pub data: Vec<ChunkReport>,
    pub parity: Option<ChunkReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChunkReport {
    pub id: String,
    pub raw_len: u64,
    pub stored_len: u64,
    pub codec: &'static str,
    pub sha256: String,
    pub live_copies: usize,
    pub locations: Vec<LocationReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LocationReport {
    pub node: String,
    pub addr: String,
    pub alive: bool,
}

/// Live copies of a chunk as the coordinator reported them.
pub fn live_copies(c: &ChunkInfo) -> usize {
    c.locations.iter().filter(|l| l.alive).count()
}

/// A file's health from its lookup, by the one shared definition.
pub fn file_info_health(f: &FileInfo) -> Health {
    let stripes: Vec<StripeCopies> = f
        .stripes
        .iter()
        .map(|s| StripeCopies {
            data: s.data.iter().map(|c| live_copies(c) as u32).collect(),
            parity: s.parity.as_ref().map(|p| live_copies(p) as u32),
        })
        .collect();
    file_health(&stripes, f.replication)
}

impl From<&ChunkInfo> for ChunkReport {
    fn from(c: &ChunkInfo) -> Self {
        ChunkReport {
            id: c.header.id.to_hex(),
            raw_len: c.header.raw_len,
            stored_len: c.header.stored_len,
            codec: match c.header.codec {
                Codec::Raw => "raw",
                Codec::Lz4 => "lz4",
            },
            sha256: c
                .header
                .raw_sha256
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            live_copies: live_copies(c),
            locations: c
                .locations
                .iter()
                .map(|l| LocationReport {
                    node: l.node.id.to_string(),
                    addr: l.node.addr.clone(),
                    alive: l.alive,
                })
                .collect(),
        }
    }
}

impl From<&FileInfo> for StatReport {
    fn from(f: &FileInfo) -> Self {
        StatReport {
            name: f.name.to_string(),
            size: f.size,
            created_ms: f.created_ms,
            chunk_size: f.chunk_size,
            replication: f.replication,
            parity: parity_str(f.stripes.iter().any(|s| s.parity.is_some())),
            health: file_info_health(f).as_str(),
            stripes: f
                .stripes
                .iter()
                .map(|s| StripeReport {
                    data: s.data.iter().map(ChunkReport::from).collect(),
                    parity: s.parity.as_ref().map(ChunkReport::from),
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------- ls

/// One entry of `ls --json`.
#[derive(Debug, Clone, Serialize)]
pub struct FileSummaryReport {
    pub name: String,
    pub size: u64,
    pub chunks: u64,
    pub created_ms: u64,
}

impl From<&FileSummary> for FileSummaryReport {
    fn from(f: &FileSummary) -> Self {
        FileSummaryReport {
            name: f.name.to_string(),
            size: f.size,
            chunks: f.chunks,
            created_ms: f.created_ms,
        }
    }
}

// -------------------------------------------------------------------- fsck

/// `fsck --json` and `GET /api/fsck`.
#[derive(Debug, Clone, Serialize)]
pub struct FsckJson {
    pub what_if: Vec<String>,
    pub files: Vec<FileHealthReport>,
    /// Only with `--deep`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deep: Option<DeepReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileHealthReport {
    pub name: String,
    pub size: u64,
    pub health: &'static str,
    pub chunks: Vec<ChunkHealthReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChunkHealthReport {
    pub id: String,
    pub stripe: u32,
    pub index: Option<u64>,
    pub parity: bool,
    pub live: u32,
    pub target: u32,
    pub repair: &'static str,
}

/// What `fsck --deep` found reading every copy.
#[derive(Debug, Clone, Serialize)]
pub struct DeepReport {
    pub verified_copies: u64,
    pub bad_copies: Vec<BadCopy>,
}

/// A copy that failed a deep check.
#[derive(Debug, Clone, Serialize)]
pub struct BadCopy {
    pub file: String,
    pub chunk: String,
    pub node: String,
    pub reason: String,
}

impl From<&FsckReport> for FsckJson {
    fn from(r: &FsckReport) -> Self {
        FsckJson {
            what_if: r.what_if.iter().map(|n| n.to_string()).collect(),
            files: r
                .files
                .iter()
                .map(|f| FileHealthReport {
                    name: f.name.to_string(),
                    size: f.size,
                    health: f.health.as_str(),
                    chunks: f
                        .chunks
                        .iter()
                        .map(|c| ChunkHealthReport {
                            id: c.id.to_hex(),
                            stripe: c.stripe,
                            index: c.index,
                            parity: c.index.is_none(),
                            live: c.live,
                            target: c.target,
                            repair: repair_str(c.repair),
                        })
                        .collect(),
                })
                .collect(),
            deep: None,
        }
    }
}
