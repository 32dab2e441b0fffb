//! Self-healing: bringing every chunk back to its target number of copies.
//!
//! A scan (a few times per heartbeat) compares each chunk's holders with its
//! target, counting only nodes that are not dead and not draining. Deficits
//! are ordered like GFS and HDFS do it, closest to loss first: a data chunk
//! with no readable copy (rebuilt from its stripe), then one with a single
//! copy, then other data deficits, then parity blocks. Up to
//! `repair_parallel` orders run at once, each sent to the node that will
//! hold the new copy, which fetches from its peers directly. A node's
//! report of success adds the copy to the catalog (journaled); a failure, a
//! timeout or the target's death drops the order, and the next scan plans it
//! again, elsewhere if need be. Chunks back at target are trimmed: holders
//! that are dead, draining or in excess are dropped from the catalog and
//! (when alive) told to delete their copy.
//!
//! What to repair, in which order and where is decided by [`planner`], a
//! pure function this module feeds with the live cluster; this module owns
//! the clock, the bookkeeping (in-flight orders, back-off, incidents), the
//! journal records and the messages.

use protocol::{ChunkId, IncidentTraffic, NodeId, RepairStatus, SchemeTraffic};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

pub mod run;

/// Orders per target node at once, so one node is not flooded while others
/// idle.
const PER_TARGET: usize = 3;
/// Pause before a failed chunk is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

pub struct Task {
    pub id: u64,
    pub target: NodeId,
    pub started: Instant,
    pub bytes: u64,
    /// Bytes the target reads to produce the copy (a copy reads one chunk,
    /// a rebuild reads its read plan).
    pub read: u64,
    /// The file's scheme and replication, for the incident's traffic.
    pub scheme: protocol::Scheme,
    pub replication: u32,
    /// Nodes the target reads and the bytes read from each (the first
    /// source of a copy; every member of a rebuild's read plan), for the
    /// traffic per node and the incident record.
    pub sources: Vec<(NodeId, u64)>,
}

/// Repair bookkeeping, kept in [`State`].
#[derive(Default)]
pub struct Repairs {
    pub in_flight: HashMap<ChunkId, Task>,
    next_task: u64,
    retry_at: HashMap<ChunkId, Instant>,
    pub done_chunks: u64,
    pub done_bytes: u64,
    /// Bytes read by completed repairs (per byte rebuilt: the repair
    /// traffic a scheme costs).
    pub done_read_bytes: u64,
    pub failed: u64,
    pub waiting_chunks: u64,
    pub waiting_bytes: u64,
    /// Chunks below target that cannot be repaired now (all sources gone).
    pub stuck: HashSet<ChunkId>,
    /// Open incident: the earliest death not yet fully repaired.
    incident: Option<Incident>,
    last_mttr: Option<Duration>,
    last_rate: u64,
    /// Repair traffic of the open incident, else of the last one. An
    /// incident's traffic runs from the first repair scheduled while none
    /// was pending to the first scan that finds nothing left to repair, so
    /// a corrupt copy's repair counts as much as a node death's.
    traffic: IncidentTraffic,
    /// The incident records (history kept beside the catalog).
    incidents: crate::incidents::Incidents,
}

impl Repairs {
    /// A repair is scheduled: it opens an incident's traffic if none is open.
    fn traffic_opens(&mut self) {
        if !self.traffic.open {
            self.traffic = IncidentTraffic {
                open: true,
                ..Default::default()
            };
        }
    }

    /// A repair completed: its bytes count for the open incident.
    fn traffic_adds(&mut self, t: &Task) {
        let tr = &mut self.traffic;
        tr.chunks += 1;
        tr.read_bytes += t.read;
        tr.rebuilt_bytes += t.bytes;
        let i = match tr
            .schemes
            .iter()
            .position(|s| s.scheme == t.scheme && s.replication == t.replication)
        {
            Some(i) => i,
            None => {
                tr.schemes.push(SchemeTraffic {
                    scheme: t.scheme,
                    replication: t.replication,
                    chunks: 0,
                    read_bytes: 0,
                    rebuilt_bytes: 0,
                });
                tr.schemes.len() - 1
            }
        };
        let s = &mut tr.schemes[i];
        s.chunks += 1;
        s.read_bytes += t.read;
        s.rebuilt_bytes += t.bytes;
    }
}

struct Incident {
    died: Instant,
    done_bytes_at_start: u64,
    first_repair: Option<Instant>,
}

impl Repairs {
    /// The incident records, newest first (all, or the one with `id`).
    pub fn incidents(&self, id: Option<u64>) -> Vec<protocol::Incident> {
        self.incidents.list(id)
    }

    /// Fresh bookkeeping with the incident records kept in `dir`.
    pub fn open(dir: &std::path::Path) -> Repairs {
        Repairs {
            incidents: crate::incidents::Incidents::load(dir),
            ..Default::default()
        }
    }

    /// A node found a bad or missing copy: an incident opens (or the open
    /// one grows).
    pub fn copy_lost(&mut self, node: &NodeId, chunk: ChunkId) {
        self.incidents.corrupt(node, chunk);
    }

    /// A node died at `died`: the clock for MTTR starts then.
    pub fn node_died(&mut self, node: &NodeId, died: Instant) {
        self.incidents
            .node_died(node, Instant::now().saturating_duration_since(died));
        match &mut self.incident {
            Some(i) => i.died = i.died.min(died),
            None => {
                self.incident = Some(Incident {
                    died,
                    done_bytes_at_start: self.done_bytes,
                    first_repair: None,
                })
            }
        }
        tracing::warn!(%node, "repair: node lost, re-protecting its chunks");
    }

    pub fn status(&self, parallel: usize, now: Instant) -> RepairStatus {
        let rate = match &self.incident {
            Some(i) => {
                let secs = i
                    .first_repair
                    .map(|t| now.saturating_duration_since(t).as_secs_f64())
                    .unwrap_or(0.0);
                if secs > 0.0 {
                    ((self.done_bytes - i.done_bytes_at_start) as f64 / secs) as u64
                } else {
                    0
                }
            }
            None => self.last_rate,
        };
        RepairStatus {
            waiting_chunks: self.waiting_chunks,
            waiting_bytes: self.waiting_bytes,
            in_flight_chunks: self.in_flight.len() as u64,
            in_flight_bytes: self.in_flight.values().map(|t| t.bytes).sum(),
            done_chunks: self.done_chunks,
            done_bytes: self.done_bytes,
            read_bytes: self.done_read_bytes,
            failed: self.failed,
            rate_bytes_per_s: rate,
            last_mttr_ms: self.last_mttr.map(|d| d.as_millis() as u64),
            incident_open_ms: self
                .incident
                .as_ref()
                .map(|i| now.saturating_duration_since(i.died).as_millis() as u64),
            parallel: parallel as u32,
            incident: (self.traffic.open || self.traffic.chunks > 0).then(|| self.traffic.clone()),
        }
    }
}
