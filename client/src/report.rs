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

/// Stored bytes per logical byte of a scheme in use.
fn overhead(u: &protocol::SchemeUsage) -> f64 {
    if u.logical_bytes == 0 {
        0.0
    } else {
        u.stored_bytes as f64 / u.logical_bytes as f64
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
    /// The cluster's default scheme (`xor:4`, `rs:6+3`, `lrc:12+2+2`...).
    pub scheme: String,
    /// Every stripe must survive the loss of any one domain.
    pub ha: bool,
    pub chunk_size: u64,
    /// Per scheme in use: logical and stored bytes and their ratio.
    pub schemes: Vec<SchemeReport>,
    pub pending_uploads: u64,
    pub repair: RepairReport,
    pub rebalance: RebalanceReport,
    pub under_protected_total: u64,
    pub under_protected: Vec<UnderProtectedReport>,
    /// Copies moving between nodes (repair and rebalance), in flight or
    /// within the traffic window: the dashboard draws them.
    pub flows: Vec<FlowReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub id: String,
    pub addr: String,
    /// `alive`, `suspect`, `dead`, or `failed`: running, but its store is
    /// gone or unwritable (counted dead: its copies are lost).
    pub state: &'static str,
    /// Why the node's store failed, as the node reported it.
    pub failed: Option<String>,
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
    /// Failure domain (rack, enclosure...).
    pub domain: String,
    /// A hot spare: takes no new writes, first choice for repair.
    pub spare: bool,
    /// Was a spare and received repaired data: now a regular node.
    pub was_spare: bool,
    /// Repair and rebalance bytes being read from / written to this node.
    pub traffic: NodeTrafficReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchemeReport {
    pub scheme: String,
    pub replication: u32,
    pub files: u64,
    pub logical_bytes: u64,
    pub stored_bytes: u64,
    pub overhead: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    pub waiting_chunks: u64,
    pub waiting_bytes: u64,
    pub in_flight_chunks: u64,
    pub in_flight_bytes: u64,
    pub done_chunks: u64,
    pub done_bytes: u64,
    /// Bytes read from surviving members to rebuild what was repaired.
    pub read_bytes: u64,
    pub failed: u64,
    pub rate_bytes_per_s: u64,
    pub last_mttr_ms: Option<u64>,
    pub incident_open_ms: Option<u64>,
    pub parallel: u32,
    /// Traffic of the open repair incident, else of the last one.
    pub incident: Option<IncidentReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentReport {
    pub open: bool,
    pub chunks: u64,
    pub read_bytes: u64,
    pub rebuilt_bytes: u64,
    /// Bytes read per byte rebuilt.
    pub read_per_rebuilt: f64,
    pub schemes: Vec<SchemeTrafficReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchemeTrafficReport {
    pub scheme: String,
    pub replication: u32,
    pub chunks: u64,
    pub read_bytes: u64,
    pub rebuilt_bytes: u64,
    pub read_per_rebuilt: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// `status.rebalance`: progress of rebalancing and usage per node.
#[derive(Debug, Clone, Serialize)]
pub struct RebalanceReport {
    /// `idle`, `running`, `paused` (repairs first).
    pub state: &'static str,
    pub trigger: String,
    pub moved_chunks: u64,
    pub moved_bytes: u64,
    pub planned_chunks: u64,
    pub planned_bytes: u64,
    pub in_flight_chunks: u64,
    pub in_flight_bytes: u64,
    pub failed: u64,
    pub rate_limit_bytes_per_s: u64,
    pub tolerance_pct: u32,
    pub mean_bytes: u64,
    /// Largest distance of a node's usage from the mean, in percent.
    pub deviation_pct: f64,
    pub usage: Vec<NodeUsageReport>,
    pub stuck: bool,
    pub last_run_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeUsageReport {
    pub node: String,
    pub bytes: u64,
    /// Percent above (+) or below (-) the mean.
    pub vs_mean_pct: f64,
}

pub fn rebalance_state_str(s: protocol::RebalanceState) -> &'static str {
    match s {
        protocol::RebalanceState::Idle => "idle",
        protocol::RebalanceState::Running => "running",
        protocol::RebalanceState::Paused => "paused",
    }
}

impl From<&protocol::RebalanceStatus> for RebalanceReport {
    fn from(r: &protocol::RebalanceStatus) -> Self {
        let m = r.mean_bytes as f64;
        let pct = |b: u64| {
            if m > 0.0 {
                (b as f64 - m) / m * 100.0
            } else {
                0.0
            }
        };
        let usage: Vec<NodeUsageReport> = r
            .usage
            .iter()
            .map(|u| NodeUsageReport {
                node: u.node.to_string(),
                bytes: u.bytes,
                vs_mean_pct: pct(u.bytes),
            })
            .collect();
        RebalanceReport {
            state: rebalance_state_str(r.state),
            trigger: r.trigger.clone(),
            moved_chunks: r.moved_chunks,
            moved_bytes: r.moved_bytes,
            planned_chunks: r.planned_chunks,
            planned_bytes: r.planned_bytes,
            in_flight_chunks: r.in_flight_chunks,
            in_flight_bytes: r.in_flight_bytes,
            failed: r.failed,
            rate_limit_bytes_per_s: r.rate_limit_bytes_per_s,
            tolerance_pct: r.tolerance_pct,
            mean_bytes: r.mean_bytes,
            deviation_pct: if usage.len() < 2 {
                0.0
            } else {
                usage
                    .iter()
                    .map(|u| u.vs_mean_pct.abs())
                    .fold(0.0, f64::max)
            },
            usage,
            stuck: r.stuck,
            last_run_ms: r.last_run_ms,
        }
    }
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
                    state: match (&n.stats.failed, n.state) {
                        (Some(_), NodeState::Dead) => "failed",
                        (_, s) => state_str(s),
                    },
                    failed: n.stats.failed.clone(),
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
                    domain: n.domain.clone(),
                    spare: n.spare,
                    was_spare: n.was_spare,
                    traffic: s
                        .traffic
                        .iter()
                        .find(|t| t.node == n.id)
                        .map(NodeTrafficReport::from)
                        .unwrap_or_else(|| NodeTrafficReport {
                            window_ms: protocol::dashboard::TRAFFIC_WINDOW_MS,
                            ..Default::default()
                        }),
                })
                .collect(),
            flows: s.flows.iter().map(FlowReport::from).collect(),
            cluster: s.cluster.clone(),
            read_only: s.read_only,
            catalog_behind: s.catalog_behind.iter().map(|n| n.to_string()).collect(),
            files: s.files,
            bytes: s.bytes,
            chunks: s.chunks,
            replication: s.replication,
            scheme: s.scheme.to_string(),
            ha: s.ha,
            chunk_size: s.chunk_size,
            schemes: s
                .schemes
                .iter()
                .map(|u| SchemeReport {
                    scheme: u.scheme.to_string(),
                    replication: u.replication,
                    files: u.files,
                    logical_bytes: u.logical_bytes,
                    stored_bytes: u.stored_bytes,
                    overhead: overhead(u),
                })
                .collect(),
            pending_uploads: s.pending_uploads,
            repair: RepairReport {
                waiting_chunks: r.waiting_chunks,
                waiting_bytes: r.waiting_bytes,
                in_flight_chunks: r.in_flight_chunks,
                in_flight_bytes: r.in_flight_bytes,
                done_chunks: r.done_chunks,
                done_bytes: r.done_bytes,
                read_bytes: r.read_bytes,
                failed: r.failed,
                rate_bytes_per_s: r.rate_bytes_per_s,
                last_mttr_ms: r.last_mttr_ms,
                incident_open_ms: r.incident_open_ms,
                parallel: r.parallel,
                incident: r.incident.as_ref().map(|i| IncidentReport {
                    open: i.open,
                    chunks: i.chunks,
                    read_bytes: i.read_bytes,
                    rebuilt_bytes: i.rebuilt_bytes,
                    read_per_rebuilt: ratio(i.read_bytes, i.rebuilt_bytes),
                    schemes: i
                        .schemes
                        .iter()
                        .map(|s| SchemeTrafficReport {
                            scheme: s.scheme.to_string(),
                            replication: s.replication,
                            chunks: s.chunks,
                            read_bytes: s.read_bytes,
                            rebuilt_bytes: s.rebuilt_bytes,
                            read_per_rebuilt: ratio(s.read_bytes, s.rebuilt_bytes),
                        })
                        .collect(),
                }),
            },
            rebalance: RebalanceReport::from(&s.rebalance),
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
    /// The file's protection scheme.
    pub scheme: String,
    pub health: &'static str,
    pub stripes: Vec<StripeReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StripeReport {
    pub data: Vec<ChunkReport>,
    /// In the scheme's member order; each names its role.
    pub parity: Vec<ChunkReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChunkReport {
    /// `data`, `xor`, `local parity of group g`, `global parity j`...
    pub role: String,
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
    pub domain: String,
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
            parity: s.parity.iter().map(|p| live_copies(p) as u32).collect(),
        })
        .collect();
    match codes::Code::new(f.scheme) {
        Ok(code) => file_health(&code, &stripes, f.replication),
        Err(_) => Health::Lost,
    }
}

impl ChunkReport {
    fn new(c: &ChunkInfo, role: String) -> Self {
        ChunkReport {
            role,
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
                    domain: l.domain.clone(),
                })
                .collect(),
        }
    }
}

impl From<&FileInfo> for StatReport {
    fn from(f: &FileInfo) -> Self {
        let roles = f.scheme.parity_roles();
        StatReport {
            name: f.name.to_string(),
            size: f.size,
            created_ms: f.created_ms,
            chunk_size: f.chunk_size,
            replication: f.replication,
            scheme: f.scheme.to_string(),
            health: file_info_health(f).as_str(),
            stripes: f
                .stripes
                .iter()
                .map(|s| StripeReport {
                    data: s
                        .data
                        .iter()
                        .map(|c| ChunkReport::new(c, "data".into()))
                        .collect(),
                    parity: s
                        .parity
                        .iter()
                        .enumerate()
                        .map(|(j, c)| {
                            let role = roles.get(j).map(|r| r.to_string()).unwrap_or_default();
                            ChunkReport::new(c, role)
                        })
                        .collect(),
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

// ----------------------------------------------------- traffic, incidents

/// `status.nodes[].traffic`: repair and rebalance work touching one node.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeTrafficReport {
    /// Repairs reading from this node now, and the bytes they read here.
    pub repair_reads_in_flight: u32,
    pub repair_read_bytes_in_flight: u64,
    /// Repairs writing a new copy here now, and its bytes.
    pub repair_writes_in_flight: u32,
    pub repair_write_bytes_in_flight: u64,
    pub rebalance_reads_in_flight: u32,
    pub rebalance_read_bytes_in_flight: u64,
    pub rebalance_writes_in_flight: u32,
    pub rebalance_write_bytes_in_flight: u64,
    /// Over the last `window_ms`: bytes per second read here / written here
    /// by completed repairs and moves, and those bytes.
    pub read_bytes_per_s: u64,
    pub write_bytes_per_s: u64,
    pub recent_read_bytes: u64,
    pub recent_write_bytes: u64,
    pub window_ms: u64,
    /// Read for a repair now or within the window.
    pub repair_source: bool,
    /// Receiving a repaired copy now or within the window.
    pub repair_target: bool,
}

impl From<&protocol::NodeTraffic> for NodeTrafficReport {
    fn from(t: &protocol::NodeTraffic) -> Self {
        NodeTrafficReport {
            repair_source: t.repair_reads > 0 || t.recent_repair_read_bytes > 0,
            repair_target: t.repair_writes > 0 || t.recent_repair_write_bytes > 0,
            repair_reads_in_flight: t.repair_reads,
            repair_read_bytes_in_flight: t.repair_read_bytes,
            repair_writes_in_flight: t.repair_writes,
            repair_write_bytes_in_flight: t.repair_write_bytes,
            rebalance_reads_in_flight: t.rebalance_reads,
            rebalance_read_bytes_in_flight: t.rebalance_read_bytes,
            rebalance_writes_in_flight: t.rebalance_writes,
            rebalance_write_bytes_in_flight: t.rebalance_write_bytes,
            read_bytes_per_s: t.read_rate_bytes_per_s,
            write_bytes_per_s: t.write_rate_bytes_per_s,
            recent_read_bytes: t.recent_read_bytes,
            recent_write_bytes: t.recent_write_bytes,
            window_ms: protocol::dashboard::TRAFFIC_WINDOW_MS,
        }
    }
}

/// `status.flows[]`: copies going from `source` to `target`.
#[derive(Debug, Clone, Serialize)]
pub struct FlowReport {
    /// `repair` or `rebalance`.
    pub kind: &'static str,
    pub source: String,
    pub target: String,
    pub in_flight: u32,
    pub in_flight_bytes: u64,
    /// Bytes that went this way within the traffic window.
    pub recent_bytes: u64,
}

impl From<&protocol::Flow> for FlowReport {
    fn from(f: &protocol::Flow) -> Self {
        FlowReport {
            kind: flow_kind_str(f.kind),
            source: f.source.to_string(),
            target: f.target.to_string(),
            in_flight: f.in_flight,
            in_flight_bytes: f.in_flight_bytes,
            recent_bytes: f.recent_bytes,
        }
    }
}

pub fn flow_kind_str(k: protocol::FlowKind) -> &'static str {
    match k {
        protocol::FlowKind::Repair => "repair",
        protocol::FlowKind::Rebalance => "rebalance",
    }
}

/// `incidents --json`, `GET /api/incidents` (a list) and
/// `GET /api/incidents/{id}` (one): an incident, from a node's death or a
/// corrupt copy found until every chunk was fully protected again.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentDoc {
    pub id: u64,
    /// `node-died`, `corrupt` or `under-protected`.
    pub cause: &'static str,
    /// One line: what happened.
    pub summary: String,
    pub open: bool,
    /// Milliseconds since the Unix epoch.
    pub started_ms: u64,
    pub detected_ms: u64,
    pub ended_ms: Option<u64>,
    /// From the failure to its detection.
    pub detection_ms: u64,
    /// From the failure to full protection (open: so far).
    pub mttr_ms: Option<u64>,
    pub failed_nodes: Vec<String>,
    pub sources: Vec<IncidentNodeDoc>,
    pub targets: Vec<IncidentNodeDoc>,
    pub chunks: u64,
    pub read_bytes: u64,
    pub rebuilt_bytes: u64,
    /// Bytes read per byte rebuilt (the repair cost of the schemes).
    pub read_per_rebuilt: f64,
    pub schemes: Vec<SchemeTrafficReport>,
    pub failures: u64,
    pub retries: u64,
    pub stuck_chunks: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentNodeDoc {
    pub node: String,
    pub bytes: u64,
    pub repairs: u64,
}

impl From<&protocol::Incident> for IncidentDoc {
    fn from(i: &protocol::Incident) -> Self {
        use protocol::IncidentCause;
        let (cause, summary) = match &i.cause {
            IncidentCause::NodeDied(n) => ("node-died", format!("node {n} died")),
            IncidentCause::Corrupt { node, chunk } => (
                "corrupt",
                format!("bad or missing copy of chunk {chunk} on {node}"),
            ),
            IncidentCause::UnderProtected => (
                "under-protected",
                "chunks below their target (drain, forget or restart)".to_string(),
            ),
        };
        let nodes = |v: &[protocol::IncidentNode]| {
            v.iter()
                .map(|n| IncidentNodeDoc {
                    node: n.node.to_string(),
                    bytes: n.bytes,
                    repairs: n.repairs,
                })
                .collect()
        };
        IncidentDoc {
            id: i.id,
            cause,
            summary,
            open: i.ended_ms.is_none(),
            started_ms: i.started_ms,
            detected_ms: i.detected_ms,
            ended_ms: i.ended_ms,
            detection_ms: i.detected_ms.saturating_sub(i.started_ms),
            mttr_ms: i.ended_ms.map(|e| e.saturating_sub(i.started_ms)),
            failed_nodes: i.failed_nodes.iter().map(|n| n.to_string()).collect(),
            sources: nodes(&i.sources),
            targets: nodes(&i.targets),
            chunks: i.chunks,
            read_bytes: i.read_bytes,
            rebuilt_bytes: i.rebuilt_bytes,
            read_per_rebuilt: ratio(i.read_bytes, i.rebuilt_bytes),
            schemes: i
                .schemes
                .iter()
                .map(|s| SchemeTrafficReport {
                    scheme: s.scheme.to_string(),
                    replication: s.replication,
                    chunks: s.chunks,
                    read_bytes: s.read_bytes,
                    rebuilt_bytes: s.rebuilt_bytes,
                    read_per_rebuilt: ratio(s.read_bytes, s.rebuilt_bytes),
                })
                .collect(),
            failures: i.failures,
            retries: i.retries,
            stuck_chunks: i.stuck_chunks,
        }
    }
}
