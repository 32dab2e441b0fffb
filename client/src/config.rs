//! Client configuration.

use protocol::{Credential, Scheme};

/// Where the cluster is and how hard to push it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Coordinator address (`--coord`, `DFS_COORD`, default 127.0.0.1:4000),
    /// or a coordinator group's members separated by commas.
    pub coord: String,
    /// A client key (`--key-file`, `DFS_KEY`), or the cluster secret for
    /// operator commands (`--secret-file`, `DFS_SECRET`).
    pub cred: Option<Credential>,
    /// Chunks in flight at once (read, encoded or on the wire). Peak memory
    /// is about `inflight` x 2 x chunk size, plus one chunk per parity of
    /// the file's scheme.
    pub inflight: usize,
    /// Scheme for files this client puts (`put --parity`); `None` takes the
    /// cluster's default.
    pub scheme: Option<Scheme>,
}

/// Where `dfs-sim` looks for the coordinator when told nothing.
pub const DEFAULT_COORD: &str = "127.0.0.1:4000";

impl ClientConfig {
    /// The coordinator addresses: one, or every member of a group
    /// (`a,b,c`).
    pub fn coord_addrs(&self) -> Vec<String> {
        self.coord
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn new(coord: impl Into<String>) -> Self {
        ClientConfig {
            coord: coord.into(),
            cred: None,
            inflight: 3,
            scheme: None,
        }
    }
}
