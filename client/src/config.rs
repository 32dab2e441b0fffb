//! Client configuration.

use protocol::Credential;

/// Where the cluster is and how hard to push it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Coordinator address (`--coord`, `DFS_COORD`, default 127.0.0.1:4000).
    pub coord: String,
    /// A client key (`--key-file`, `DFS_KEY`), or the cluster secret for
    /// operator commands (`--secret-file`, `DFS_SECRET`).
    pub cred: Option<Credential>,
    /// Chunks in flight at once (read, encoded or on the wire). Peak memory
    /// is about `inflight` x 2 x chunk size, plus one chunk for parity.
    pub inflight: usize,
}

/// Where `dfs-sim` looks for the coordinator when told nothing.
pub const DEFAULT_COORD: &str = "127.0.0.1:4000";

impl ClientConfig {
    pub fn new(coord: impl Into<String>) -> Self {
        ClientConfig {
            coord: coord.into(),
            cred: None,
            inflight: 3,
        }
    }
}
