//! Coordinator configuration.

use protocol::{Scheme, Secret};
use std::path::PathBuf;
use std::time::Duration;

/// Everything the coordinator needs; built by the binary from flags.
#[derive(Debug, Clone)]
pub struct CoordConfig {
    /// Holds `catalog.snap` and `journal.log`.
    pub data_dir: PathBuf,
    /// Nodes to attach to at start (they need no `--coord` of their own).
    pub nodes: Vec<String>,
    /// Copies of every data chunk, on distinct nodes.
    pub replication: u32,
    /// Default erasure code of new files (a put may name another).
    pub scheme: Scheme,
    /// Data chunks per `xor` stripe; `None` picks one from the live node
    /// count. Other schemes fix their own width.
    pub stripe: Option<u32>,
    /// Enclosure-level HA: every stripe must survive the loss of any one
    /// whole failure domain, or the put is refused.
    pub ha: bool,
    /// Raw bytes per chunk (the last chunk of a file may be shorter).
    pub chunk_size: u64,
    /// How often nodes heartbeat.
    pub heartbeat: Duration,
    /// Heartbeats missed in a row before a node is declared dead.
    pub dead_after: u32,
    /// Shared secret every peer must prove, if any.
    pub secret: Option<Secret>,
    /// Journal records between snapshots: bounds replay time after a crash.
    pub snapshot_every: u64,
    /// Repairs (chunk copies or rebuilds) running at once across the
    /// cluster: high enough to heal fast, bounded so foreground reads and
    /// writes keep their share of disks and network.
    pub repair_parallel: usize,
    /// A repair not reported done by then is re-planned elsewhere.
    pub repair_timeout: Duration,
}

impl CoordConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        CoordConfig {
            data_dir,
            nodes: Vec::new(),
            replication: 2,
            scheme: Scheme::Xor {
                k: codes::DEFAULT_XOR_K,
            },
            stripe: None,
            ha: false,
            chunk_size: 64 * 1024 * 1024,
            heartbeat: Duration::from_secs(3),
            dead_after: 3,
            secret: None,
            snapshot_every: 1024,
            repair_parallel: 8,
            repair_timeout: Duration::from_secs(120),
        }
    }

    /// How long without a heartbeat before a node is dead.
    pub fn dead_timeout(&self) -> Duration {
        self.heartbeat * self.dead_after.max(1)
    }
}
