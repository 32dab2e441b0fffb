//! Starting a local cluster: the coordinator, then every node at once (each
//! waited for on its ready line), the whole recorded in `DIR/cluster.json`,
//! then waiting until the coordinator sees every node alive. `dfs-sim up`
//! and `dfs-sim chaos` start their clusters with it, so both build the same
//! command lines, lay out `DIR` the same way (`coord/`, `<id>/`, `logs/`)
//! and fail the same way when a process dies on the way.

use crate::error::{Error, Result};
use crate::process::all_alive;
use crate::spawn::{spawn, Started};
use crate::state::ClusterState;
use crate::POLL;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One node to start.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: String,
    /// `--listen` (`127.0.0.1:0` lets the OS choose).
    pub listen: String,
    /// `--coord`: the coordinator's address, or a proxy in front of it.
    pub coord: String,
    /// Further flags (`--domain`, `--spare`...).
    pub extra: Vec<String>,
}

/// Starts the processes of one cluster under `dir` from the binary `exe`;
/// every pid is pushed on `pids` as soon as it exists, so the caller can
/// stop them all if anything fails.
pub struct Starter<'a> {
    pub exe: &'a str,
    pub dir: &'a Path,
    /// Who starts them (`up`, `chaos`), written at the top of each log.
    pub who: &'a str,
    pub pids: &'a mut Vec<u32>,
}

impl Starter<'_> {
    /// `DIR/logs`, created if missing.
    pub fn log_dir(&self) -> Result<PathBuf> {
        let d = self.dir.join("logs");
        std::fs::create_dir_all(&d).map_err(Error::io(format!("cannot create {}", d.display())))?;
        Ok(d)
    }

    /// `coord --listen LISTEN --data DIR/coord EXTRA...`, once it is ready.
    pub async fn coord(&mut self, listen: &str, extra: &[String]) -> Result<Started> {
        let mut argv = vec![
            self.exe.to_string(),
            "coord".into(),
            "--listen".into(),
            listen.to_string(),
            "--data".into(),
            self.dir.join("coord").to_string_lossy().into_owned(),
        ];
        argv.extend(extra.iter().cloned());
        let log = self.log_dir()?.join("coord.log");
        spawn(self.who, "coord", argv, &log, self.pids)?
            .ready()
            .await
    }

    /// One member of a coordinator group: `coord --id NAME --peers PEERS
    /// --listen LISTEN --data DIR/NAME EXTRA...`, once it is ready.
    pub async fn coord_member(
        &mut self,
        name: &str,
        listen: &str,
        peers: &str,
        extra: &[String],
    ) -> Result<Started> {
        let mut argv = vec![
            self.exe.to_string(),
            "coord".into(),
            "--id".into(),
            name.to_string(),
            "--peers".into(),
            peers.to_string(),
            "--listen".into(),
            listen.to_string(),
            "--data".into(),
            self.dir.join(name).to_string_lossy().into_owned(),
        ];
        argv.extend(extra.iter().cloned());
        let log = self.log_dir()?.join(format!("{name}.log"));
        spawn(self.who, name, argv, &log, self.pids)?.ready().await
    }

    /// Every node at once (`node --id ID --listen L --data DIR/ID --coord C
    /// EXTRA...`), returned ready, in order.
    pub async fn nodes(&mut self, nodes: Vec<NodeSpec>) -> Result<Vec<Started>> {
        let log_dir = self.log_dir()?;
        let mut pending = Vec::new();
        for n in nodes {
            let mut argv = vec![
                self.exe.to_string(),
                "node".into(),
                "--id".into(),
                n.id.clone(),
                "--listen".into(),
                n.listen,
                "--data".into(),
                self.dir.join(&n.id).to_string_lossy().into_owned(),
                "--coord".into(),
                n.coord,
            ];
            argv.extend(n.extra);
            let log = log_dir.join(format!("{}.log", n.id));
            pending.push(spawn(self.who, &n.id, argv, &log, self.pids)?);
        }
        let mut ready = Vec::new();
        for p in pending {
            ready.push(p.ready().await?);
        }
        Ok(ready)
    }

    /// Records the started processes in `DIR/cluster.json`, this process in
    /// charge.
    pub fn record(&self, coord: &Started, nodes: &[Started]) -> Result<ClusterState> {
        self.record_group(coord, &[], nodes)
    }

    /// [`Starter::record`] for a coordinator group: `coord` is its first
    /// member, `members` the others.
    pub fn record_group(
        &self,
        coord: &Started,
        members: &[Started],
        nodes: &[Started],
    ) -> Result<ClusterState> {
        let state = ClusterState {
            up_pid: std::process::id(),
            coord: coord.proc.clone(),
            members: members.iter().map(|m| m.proc.clone()).collect(),
            nodes: nodes.iter().map(|n| n.proc.clone()).collect(),
            log_dir: self.dir.join("logs"),
        };
        state.save(self.dir)?;
        Ok(state)
    }
}

/// Waits until the coordinator at `coord` reports every node of `ids`
/// alive; fails at once when one of `children` exits, and after `within`.
pub async fn wait_alive(
    coord: &str,
    cred: Option<protocol::Credential>,
    ids: &[&str],
    children: &mut [Started],
    within: Duration,
    log_dir: &Path,
) -> Result<()> {
    let deadline = Instant::now() + within;
    while !all_alive(coord, cred.clone(), ids).await {
        for c in children.iter_mut() {
            if let Ok(Some(status)) = c.child.try_wait() {
                return Err(c.proc.died(&status.to_string()));
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::NotAlive {
                nodes: ids.len(),
                secs: within.as_secs(),
                logs: log_dir.to_path_buf(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}
