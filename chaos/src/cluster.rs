//! The cluster under test: processes of the real `dfs-sim` binary, either
//! started here (coordinator, one proxy per node, nodes) or attached to
//! from a `dfs-sim up` directory. Either way `cluster.json` is the record of
//! what runs, kept up to date with the `localcluster` code `up`, `kill` and
//! `start` use, so `up` sees our kills as deliberate and stops our restarts
//! when it exits.

use crate::error::{Error, Result};
use crate::proxy::Proxy;
use localcluster::{send_signal, spawn, wait_gone, ClusterState, ProcState};
use protocol::Credential;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the nodes may take to be seen alive after the cluster starts.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// How chaos starts its own cluster.
#[derive(Debug, Clone)]
pub struct OwnCluster {
    pub exe: PathBuf,
    pub nodes: u32,
    pub replication: u32,
    pub parity: String,
    pub chunk_size: String,
    pub heartbeat_ms: u64,
    /// Coordinators: 1, or the members of a group (c1..cN).
    pub coordinators: u32,
}

pub struct Cluster {
    /// Where `cluster.json` is.
    pub dir: PathBuf,
    pub secret: Option<Credential>,
    /// Started here (stopped at the end) rather than attached to.
    pub own: bool,
    /// Per node, in `cluster.json` order; only for nodes started here.
    proxies: Vec<Option<Proxy>>,
    /// What the proxies forward to.
    coord_target: Arc<Mutex<String>>,
    pub node_ids: Vec<String>,
    /// The coordinator group's member names (c1..cN), empty for one
    /// coordinator.
    pub members: Vec<String>,
}

impl Cluster {
    /// Starts a coordinator, a proxy per node and the nodes under `dir`, and
    /// records them in `dir/cluster.json`.
    pub async fn start(dir: &Path, o: &OwnCluster) -> Result<Cluster> {
        let log_dir = dir.join("logs");
        std::fs::create_dir_all(&log_dir)
            .map_err(Error::io(format!("cannot create {}", log_dir.display())))?;
        let exe = o.exe.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        let res = Self::start_procs(dir, &log_dir, &exe, o, &mut pids).await;
        if res.is_err() {
            localcluster::stop_pids(&pids, Duration::from_secs(5)).await;
        }
        res
    }

    async fn start_procs(
        dir: &Path,
        log_dir: &Path,
        exe: &str,
        o: &OwnCluster,
        pids: &mut Vec<u32>,
    ) -> Result<Cluster> {
        let s = |x: &str| x.to_string();
        let flags = vec![
            s("--replication"),
            o.replication.to_string(),
            s("--parity"),
            o.parity.clone(),
            s("--chunk-size"),
            o.chunk_size.clone(),
            s("--heartbeat-ms"),
            o.heartbeat_ms.to_string(),
            // Short grace periods, so that a run's deletes and set-aside
            // copies are gone by the time orphans are counted.
            s("--delete-grace"),
            s("1s"),
            s("--orphan-grace"),
            s("5s"),
        ];
        let mut start = localcluster::Starter {
            exe,
            dir,
            who: "chaos",
            pids,
        };
        if o.coordinators > 1 {
            return Self::start_group(dir, log_dir, &mut start, o, &flags).await;
        }
        let coord = start.coord("127.0.0.1:0", &flags).await?;
        let coord_target = Arc::new(Mutex::new(coord.proc.addr.clone()));
        // A proxy between each node and the coordinator, for partitions.
        let mut proxies = Vec::new();
        let mut specs = Vec::new();
        for i in 1..=o.nodes {
            let proxy = Proxy::start(coord_target.clone()).await?;
            specs.push(localcluster::NodeSpec {
                id: format!("n{i}"),
                listen: s("127.0.0.1:0"),
                coord: proxy.addr.clone(),
                extra: Vec::new(),
            });
            proxies.push(Some(proxy));
        }
        let nodes = start.nodes(specs).await?;
        let state = start.record(&coord, &nodes)?;
        let node_ids: Vec<String> = state.nodes.iter().map(|n| n.id.clone()).collect();
        let ids: Vec<&str> = node_ids.iter().map(|s| s.as_str()).collect();
        let mut children: Vec<localcluster::Started> =
            std::iter::once(coord).chain(nodes).collect();
        localcluster::wait_alive(
            &state.coord.addr,
            None,
            &ids,
            &mut children,
            ALIVE_TIMEOUT,
            log_dir,
        )
        .await?;
        for c in children {
            reap(c.child);
        }
        Ok(Cluster {
            dir: dir.to_path_buf(),
            secret: None,
            own: true,
            proxies,
            coord_target,
            node_ids,
            members: Vec::new(),
        })
    }

    /// A coordinator group (c1..cN) and nodes that know every member. No
    /// proxies: partitions of nodes are skipped (the group's own faults are
    /// leader kill, pause and a follower's wiped disk).
    async fn start_group(
        dir: &Path,
        log_dir: &Path,
        start: &mut localcluster::Starter<'_>,
        o: &OwnCluster,
        flags: &[String],
    ) -> Result<Cluster> {
        let addrs: Vec<String> = (0..o.coordinators)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.to_string())
                    .map_err(Error::io("cannot pick a port".to_string()))
            })
            .collect::<Result<_>>()?;
        let names: Vec<String> = (1..=o.coordinators).map(|i| format!("c{i}")).collect();
        let peers = names
            .iter()
            .zip(&addrs)
            .map(|(n, a)| format!("{n}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (n, a) in names.iter().zip(&addrs) {
            members.push(start.coord_member(n, a, &peers, flags).await?);
        }
        let list = addrs.join(",");
        let specs = (1..=o.nodes)
            .map(|i| localcluster::NodeSpec {
                id: format!("n{i}"),
                listen: "127.0.0.1:0".to_string(),
                coord: list.clone(),
                extra: Vec::new(),
            })
            .collect();
        let nodes = start.nodes(specs).await?;
        let first = members.remove(0);
        let state = start.record_group(&first, &members, &nodes)?;
        let node_ids: Vec<String> = state.nodes.iter().map(|n| n.id.clone()).collect();
        let ids: Vec<&str> = node_ids.iter().map(|s| s.as_str()).collect();
        let mut children: Vec<localcluster::Started> =
            std::iter::once(first).chain(members).chain(nodes).collect();
        localcluster::wait_alive(&list, None, &ids, &mut children, ALIVE_TIMEOUT, log_dir).await?;
        for c in children {
            reap(c.child);
        }
        Ok(Cluster {
            dir: dir.to_path_buf(),
            secret: None,
            own: true,
            proxies: node_ids.iter().map(|_| None).collect(),
            coord_target: Arc::new(Mutex::new(list)),
            node_ids,
            members: names,
        })
    }

    /// The group's leader and one follower right now, by asking the members.
    pub async fn leader_and_follower(&self) -> Result<(String, String)> {
        let mut c = client::CoordClient::connect(&self.client_config())
            .await
            .map_err(|e| Error::Setup(e.to_string()))?;
        let g = c
            .coordinators()
            .await
            .map_err(|e| Error::Setup(e.to_string()))?;
        let leader = g
            .leader
            .ok_or_else(|| Error::Setup("the group has no leader right now".into()))?;
        let follower = self
            .members
            .iter()
            .find(|m| **m != leader)
            .cloned()
            .ok_or_else(|| Error::Setup("no follower".into()))?;
        Ok((leader, follower))
    }

    /// Wipes a member's data directory (it is stopped first and restarted
    /// by the caller): it must rejoin by snapshot.
    pub fn wipe(&self, id: &str) -> Result<()> {
        let data = self.state()?.proc(id)?.data.clone();
        std::fs::remove_dir_all(&data).map_err(Error::io(format!("cannot wipe {}", data.display())))
    }

    /// A cluster started by `dfs-sim up --data DIR`.
    pub async fn attach(dir: &Path, secret: Option<Credential>) -> Result<Cluster> {
        let st = ClusterState::load(dir)?;
        if !st.coord.is_running() {
            return Err(Error::Setup(format!(
                "the cluster in {} has no running coordinator; start it with `dfs-sim up --data {}`",
                dir.display(),
                dir.display()
            )));
        }
        let c = Cluster {
            dir: dir.to_path_buf(),
            secret,
            own: false,
            proxies: st.nodes.iter().map(|_| None).collect(),
            coord_target: Arc::new(Mutex::new(st.coord_list())),
            node_ids: st.nodes.iter().map(|n| n.id.clone()).collect(),
            members: if st.members.is_empty() {
                Vec::new()
            } else {
                std::iter::once(&st.coord)
                    .chain(st.members.iter())
                    .map(|p| p.id.clone())
                    .collect()
            },
        };
        c.wait_all_alive(ALIVE_TIMEOUT).await?;
        Ok(c)
    }

    pub fn state(&self) -> Result<ClusterState> {
        Ok(ClusterState::load(&self.dir)?)
    }

    pub fn coord_addr(&self) -> String {
        self.coord_target
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    pub fn client_config(&self) -> client::ClientConfig {
        let mut cfg = client::ClientConfig::new(self.coord_addr());
        cfg.cred = self.secret.clone();
        cfg
    }

    pub fn has_proxies(&self) -> bool {
        self.proxies.iter().all(|p| p.is_some()) && !self.proxies.is_empty()
    }

    /// Data directory of node `i`.
    pub fn node_data(&self, i: usize) -> Result<PathBuf> {
        Ok(self.state()?.node(&self.node_ids[i])?.data.clone())
    }

    pub async fn wait_all_alive(&self, within: Duration) -> Result<()> {
        let ids: Vec<&str> = self.node_ids.iter().map(|s| s.as_str()).collect();
        let logs = self.dir.join("logs");
        localcluster::wait_alive(
            &self.coord_addr(),
            self.secret.clone(),
            &ids,
            &mut [],
            within,
            &logs,
        )
        .await?;
        Ok(())
    }

    /// SIGKILLs process `id` ("coord" or a node), recorded as stopped first
    /// so that `up` does not report it as a crash.
    pub async fn kill(&self, id: &str) -> Result<()> {
        let pid = ClusterState::update(&self.dir, |s| -> Result<Option<u32>> {
            let p = s.proc_mut(id)?;
            let running = p.is_running();
            p.state = ProcState::Stopped;
            Ok(if running { p.pid } else { None })
        })?;
        if let Some(pid) = pid {
            // A stopped process cannot die until it is continued.
            send_signal(pid, "KILL")?;
            let _ = send_signal(pid, "CONT");
            if !wait_gone(&[pid], Duration::from_secs(10)).await.is_empty() {
                return Err(Error::Setup(format!("{id} (pid {pid}) survives SIGKILL")));
            }
        }
        Ok(())
    }

    /// Starts process `id` again with its recorded command line, plus
    /// `extra` arguments (later flags win), and waits for its ready line.
    pub async fn restart(&self, id: &str, extra: &[String]) -> Result<()> {
        let st = self.state()?;
        let p = st.proc(id)?.clone();
        let mut argv = p.argv.clone();
        for pair in extra.chunks(2) {
            match argv.iter().position(|a| *a == pair[0]) {
                Some(i) if pair.len() == 2 => argv[i + 1] = pair[1].clone(),
                _ => argv.extend(pair.iter().cloned()),
            }
        }
        let mut pids = Vec::new();
        let started = spawn("chaos", id, argv, &p.log, &mut pids)?.ready().await?;
        reap(started.child);
        let pid = pids.first().copied();
        ClusterState::update(&self.dir, |s| -> Result<()> {
            let q = s.proc_mut(id)?;
            q.pid = pid;
            q.state = ProcState::Running;
            Ok(())
        })?;
        if id == "coord" && self.members.is_empty() {
            if let Ok(mut t) = self.coord_target.lock() {
                *t = started.proc.addr;
            }
        }
        Ok(())
    }

    /// Whether the recorded process `id` runs.
    pub fn running(&self, id: &str) -> bool {
        self.state()
            .is_ok_and(|s| s.proc(id).is_ok_and(|p| p.is_running()))
    }

    pub fn signal(&self, id: &str, sig: &str) -> Result<()> {
        let st = self.state()?;
        let p = st.proc(id)?;
        if let Some(pid) = p.pid.filter(|_| p.is_running()) {
            send_signal(pid, sig)?;
        }
        Ok(())
    }

    pub fn partition(&self, i: usize, cut: bool) {
        if let Some(Some(p)) = self.proxies.get(i) {
            if cut {
                p.partition()
            } else {
                p.heal()
            }
        }
    }

    /// Stops every process of a cluster started here.
    pub async fn stop(&self) {
        let Ok(st) = self.state() else { return };
        let running: Vec<u32> = st
            .procs()
            .filter(|p| p.is_running())
            .filter_map(|p| p.pid)
            .collect();
        for &pid in &running {
            let _ = send_signal(pid, "CONT");
        }
        let nodes: Vec<u32> = st
            .nodes
            .iter()
            .filter(|p| p.is_running())
            .filter_map(|p| p.pid)
            .collect();
        localcluster::stop_pids(&nodes, Duration::from_secs(10)).await;
        localcluster::stop_pids(&running, Duration::from_secs(10)).await;
        let _ = ClusterState::update(&self.dir, |s| -> Result<()> {
            for p in std::iter::once(&mut s.coord)
                .chain(s.members.iter_mut())
                .chain(s.nodes.iter_mut())
            {
                p.state = ProcState::Stopped;
            }
            Ok(())
        });
    }
}

/// Waits for a child in the background, so a killed one does not linger as
/// a zombie.
fn reap(mut child: tokio::process::Child) {
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
}
