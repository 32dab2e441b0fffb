//! `DIR/cluster.json`: what `up` started, so that `kill`, `start` and
//! `chaos --attach` find the processes, their addresses and command lines.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where `up`, `kill` and `start` keep a cluster unless told otherwise.
pub const DEFAULT_DIR: &str = "dfs-data/cluster";
const STATE_FILE: &str = "cluster.json";
const LOCK_FILE: &str = "cluster.lock";

/// Whether a recorded process should be running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcState {
    Running,
    /// Stopped by `dfs-sim kill` (or by `up` on exit).
    Stopped,
    /// Exited without being asked to.
    Exited,
}

/// One process of the cluster: the coordinator or a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// `coord`, or the node id.
    pub id: String,
    pub addr: String,
    pub data: PathBuf,
    pub log: PathBuf,
    pub state: ProcState,
    /// The last pid it ran as (kept when stopped, for the record).
    pub pid: Option<u32>,
    /// The exact command line, program first; `start` reruns it.
    pub argv: Vec<String>,
}

impl Proc {
    /// Recorded as running and its pid still runs this command line.
    pub fn is_running(&self) -> bool {
        self.state == ProcState::Running
            && self
                .pid
                .is_some_and(|pid| crate::process::pid_runs(pid, &self.argv))
    }
}

/// The contents of `DIR/cluster.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The `dfs-sim up` process in charge.
    pub up_pid: u32,
    pub coord: Proc,
    /// The other members of a coordinator group (`up --coordinators N`;
    /// `coord` is the first), empty for a single coordinator.
    #[serde(default)]
    pub members: Vec<Proc>,
    pub nodes: Vec<Proc>,
    pub log_dir: PathBuf,
}

impl ClusterState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the cluster state serializes") + "\n"
    }

    /// Reads `DIR/cluster.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoCluster {
                    dir: dir.display().to_string(),
                    path: path.display().to_string(),
                })
            }
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()))(e)),
        };
        Self::from_json(&text).map_err(|source| Error::Damaged {
            path: path.display().to_string(),
            source,
        })
    }

    /// Writes `DIR/cluster.json` atomically (temporary file, then rename).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(format!("{STATE_FILE}.tmp{}", std::process::id()));
        std::fs::write(&tmp, self.to_json())
            .map_err(Error::io(format!("cannot write {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(Error::io(format!("cannot write {}", path.display())))
    }

    /// Read-modify-write under `DIR/cluster.lock`, so `up`, `kill`, `start`
    /// and `chaos` running at once do not lose each other's changes.
    pub fn update<T, E: From<Error>>(
        dir: &Path,
        f: impl FnOnce(&mut ClusterState) -> Result<T, E>,
    ) -> Result<T, E> {
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io(format!("cannot open {}", lock_path.display())))?;
        lock.lock()
            .map_err(Error::io(format!("cannot lock {}", lock_path.display())))?;
        let mut st = Self::load(dir)?;
        let out = f(&mut st)?;
        st.save(dir)?;
        Ok(out)
    }

    /// The node called `id`, or an error naming the ones there are.
    pub fn node(&self, id: &str) -> Result<&Proc> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| Error::UnknownNode {
                id: id.to_string(),
                known: if self.nodes.is_empty() {
                    "no nodes".to_string()
                } else {
                    let ids: Vec<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
                    ids.join(", ")
                },
            })
    }

    pub fn node_mut(&mut self, id: &str) -> Result<&mut Proc> {
        self.node(id)?;
        Ok(self
            .nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("found above"))
    }

    /// Any process by id: `coord` (or the first member's name), another
    /// coordinator group member, or a node.
    pub fn proc(&self, id: &str) -> Result<&Proc> {
        if id == "coord" || self.coord.id == id {
            return Ok(&self.coord);
        }
        match self.members.iter().find(|m| m.id == id) {
            Some(m) => Ok(m),
            None => self.node(id),
        }
    }

    /// [`ClusterState::proc`], to change.
    pub fn proc_mut(&mut self, id: &str) -> Result<&mut Proc> {
        if id == "coord" || self.coord.id == id {
            return Ok(&mut self.coord);
        }
        if self.members.iter().any(|m| m.id == id) {
            return Ok(self
                .members
                .iter_mut()
                .find(|m| m.id == id)
                .expect("found above"));
        }
        self.node_mut(id)
    }

    /// Every process (coordinator first).
    pub fn procs(&self) -> impl Iterator<Item = &Proc> {
        std::iter::once(&self.coord)
            .chain(self.members.iter())
            .chain(self.nodes.iter())
    }

    /// Where clients reach the coordinator: its address, or every member's
    /// (`a,b,c`) for a group.
    pub fn coord_list(&self) -> String {
        std::iter::once(&self.coord)
            .chain(self.members.iter())
            .map(|p| p.addr.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(id: &str, pid: Option<u32>) -> Proc {
        Proc {
            id: id.into(),
            addr: "127.0.0.1:4001".into(),
            data: PathBuf::from(format!("/tmp/c/{id}")),
            log: PathBuf::from(format!("/tmp/c/logs/{id}.log")),
            state: if pid.is_some() {
                ProcState::Running
            } else {
                ProcState::Stopped
            },
            pid,
            argv: vec![
                "/bin/dfs-sim".into(),
                "node".into(),
                "--id".into(),
                id.into(),
            ],
        }
    }

    fn sample() -> ClusterState {
        ClusterState {
            up_pid: 10,
            coord: proc("coord", Some(11)),
            members: Vec::new(),
            nodes: vec![proc("n1", Some(12)), proc("n2", None)],
            log_dir: "/tmp/c/logs".into(),
        }
    }

    #[test]
    fn json_round_trip() {
        let st = sample();
        let text = st.to_json();
        assert!(text.contains("\"state\": \"stopped\""), "{text}");
        assert_eq!(ClusterState::from_json(&text).unwrap(), st);
    }

    #[test]
    fn save_load_update() {
        let dir = tempfile::tempdir().unwrap();
        let err = ClusterState::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no cluster in"), "{err}");
        sample().save(dir.path()).unwrap();
        ClusterState::update(dir.path(), |s| -> Result<()> {
            let n = s.node_mut("n2")?;
            n.pid = Some(99);
            n.state = ProcState::Running;
            Ok(())
        })
        .unwrap();
        let back = ClusterState::load(dir.path()).unwrap();
        assert_eq!(back.node("n2").unwrap().pid, Some(99));
        assert_eq!(back.node("n2").unwrap().state, ProcState::Running);
        assert_eq!(back.procs().count(), 3);
    }

    #[test]
    fn unknown_node_names_the_known_ones() {
        let err = sample().node("n9").unwrap_err().to_string();
        assert_eq!(err, "unknown node \"n9\" (this cluster has n1, n2)");
    }
}
