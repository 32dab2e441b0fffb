//! `dfs-sim kill NODE`: stop one node of a cluster started by `dfs-sim up`.

use super::cluster_state::{
    node_states, send_signal, wait_gone, ClusterState, ProcState, DEFAULT_DIR, POLL,
};
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The node to stop (e.g. n1).
    pub node: String,
    /// The cluster's directory (as given to `dfs-sim up`).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub data: PathBuf,
    /// Crash it (SIGKILL) instead of asking it to stop (SIGTERM).
    #[arg(long)]
    pub hard: bool,
}

pub async fn run(a: Args) -> Result<()> {
    let dir = a.data.as_path();
    // Record it stopped before signalling, so `up` does not report the exit
    // as unexpected.
    let (pid, coord) = ClusterState::update(dir, |s| -> Result<_> {
        let coord = s.coord.addr.clone();
        let n = s.node_mut(&a.node)?;
        if !n.is_running() {
            let was = n.state;
            n.state = ProcState::Stopped;
            match was {
                ProcState::Running => bail!(
                    "{} is not running (pid {} is gone); `dfs-sim start {}` starts it",
                    n.id,
                    n.pid.unwrap_or_default(),
                    n.id
                ),
                ProcState::Exited => bail!(
                    "{} is not running (it exited on its own); `dfs-sim start {}` starts it",
                    n.id,
                    n.id
                ),
                ProcState::Stopped => bail!("{} is already stopped", n.id),
            }
        }
        // cluster.json is a file a person can edit: a running entry without
        // a pid is an error, not a panic.
        let Some(pid) = n.pid else {
            bail!("{} is marked running in cluster.json but has no pid", n.id);
        };
        n.state = ProcState::Stopped;
        Ok((pid, coord))
    })?;
    let signal = if a.hard { "KILL" } else { "TERM" };
    if let Err(e) = send_signal(pid, signal) {
        ClusterState::update(dir, |s| -> Result<_> {
            s.node_mut(&a.node)?.state = ProcState::Running;
            Ok(())
        })?;
        return Err(e.into());
    }
    let mut how = if a.hard {
        "crashed (SIGKILL)"
    } else {
        "stopped (SIGTERM)"
    };
    if !wait_gone(&[pid], Duration::from_secs(10)).await.is_empty() {
        send_signal(pid, "KILL")?;
        if !wait_gone(&[pid], Duration::from_secs(2)).await.is_empty() {
            bail!("{} (pid {pid}) does not exit, even after SIGKILL", a.node);
        }
        how = "killed (SIGKILL after SIGTERM timed out)";
    }
    // Let the coordinator notice, so a `start` right after waits for the
    // new process rather than seeing the old session.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match node_states(&coord).await {
            Ok(st)
                if st
                    .iter()
                    .any(|(id, s)| *id == a.node && *s == protocol::NodeState::Alive) => {}
            _ => break,
        }
        tokio::time::sleep(POLL).await;
    }
    outln!("{} {how}, pid {pid}", a.node);
    Ok(())
}
