//! `dfs-sim start NODE`: restart a node stopped with `dfs-sim kill` (or that
//! exited), with the same id, address and data directory.

use super::cluster_state::{all_alive, last_log_line, ClusterState, ProcState, DEFAULT_DIR, POLL};
use anyhow::{anyhow, bail, Context, Result};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long the coordinator may take to see the node alive.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The node to start (e.g. n1).
    pub node: String,
    /// The cluster's directory (as given to `dfs-sim up`).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub data: PathBuf,
}

pub async fn run(a: Args) -> Result<()> {
    let dir = a.data.as_path();
    let t0 = Instant::now();
    let (mut child, node) = ClusterState::update(dir, |s| -> Result<_> {
        if !s.coord.is_running() {
            bail!(
                "the cluster in {} is not running (no coordinator); start it with `dfs-sim up --data {}`",
                dir.display(),
                dir.display()
            );
        }
        let n = s.node_mut(&a.node)?;
        if n.is_running() {
            bail!(
                "{} is already running (pid {})",
                n.id,
                n.pid.unwrap_or_default()
            );
        }
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&n.log)
            .with_context(|| format!("cannot open {}", n.log.display()))?;
        let _ = writeln!(log, "--- dfs-sim start: {}", n.argv.join(" "));
        let mut cmd = std::process::Command::new(&n.argv[0]);
        cmd.args(&n.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        // Out of the terminal's process group: it outlives this command and
        // Ctrl-C here; `dfs-sim up` stops it on exit.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} ({})", n.id, n.argv[0]))?;
        n.pid = Some(child.id());
        n.state = ProcState::Running;
        Ok((child, n.clone()))
    })?;
    let pid = child.id();
    let ids = [node.id.as_str()];
    let coord = ClusterState::load(dir)?.coord.addr;
    let deadline = Instant::now() + ALIVE_TIMEOUT;
    while !all_alive(&coord, &ids).await {
        if let Some(status) = child.try_wait()? {
            ClusterState::update(dir, |s| -> Result<_> {
                let n = s.node_mut(&node.id)?;
                if n.pid == Some(pid) {
                    n.state = ProcState::Exited;
                }
                Ok(())
            })?;
            let last = last_log_line(&node.log)
                .map(|l| format!(": {l}"))
                .unwrap_or_default();
            return Err(anyhow!(
                "{} exited at once ({status}); see {}{last}",
                node.id,
                node.log.display()
            ));
        }
        if Instant::now() >= deadline {
            bail!(
                "{} (pid {pid}) is running but the coordinator at {coord} has not seen it alive within {} s; see {}",
                node.id,
                ALIVE_TIMEOUT.as_secs(),
                node.log.display()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    outln!(
        "{} started on {}, pid {pid}, alive after {:.2} s",
        node.id,
        node.addr,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
