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
    /// Placement policy of new stripes (`--placement`; random by default).
    pub placement: decide::placement::Placement,
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
    /// Copies a node holds that the catalog does not know are set aside,
    /// and deleted only after this long (and only while the catalog is known
    /// complete for that node): a coordinator started on the wrong or an
    /// old directory, or a journal that lost records, costs nothing.
    pub orphan_grace: Duration,
    /// Copies of removed or replaced files are deleted this long after the
    /// change, so a reader that looked the file up before finishes
    /// byte-exact (GFS's lazy deletion).
    pub delete_grace: Duration,
    /// Bytes per second rebalancing may move (copies in flight are also
    /// bounded): background work that leaves the disks and network to
    /// clients and repairs.
    pub rebalance_rate: u64,
    /// Start rebalancing on its own when an empty node joins or an
    /// imbalance persists (`dfs-sim rebalance` works either way).
    pub auto_rebalance: bool,
    /// Keep the valid journal records on both sides of a damaged entry.
    pub recover: bool,
    /// Serve what the catalog holds and change nothing: no journal writes,
    /// no repairs, no deletes (for inspecting a damaged journal).
    pub read_only: bool,
    /// How long a read token granted by `Lookup` stays valid: the bound on
    /// how long a revoked client key can go on reading chunks it was
    /// granted (clients renew tokens for reads that last longer).
    pub read_token_ttl: Duration,
    /// Most uploads planned and not yet committed, in all.
    pub max_uploads: usize,
    /// Most uploads one peer (client key, or address without keys) may have
    /// open at once.
    pub max_uploads_per_peer: usize,
    /// Most chunks planned across all open uploads: bounds the memory a
    /// flood of huge plans can take.
    pub max_planned_chunks: u64,
    /// Membership of a coordinator group (`--id`, `--peers`): the catalog
    /// is replicated on Raft and only the leader serves. `None`: a single
    /// coordinator with its own journal.
    pub group: Option<crate::group::peers::GroupConfig>,
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
            placement: decide::placement::Placement::Random,
            chunk_size: 64 * 1024 * 1024,
            heartbeat: Duration::from_secs(3),
            dead_after: 3,
            secret: None,
            snapshot_every: 1024,
            repair_parallel: 8,
            repair_timeout: Duration::from_secs(120),
            orphan_grace: Duration::from_secs(24 * 3600),
            delete_grace: Duration::from_secs(60),
            rebalance_rate: 64 * 1024 * 1024,
            auto_rebalance: true,
            recover: false,
            read_only: false,
            read_token_ttl: Duration::from_secs(300),
            max_uploads: 1024,
            max_uploads_per_peer: 128,
            max_planned_chunks: 262_144,
            group: None,
        }
    }

    /// How long without a heartbeat before a node is dead.
    pub fn dead_timeout(&self) -> Duration {
        self.heartbeat * self.dead_after.max(1)
    }

    /// Whether peers must prove who they are (a secret is configured).
    pub fn secured(&self) -> bool {
        self.secret.is_some()
    }
}
