//! Node configuration.

use protocol::{NodeId, Secret};
use std::path::PathBuf;

/// Everything a node needs to run; built by the binary from flags.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Operator-given identity; the coordinator tracks chunks by it, so a node
    /// that restarts on another port keeps its chunks.
    pub id: NodeId,
    /// Chunk files live under `<data_dir>/chunks`, uploads in progress under
    /// `<data_dir>/tmp` (wiped at start), corrupt files under
    /// `<data_dir>/quarantine`.
    pub data_dir: PathBuf,
    /// The address clients and other nodes use to reach this node; usually
    /// the listen address.
    pub advertise: String,
    /// Coordinator to register with. Without it the node waits for the
    /// coordinator to attach (it was listed in `coord --nodes`).
    pub coord: Option<String>,
    /// Shared secret required of every peer, if the cluster has one.
    pub secret: Option<Secret>,
    /// Concurrent connections served; further ones wait in the accept queue.
    pub max_connections: usize,
    /// Free space kept in reserve: a put that would leave less is refused
    /// with a disk-full error before any byte is written.
    pub reserve_bytes: u64,
    /// Background scrub reads at most this many bytes per second, so
    /// verification never starves foreground traffic. 0 disables the
    /// background scrub (a pass asked for by `dfs-sim scrub` still runs).
    pub scrub_rate: u64,
    /// Time between the starts of two background scrub passes.
    pub scrub_interval: std::time::Duration,
    /// Repairs this node runs at once.
    pub repair_parallel: usize,
    /// Bytes the repairs running at once may hold in memory, by their
    /// estimate (a copy: the chunk; a rebuild: its output plus the member
    /// being folded in, stored and decompressed): keeps a node rebuilding
    /// wide stripes of 64 MiB chunks under 512 MiB whatever the number of
    /// orders. A repair larger than the budget runs alone.
    pub repair_memory: u64,
    /// Failure domain (rack, enclosure); empty means the node's own id.
    pub domain: String,
    /// A hot spare: the coordinator sends it no new writes, only repairs.
    pub spare: bool,
    /// Chunks of at most this many stored bytes are made durable in groups
    /// (one file-system sync for all that arrived meanwhile) rather than one
    /// fsync each; 0 fsyncs every chunk on its own. Group commit pays off
    /// for many small chunks on a disk of their own; on a file system other
    /// programs write heavily to, its syncs also flush their data.
    pub group_commit_max: u64,
}

impl NodeConfig {
    pub fn new(id: NodeId, data_dir: PathBuf, advertise: String) -> Self {
        NodeConfig {
            id,
            data_dir,
            advertise,
            coord: None,
            secret: None,
            max_connections: 512,
            reserve_bytes: 64 * 1024 * 1024,
            scrub_rate: 32 * 1024 * 1024,
            scrub_interval: std::time::Duration::from_secs(24 * 3600),
            repair_parallel: 4,
            repair_memory: 384 * 1024 * 1024,
            domain: String::new(),
            spare: false,
            group_commit_max: crate::store::GROUP_MAX_LEN,
        }
    }
}
