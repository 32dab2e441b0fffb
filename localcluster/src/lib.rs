//! Local clusters of the real `dfs-sim` binary: the state file
//! `DIR/cluster.json`, starting a process and waiting for its ready line,
//! signals and liveness, and starting a whole cluster (`Starter`).
//!
//! Shared by `dfs-sim up`/`kill`/`start` and by `dfs-sim chaos`, which
//! starts, crashes and restarts the same processes the same way, so that
//! what chaos tests is exactly what a user runs.
//!
//! There is no libc dependency: signals go through `/bin/kill`, and
//! liveness is read from `/proc` (zombies count as gone), falling back to
//! `kill -0` where there is no `/proc`.

mod error;
mod process;
mod spawn;
mod start;
mod state;

pub use error::{Error, Result};
pub use process::{
    all_alive, flag, last_log_line, node_states, pid_alive, pid_runs, send_signal, stop_pids,
    wait_gone,
};
pub use spawn::{parse_ready, ready_fields, spawn, Pending, Started, READY_TIMEOUT};
pub use start::{wait_alive, NodeSpec, Starter};
pub use state::{ClusterState, Proc, ProcState, DEFAULT_DIR};

/// How often conditions are polled.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(50);
