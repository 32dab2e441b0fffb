//! What `dfs-sim up` shares with `kill` and `start`: the `localcluster`
//! crate (also used by `chaos`), plus liveness queries that read the secret
//! the way every client command does.

pub use localcluster::{
    last_log_line, pid_alive, pid_runs, send_signal, stop_pids, wait_gone, ClusterState, ProcState,
    DEFAULT_DIR, POLL,
};

use anyhow::Result;

/// Node ids and their states as the coordinator at `coord` sees them.
pub async fn node_states(coord: &str) -> Result<Vec<(String, protocol::NodeState)>> {
    Ok(localcluster::node_states(coord, super::client_credential(None, None)?).await?)
}

/// Whether the coordinator reports every one of `ids` alive.
pub async fn all_alive(coord: &str, ids: &[&str]) -> bool {
    match super::client_credential(None, None) {
        Ok(cred) => localcluster::all_alive(coord, cred, ids).await,
        Err(_) => false,
    }
}
