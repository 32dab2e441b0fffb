//! `dfs-sim chaos`: throws faults at a real cluster while clients read and
//! write, then checks that nothing acknowledged was lost and no wrong byte
//! was ever returned.
//!
//! The cluster is real processes of the `dfs-sim` binary (started here in a
//! run directory, or attached to from `dfs-sim up`); the clients use the
//! `client` crate like any user. One seed draws every client's operations
//! and the fault schedule, so a failing seed replays the same sequence. The
//! history (every operation and fault, JSON lines) is what a failure is
//! debugged from. The checker is Jepsen-style: each operation is ok, failed
//! or indeterminate, and an indeterminate one may have either effect, never
//! a third.

pub mod cluster;
mod error;
pub mod faults;
pub mod history;
pub mod model;
pub mod proxy;
pub mod report;
pub mod schedule;
pub mod workload;

pub use error::{Error, Result};
pub use report::Report;
pub use schedule::FaultKind;

use cluster::{Cluster, OwnCluster};
use history::{History, Outcome};
use model::Violation;
use protocol::health::Health;
use protocol::Credential;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Everything a run needs.
#[derive(Clone)]
pub struct Config {
    /// The `dfs-sim` binary whose processes are started.
    pub exe: PathBuf,
    /// How long faults and operations go on (healing and checking follow).
    pub duration: Duration,
    pub seed: u64,
    /// A cluster of our own: nodes, replication, parity scheme (passed to
    /// the coordinator as is), chunk size in bytes (for an attached
    /// cluster: its chunk size, which shapes the file sizes).
    pub nodes: u32,
    pub replication: u32,
    pub parity: String,
    pub chunk_size: u64,
    /// Node heartbeat interval for our own cluster: short, so that deaths
    /// are noticed and repaired within a short run.
    pub heartbeat_ms: u64,
    /// Coordinators of our own cluster: 1, or a group (c1..cN) whose
    /// leader the group faults kill, pause and whose follower they wipe.
    pub coordinators: u32,
    /// Attach to the cluster of `dfs-sim up --data DIR` instead.
    pub attach: Option<PathBuf>,
    pub secret: Option<Credential>,
    /// Allow more impaired nodes at once than the scheme tolerates
    /// (operations may then fail, and a file may end unreadable; wrong,
    /// stale or resurrected contents are still violations).
    pub beyond_tolerance: bool,
    /// Where the history goes [default: `RUN_DIR/history.jsonl`].
    pub history: Option<PathBuf>,
    /// Where our own cluster lives [default: a new directory under the
    /// system temp dir]. Kept after the run.
    pub run_dir: Option<PathBuf>,
    pub clients: usize,
    /// Fault kinds to inject [default: all].
    pub faults: Vec<FaultKind>,
    /// How long the cluster may take to be healthy after the faults stop.
    pub heal_timeout: Duration,
    /// How long deletes may take to reach every node after the run.
    pub orphan_grace: Duration,
    /// Called about once a second with the live counters.
    pub live: Option<LiveFn>,
    /// Set to `true` to end the run early (Ctrl-C): faults stop, the
    /// cluster heals, and the check runs on what happened so far.
    pub interrupt: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Receives the live figures about once a second.
pub type LiveFn = Arc<dyn Fn(&Live) + Send + Sync>;

/// The live line's figures.
#[derive(Debug, Clone)]
pub struct Live {
    pub elapsed: Duration,
    pub ops: u64,
    pub faults: u64,
    pub violations: u64,
    pub current: Vec<String>,
    pub phase: &'static str,
}

/// The run's shared state.
pub struct Shared {
    pub seed: u64,
    pub prefix: String,
    pub run_dir: PathBuf,
    pub chunk_size: u64,
    pub secret: Option<Credential>,
    pub history: History,
    pub stop: AtomicBool,
    stop_notify: tokio::sync::Notify,
    /// Impaired nodes allowed at once.
    pub tolerance: usize,
    /// More impaired at once than the scheme survives: a file left
    /// unreadable is a notice, not a loss (wrong or stale bytes still are).
    pub beyond: bool,
    coord_addr: Mutex<String>,
    active: Mutex<faults::Active>,
    pub ops: Mutex<BTreeMap<(String, Outcome), u64>>,
    pub ops_total: AtomicU64,
    pub faults: Mutex<BTreeMap<FaultKind, u64>>,
    pub faults_total: AtomicU64,
    pub violations: Mutex<BTreeMap<Violation, u64>>,
    /// The first few violation messages, for the report.
    pub examples: Mutex<Vec<String>>,
    /// Things the user should know (faults skipped, a cluster that did not
    /// heal), for the report.
    pub notices: Mutex<Vec<String>>,
    phase: Mutex<&'static str>,
}

impl Shared {
    pub fn active(&self) -> MutexGuard<'_, faults::Active> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn client_config(&self) -> client::ClientConfig {
        let mut c = client::ClientConfig::new(
            self.coord_addr
                .lock()
                .map(|a| a.clone())
                .unwrap_or_default(),
        );
        c.cred = self.secret.clone();
        c
    }

    pub fn count(&self, kind: &str, o: Outcome) {
        *self
            .ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((kind.to_string(), o))
            .or_default() += 1;
        self.ops_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn violation(&self, v: Violation, msg: &str) {
        tracing::error!("violation: {msg}");
        *self
            .violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(v)
            .or_default() += 1;
        let mut ex = self.examples.lock().unwrap_or_else(|p| p.into_inner());
        if ex.len() < 20 {
            ex.push(msg.to_string());
        }
    }

    fn violation_total(&self) -> u64 {
        self.violations
            .lock()
            .map(|v| v.values().sum())
            .unwrap_or(0)
    }

    /// Sleeps for `d`, or less if the run stops. Returns whether it stopped.
    pub async fn sleep_or_stop(&self, d: Duration) -> bool {
        let n = self.stop_notify.notified();
        if self.stop.load(Ordering::Relaxed) {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stop.load(Ordering::Relaxed),
            _ = n => true,
        }
    }

    /// Every node alive and every file healthy.
    pub async fn whole(&self, c: &Cluster) -> bool {
        let Ok(mut cc) = client::CoordClient::connect(&self.client_config()).await else {
            return false;
        };
        let Ok(st) = cc.status().await else {
            return false;
        };
        let alive = c.node_ids.iter().all(|id| {
            st.nodes
                .iter()
                .any(|n| n.id.as_str() == id && n.state == protocol::NodeState::Alive)
        });
        if !alive {
            return false;
        }
        // A coordinator group is whole once every member has caught up with
        // the leader (a wiped member only after its snapshot): until then
        // one more member fault could leave a majority without an entry.
        if !c.members.is_empty() {
            let Ok(g) = cc.coordinators().await else {
                return false;
            };
            if g.leader.as_deref() != Some(g.me.as_str()) || g.members.len() != c.members.len() {
                return false;
            }
            // Asked of each member itself: the leader's view of a member
            // that just lost its disk lags behind the truth.
            for m in &g.members {
                let mut one = self.client_config();
                one.coord = m.addr.clone();
                let applied = match client::CoordClient::connect(&one).await {
                    Ok(mut mc) => mc.coordinators().await.map(|v| v.applied).unwrap_or(0),
                    Err(_) => 0,
                };
                if applied + 16 < g.committed {
                    return false;
                }
            }
        }
        match cc.fsck(Vec::new(), Vec::new()).await {
            Ok(r) => r.files.iter().all(|f| f.health == Health::Healthy),
            Err(_) => false,
        }
    }

    /// Has node `id` verify every copy now, and waits for the pass.
    pub async fn scrub_and_wait(&self, c: &Cluster, id: &str) -> Result<()> {
        let node = protocol::NodeId::new(id).map_err(|e| Error::Usage(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let _ = c;
        loop {
            let res: client::Result<bool> = async {
                let mut cc = client::CoordClient::connect(&self.client_config()).await?;
                let passes = |s: &protocol::ClusterStatus| {
                    s.nodes
                        .iter()
                        .find(|n| n.id == node)
                        .map(|n| n.stats.scrub_passes)
                };
                let before = passes(&cc.status().await?);
                cc.scrub(Some(node.clone())).await?;
                loop {
                    let now = passes(&cc.status().await?);
                    if now > before {
                        return Ok(true);
                    }
                    if Instant::now() >= deadline || self.stop.load(Ordering::Relaxed) {
                        return Ok(false);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            .await;
            match res {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    pub fn notice(&self, msg: &str) {
        tracing::info!("{msg}");
        self.history.note("notice", serde_json::json!(msg));
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(msg.to_string());
    }

    fn set_phase(&self, p: &'static str) {
        if let Ok(mut ph) = self.phase.lock() {
            *ph = p;
        }
    }

    fn live(&self, t0: Instant) -> Live {
        Live {
            elapsed: t0.elapsed(),
            ops: self.ops_total.load(Ordering::Relaxed),
            faults: self.faults_total.load(Ordering::Relaxed),
            violations: self.violation_total(),
            current: self.active().what.iter().map(|(_, w)| w.clone()).collect(),
            phase: self.phase.lock().map(|p| *p).unwrap_or("?"),
        }
    }
}

/// Impaired nodes a scheme survives: R-1 more copies, plus the losses its
/// code always decodes (xor: 1, rs:K+M: M, lrc:K+L+G: G+1). The scheme is
/// parsed by `codes` (through `protocol::Scheme`), the same parser the
/// coordinator uses, so chaos accepts exactly what `up --parity` accepts.
pub fn tolerance(replication: u32, parity: &str) -> Result<usize> {
    let scheme: protocol::Scheme = parity
        .parse()
        .map_err(|e| Error::Usage(format!("--parity {parity:?}: {e}")))?;
    let extra = match scheme {
        protocol::Scheme::None => 0,
        protocol::Scheme::Xor { .. } => 1,
        protocol::Scheme::Rs { m, .. } => m as usize,
        protocol::Scheme::Lrc { g, .. } => g as usize + 1,
    };
    Ok(replication.saturating_sub(1) as usize + extra)
}

/// Runs chaos and returns the verdict. `Err` only when it could not run.
pub async fn run(cfg: Config) -> Result<Report> {
    let t0 = Instant::now();
    if cfg.clients == 0 {
        return Err(Error::Usage("--clients must be at least 1".into()));
    }
    let tol = tolerance(cfg.replication, &cfg.parity)?;
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (run_dir, cluster, prefix) = match &cfg.attach {
        Some(dir) => {
            let c = Cluster::attach(dir, cfg.secret.clone()).await?;
            let run_dir = dir.join("chaos").join(format!("{}-{unix}", cfg.seed));
            mkdir(&run_dir)?;
            // Names of our own, away from the user's files.
            (run_dir, c, format!("chaos-{}-{unix}/", cfg.seed))
        }
        None => {
            if cfg.nodes == 0 || cfg.replication == 0 || cfg.replication > cfg.nodes {
                return Err(Error::Usage(format!(
                    "--replication {} needs at least that many nodes (--nodes {})",
                    cfg.replication, cfg.nodes
                )));
            }
            let run_dir = cfg.run_dir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!(
                    "dfs-chaos-{}-{}-{unix}",
                    cfg.seed,
                    std::process::id()
                ))
            });
            mkdir(&run_dir)?;
            let own = OwnCluster {
                exe: cfg.exe.clone(),
                nodes: cfg.nodes,
                replication: cfg.replication,
                parity: cfg.parity.clone(),
                chunk_size: cfg.chunk_size.to_string(),
                heartbeat_ms: cfg.heartbeat_ms,
                coordinators: cfg.coordinators,
            };
            let c = Cluster::start(&run_dir.join("cluster"), &own).await?;
            (run_dir, c, "chaos/".to_string())
        }
    };
    let cluster = Arc::new(cluster);
    let res = drive(&cfg, t0, tol, &run_dir, cluster.clone(), prefix).await;
    if cluster.own {
        cluster.stop().await;
    } else {
        faults::restore_all(&cluster).await;
    }
    res
}

fn mkdir(p: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(Error::io(format!("cannot create {}", p.display())))
}

async fn drive(
    cfg: &Config,
    t0: Instant,
    tol: usize,
    run_dir: &std::path::Path,
    cluster: Arc<Cluster>,
    prefix: String,
) -> Result<Report> {
    let history_path = cfg
        .history
        .clone()
        .unwrap_or_else(|| run_dir.join("history.jsonl"));
    let history = History::create(&history_path, t0)?;
    let chunk_size = cfg.chunk_size;
    let kinds: Vec<FaultKind> = if cfg.faults.is_empty() {
        // The group's faults only where there is a group.
        let group = !cluster.members.is_empty();
        FaultKind::ALL
            .into_iter()
            .filter(|k| group || !FaultKind::GROUP.contains(k))
            .collect()
    } else {
        cfg.faults.clone()
    };
    let tolerance = if cfg.beyond_tolerance {
        cluster.node_ids.len()
    } else {
        tol
    };
    let sh = Arc::new(Shared {
        seed: cfg.seed,
        prefix,
        run_dir: run_dir.to_path_buf(),
        chunk_size,
        secret: cfg.secret.clone(),
        history,
        stop: AtomicBool::new(false),
        stop_notify: tokio::sync::Notify::new(),
        tolerance,
        beyond: cfg.beyond_tolerance,
        coord_addr: Mutex::new(cluster.coord_addr()),
        active: Mutex::default(),
        ops: Mutex::default(),
        ops_total: AtomicU64::new(0),
        faults: Mutex::default(),
        faults_total: AtomicU64::new(0),
        violations: Mutex::default(),
        examples: Mutex::default(),
        notices: Mutex::default(),
        phase: Mutex::new("running"),
    });
    sh.history.note(
        "start",
        serde_json::json!({
            "seed": cfg.seed, "duration_s": cfg.duration.as_secs_f64(),
            "nodes": cluster.node_ids, "replication": cfg.replication, "parity": cfg.parity,
            "chunk_size": chunk_size, "clients": cfg.clients, "tolerance": tolerance,
            "faults": kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            "attach": cfg.attach, "cluster": cluster.dir,
        }),
    );
    tracing::info!(dir = %run_dir.display(), history = %history_path.display(), "chaos run");

    let live_task = cfg.live.clone().map(|f| {
        let sh = sh.clone();
        tokio::spawn(async move {
            // A status line once a second (a display ticker, not a wait).
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                f(&sh.live(t0));
            }
        })
    });

    let mut clients = tokio::task::JoinSet::new();
    for id in 0..cfg.clients {
        let cs = workload::ClientState::new(&sh, id)?;
        clients.spawn(workload::run(sh.clone(), cs));
    }
    let fault_task = tokio::spawn(faults::run(
        sh.clone(),
        cluster.clone(),
        cfg.seed,
        kinds.clone(),
    ));

    let interrupted = async {
        match cfg.interrupt.clone() {
            Some(mut rx) => {
                let _ = rx.wait_for(|v| *v).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::time::sleep(cfg.duration) => {}
        _ = interrupted => sh.notice("interrupted: ended early, then healed and checked"),
    }
    sh.stop.store(true, Ordering::Relaxed);
    sh.stop_notify.notify_waiters();
    sh.set_phase("stopping");
    let mut states = Vec::new();
    while let Some(r) = clients.join_next().await {
        if let Ok(cs) = r {
            states.push(cs);
        }
    }
    states.sort_by_key(|c| c.id);
    let _ = fault_task.await;

    // Heal: everything back, then wait for the cluster to say it is whole.
    sh.set_phase("healing");
    sh.history.note("heal", serde_json::json!("faults stopped"));
    faults::restore_all(&cluster).await;
    let heal_start = Instant::now();
    let mut healed = false;
    while heal_start.elapsed() < cfg.heal_timeout {
        if sh.whole(&cluster).await {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let heal_secs = heal_start.elapsed().as_secs_f64();
    sh.history.note(
        "healed",
        serde_json::json!({"healthy": healed, "seconds": heal_secs}),
    );
    if !healed {
        sh.notice(&format!(
            "the cluster was not healthy within {} s after the faults stopped; checked anyway",
            cfg.heal_timeout.as_secs()
        ));
    }

    // Check: every name read back and judged against its model.
    sh.set_phase("checking");
    for cs in &mut states {
        for idx in 0..cs.names.len() {
            workload::final_check(&sh, cs, idx).await;
        }
    }
    let orphans = check_orphans(&sh, &cluster, cfg.orphan_grace).await;
    if orphans > 0 {
        sh.violation(
            Violation::Orphan,
            &format!(
                "{orphans} chunk file(s) on the nodes belong to no file after {} s",
                cfg.orphan_grace.as_secs()
            ),
        );
        // Counted by file, not once.
        if let Ok(mut v) = sh.violations.lock() {
            *v.entry(Violation::Orphan).or_default() += orphans - 1;
        }
    }
    if let Some(t) = live_task {
        t.abort();
    }
    let report = Report::new(
        &sh,
        cfg,
        &cluster,
        history_path,
        run_dir,
        healed,
        heal_secs,
        t0,
    );
    sh.history.note(
        "verdict",
        serde_json::to_value(&report.verdict).unwrap_or_default(),
    );
    Ok(report)
}

/// Chunk files on the nodes' disks that no file of the catalog refers to,
/// polled until none are left or the grace period is over.
async fn check_orphans(sh: &Shared, cluster: &Cluster, grace: Duration) -> u64 {
    let deadline = Instant::now() + grace;
    loop {
        let n = match orphans_now(sh, cluster).await {
            Ok(o) => o.len() as u64,
            Err(e) => {
                tracing::warn!(error = %e, "cannot count orphan chunks");
                0
            }
        };
        if n == 0 || Instant::now() >= deadline {
            if n > 0 {
                if let Ok(o) = orphans_now(sh, cluster).await {
                    sh.history.note(
                        "orphans",
                        serde_json::json!(o.into_iter().collect::<Vec<_>>()),
                    );
                }
            }
            return n;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn orphans_now(sh: &Shared, cluster: &Cluster) -> Result<BTreeSet<String>> {
    let mut cc = client::CoordClient::connect(&sh.client_config()).await?;
    let mut referenced = BTreeSet::new();
    for f in cc.list(String::new()).await? {
        let info = match cc.lookup(f.name.clone()).await {
            Ok(i) => i,
            // Removed since the listing.
            Err(e) if e.coord_kind() == Some(protocol::ErrorKind::NoSuchFile) => continue,
            Err(e) => return Err(e.into()),
        };
        for s in &info.stripes {
            for c in s.data.iter().chain(s.parity.iter()) {
                referenced.insert(c.header.id.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    for i in 0..cluster.node_ids.len() {
        let data = cluster.node_data(i)?;
        let mut files = faults::chunk_files(&data);
        // Our own cluster's set-aside grace is short: what is still set
        // aside after it counts too. An attached cluster's may be a day.
        if cluster.own {
            files.extend(faults::set_aside_files(&data));
        }
        for f in files {
            let stem = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !referenced.contains(&stem) {
                out.insert(format!("{}:{stem}", cluster.node_ids[i]));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances() {
        assert_eq!(tolerance(2, "xor").unwrap(), 2);
        assert_eq!(tolerance(1, "xor").unwrap(), 1);
        assert_eq!(tolerance(3, "none").unwrap(), 2);
        assert_eq!(tolerance(1, "rs:4+2").unwrap(), 2);
        assert_eq!(tolerance(1, "xor:6").unwrap(), 1);
        assert_eq!(tolerance(2, "lrc:12+2+2").unwrap(), 4);
        assert!(tolerance(1, "raid5").is_err());
        assert!(tolerance(1, "rs:0+2").is_err());
    }
}
