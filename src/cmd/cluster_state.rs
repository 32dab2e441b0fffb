//! What `dfs-sim up` shares with `kill` and `start`: the state file
//! `DIR/cluster.json` and the few process helpers all three need.
//!
//! There is no libc dependency: signals go through `/bin/kill`, and
//! liveness is read from `/proc` (zombies count as gone), falling back to
//! `kill -0` where there is no `/proc`.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where `up`, `kill` and `start` keep a cluster unless told otherwise.
pub const DEFAULT_DIR: &str = "dfs-data/cluster";
const STATE_FILE: &str = "cluster.json";
const LOCK_FILE: &str = "cluster.lock";
/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(50);

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
        self.state == ProcState::Running && self.pid.is_some_and(|pid| pid_runs(pid, &self.argv))
    }
}

/// The contents of `DIR/cluster.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The `dfs-sim up` process in charge.
    pub up_pid: u32,
    pub coord: Proc,
    pub nodes: Vec<Proc>,
    pub log_dir: PathBuf,
}

impl ClusterState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    pub fn from_json(s: &str) -> Result<Self> {
        Ok(serde_json::from_str(s)?)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the cluster state serializes") + "\n"
    }

    /// Reads `DIR/cluster.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no cluster in {} ({} not found); start one with `dfs-sim up --data {}`",
                dir.display(),
                path.display(),
                dir.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Self::from_json(&text).with_context(|| format!("{} is damaged", path.display()))
    }

    /// Writes `DIR/cluster.json` atomically (temporary file, then rename).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(format!("{STATE_FILE}.tmp{}", std::process::id()));
        std::fs::write(&tmp, self.to_json())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Read-modify-write under `DIR/cluster.lock`, so `up`, `kill` and
    /// `start` running at once do not lose each other's changes.
    pub fn update<T>(dir: &Path, f: impl FnOnce(&mut ClusterState) -> Result<T>) -> Result<T> {
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        let mut st = Self::load(dir)?;
        let out = f(&mut st)?;
        st.save(dir)?;
        Ok(out)
    }

    /// The node called `id`, or an error naming the ones there are.
    pub fn node(&self, id: &str) -> Result<&Proc> {
        self.nodes.iter().find(|n| n.id == id).ok_or_else(|| {
            let ids: Vec<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
            anyhow!(
                "unknown node {id:?} (this cluster has {})",
                if ids.is_empty() {
                    "no nodes".to_string()
                } else {
                    ids.join(", ")
                }
            )
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

    /// Every process (coordinator first).
    pub fn procs(&self) -> impl Iterator<Item = &Proc> {
        std::iter::once(&self.coord).chain(self.nodes.iter())
    }
}

/// Whether `pid` is a live (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    if Path::new("/proc/self/stat").exists() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // "pid (comm) S ...": the state follows the last ')'.
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next());
        return !matches!(state, Some('Z' | 'X') | None);
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `pid` is alive and (where `/proc` tells) still runs the command
/// of `argv`, so a recycled pid is not mistaken for ours. The subcommand and
/// the `--data` directory identify a cluster process (`--listen` may have
/// been port 0 when it started, and `argv` records the real port).
pub fn pid_runs(pid: u32, argv: &[String]) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => {
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.get(1) == argv.get(1) && flag(&args, "--data") == flag(argv, "--data")
        }
        Err(_) => true,
    }
}

/// The value after `name` in a command line.
pub fn flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .map(|s| s.as_str())
}

/// Sends `signal` (e.g. "TERM", "KILL") to `pid`.
pub fn send_signal(pid: u32, signal: &str) -> Result<()> {
    let kill = if Path::new("/bin/kill").exists() {
        "/bin/kill"
    } else {
        "kill"
    };
    let out = Command::new(kill)
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {kill}"))?;
    if !out.status.success() && pid_alive(pid) {
        bail!(
            "cannot send SIG{signal} to pid {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Waits until none of `pids` is alive; returns those still alive at the
/// deadline.
pub async fn wait_gone(pids: &[u32], within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// SIGTERM, a grace period, then SIGKILL for whatever is left. Returns the
/// pids that had to be killed.
pub async fn stop_pids(pids: &[u32], grace: Duration) -> Vec<u32> {
    for &pid in pids {
        if let Err(e) = send_signal(pid, "TERM") {
            tracing::warn!("{e:#}");
        }
    }
    let left = wait_gone(pids, grace).await;
    for &pid in &left {
        let _ = send_signal(pid, "KILL");
    }
    wait_gone(&left, Duration::from_secs(2)).await;
    left
}

/// The last non-empty line of a log, to explain why a process died.
pub fn last_log_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

/// Node ids and their states as the coordinator at `coord` sees them.
pub async fn node_states(coord: &str) -> Result<Vec<(String, protocol::NodeState)>> {
    let mut cfg = client::ClientConfig::new(coord);
    cfg.cred = super::client_credential(None, None)?;
    let s = client::CoordClient::connect(&cfg).await?.status().await?;
    Ok(s.nodes
        .into_iter()
        .map(|n| (n.id.as_str().to_string(), n.state))
        .collect())
}

/// Whether the coordinator reports every one of `ids` alive.
pub async fn all_alive(coord: &str, ids: &[&str]) -> bool {
    match node_states(coord).await {
        Ok(states) => ids.iter().all(|id| {
            states
                .iter()
                .any(|(n, s)| n == id && *s == protocol::NodeState::Alive)
        }),
        Err(_) => false,
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
        ClusterState::update(dir.path(), |s| {
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

    #[test]
    fn liveness() {
        let me = std::process::id();
        assert!(pid_alive(me));
        let argv: Vec<String> = std::env::args().collect();
        assert!(pid_runs(me, &argv));
        assert!(!pid_runs(me, &["x".into(), "node".into()]));
        // sh -c SCRIPT NAME ARGS: "--data /d/n1" stays in its command line.
        let mut sleeper = Command::new("sh")
            .args(["-c", "sleep 30; true", "--data", "/d/n1"])
            .spawn()
            .unwrap();
        let id = sleeper.id();
        let mut argv: Vec<String> = ["sh", "-c", "--listen", "x:1", "--data", "/d/n1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Right after fork the child still shows our own command line until
        // it execs: wait for the exec, with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !pid_runs(id, &argv) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            pid_runs(id, &argv),
            "{:?} {:?}",
            std::fs::read_to_string(format!("/proc/{id}/cmdline")),
            std::fs::read_to_string(format!("/proc/{id}/stat"))
        );
        argv[5] = "/d/n2".into();
        assert!(!pid_runs(id, &argv));
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        // A reaped child is gone.
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        assert!(!pid_alive(pid));
    }
}
