//! The fault injector: follows the seeded schedule, never impairing more
//! nodes at once than the scheme tolerates (unless told to), and only
//! counts a fault as over once the cluster says it is whole again (every
//! node alive, `fsck` healthy), since a node back up is not yet a node
//! whose copies are all there.

use crate::cluster::Cluster;
use crate::history::{FaultRecord, History};
use crate::schedule::{FaultKind, FaultPlan, FaultSchedule};
use crate::Shared;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a fault may take to be healed before the next one is allowed
/// anyway is not a thing: a fault holds its slot until the cluster is whole
/// again or the run stops. This bounds only each poll.
const POLL: Duration = Duration::from_millis(200);

/// A reserve no disk has: a node started with it refuses every new copy.
const FULL_RESERVE: &str = "1PiB";

/// What is impaired now.
#[derive(Default)]
pub struct Active {
    pub nodes: BTreeSet<usize>,
    pub coord: bool,
    /// Human descriptions, for the live line.
    pub what: Vec<(u64, String)>,
}

/// Runs the schedule until `sh.stop`; returns once every fault it
/// injected has been undone.
pub async fn run(sh: Arc<Shared>, cluster: Arc<Cluster>, seed: u64, kinds: Vec<FaultKind>) {
    let mut sched = FaultSchedule::new(seed, kinds, cluster.node_ids.len());
    let mut heals = tokio::task::JoinSet::new();
    let mut partition_notice = false;
    'outer: while let Some(plan) = sched.next_fault() {
        if sh.sleep_or_stop(plan.after).await {
            break;
        }
        // Wait until the schedule's next fault fits the tolerance budget
        // (the same fault, later: the schedule does not depend on timing).
        loop {
            if sh.stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            if admissible(&sh, &plan) {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        if plan.kind == FaultKind::Partition && !cluster.has_proxies() {
            if !partition_notice {
                partition_notice = true;
                sh.notice("partition faults skipped: the nodes of an attached cluster do not reach the coordinator through a chaos proxy");
            }
            continue;
        }
        let group = FaultKind::GROUP.contains(&plan.kind);
        if group && cluster.members.is_empty() {
            continue;
        }
        let target = if plan.kind.impairs_node() {
            cluster.node_ids[plan.node].clone()
        } else if group {
            // Resolved now: whoever leads at this moment.
            match cluster.leader_and_follower().await {
                Ok((l, f)) if plan.kind == FaultKind::FollowerWipe => {
                    let _ = l;
                    f
                }
                Ok((l, _)) => l,
                Err(e) => {
                    tracing::info!(error = %e, "group fault skipped: no leader right now");
                    continue;
                }
            }
        } else {
            "coord".to_string()
        };
        {
            let mut a = sh.active();
            if plan.kind.impairs_node() {
                a.nodes.insert(plan.node);
            } else {
                a.coord = true;
            }
            a.what
                .push((plan.seq, format!("{} {target}", plan.kind.as_str())));
        }
        let detail = match inject(&cluster, &plan, &target).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(fault = plan.kind.as_str(), %target, error = %e, "fault injection failed");
                Some(format!("injection failed: {e}"))
            }
        };
        *sh.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(plan.kind)
            .or_default() += 1;
        sh.faults_total.fetch_add(1, Ordering::Relaxed);
        record(&sh.history, &plan, &target, "inject", detail);
        let (sh2, c2) = (sh.clone(), cluster.clone());
        heals.spawn(async move { heal(sh2, c2, plan, target).await });
    }
    while heals.join_next().await.is_some() {}
}

fn admissible(sh: &Shared, plan: &FaultPlan) -> bool {
    let a = sh.active();
    if plan.kind.impairs_node() {
        !a.nodes.contains(&plan.node) && a.nodes.len() < sh.tolerance
    } else {
        !a.coord
    }
}

fn record(
    h: &History,
    plan: &FaultPlan,
    target: &str,
    phase: &'static str,
    detail: Option<String>,
) {
    h.write(&FaultRecord {
        ty: "fault",
        seq: plan.seq,
        kind: plan.kind.as_str(),
        target: target.to_string(),
        phase,
        t: h.now(),
        detail,
    });
}

async fn inject(c: &Cluster, plan: &FaultPlan, target: &str) -> crate::Result<Option<String>> {
    match plan.kind {
        FaultKind::NodeKill | FaultKind::CoordKill | FaultKind::LeaderKill => {
            c.kill(target).await.map(|_| None)
        }
        FaultKind::NodePause | FaultKind::LeaderPause => c.signal(target, "STOP").map(|_| None),
        FaultKind::FollowerWipe => {
            c.kill(target).await?;
            c.wipe(target)?;
            restart_until_up(c, target).await?;
            Ok(Some("data directory wiped".into()))
        }
        FaultKind::Partition => {
            c.partition(plan.node, true);
            Ok(None)
        }
        FaultKind::DiskFull => {
            c.kill(target).await?;
            c.restart(target, &["--reserve".into(), FULL_RESERVE.into()])
                .await?;
            Ok(None)
        }
        FaultKind::DiskFlip | FaultKind::DiskTruncate | FaultKind::DiskDelete => {
            let data = c.node_data(plan.node)?;
            let files = chunk_files(&data);
            if files.is_empty() {
                return Ok(Some("no chunk files yet".into()));
            }
            let mut done = Vec::new();
            for &p in &plan.picks {
                let f = &files[(p % files.len() as u64) as usize];
                match damage(plan.kind, f, p) {
                    Ok(()) => done.push(
                        f.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    ),
                    // Renamed or deleted meanwhile (repair, trim): harmless.
                    Err(e) => tracing::debug!(file = %f.display(), error = %e, "cannot damage"),
                }
            }
            Ok(Some(done.join(",")))
        }
    }
}

/// Every chunk file of a node's live set, sorted (so a pick is an index).
pub fn chunk_files(data: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(dirs) = std::fs::read_dir(data.join("chunks")) {
        for d in dirs.flatten() {
            out.extend(files_in(&d.path()));
        }
    }
    out.sort();
    out
}

/// Chunk files a node set aside as unknown to the catalog (deleted after
/// the coordinator's orphan grace period).
pub fn set_aside_files(data: &Path) -> Vec<PathBuf> {
    files_in(&data.join("orphans"))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(files) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    files
        .flatten()
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|e| e == "chunk"))
        .collect()
}

fn damage(kind: FaultKind, f: &Path, pick: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    match kind {
        FaultKind::DiskDelete => std::fs::remove_file(f),
        FaultKind::DiskTruncate => {
            let file = std::fs::OpenOptions::new().write(true).open(f)?;
            let len = file.metadata()?.len();
            file.set_len(len / 2)
        }
        _ => {
            let mut file = std::fs::OpenOptions::new().read(true).write(true).open(f)?;
            let len = file.metadata()?.len();
            if len == 0 {
                return Ok(());
            }
            let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(pick);
            for _ in 0..r.gen_range(1..=4) {
                let at = r.gen_range(0..len);
                let mut b = [0u8; 1];
                file.seek(SeekFrom::Start(at))?;
                file.read_exact(&mut b)?;
                b[0] ^= r.gen_range(1..=255u8);
                file.seek(SeekFrom::Start(at))?;
                file.write_all(&b)?;
            }
            file.sync_all()
        }
    }
}

/// Undoes a fault after its hold time (or at once when the run stops),
/// then waits until the cluster is whole before releasing its slot.
async fn heal(sh: Arc<Shared>, c: Arc<Cluster>, plan: FaultPlan, target: String) {
    sh.sleep_or_stop(plan.hold).await;
    let res = undo(&sh, &c, &plan, &target).await;
    record(
        &sh.history,
        &plan,
        &target,
        "heal",
        res.err().map(|e| format!("heal failed: {e}")),
    );
    let t0 = Instant::now();
    let whole = loop {
        if sh.stop.load(Ordering::Relaxed) {
            break false;
        }
        if sh.whole(&c).await {
            break true;
        }
        tokio::time::sleep(POLL).await;
    };
    {
        let mut a = sh.active();
        if plan.kind.impairs_node() {
            a.nodes.remove(&plan.node);
        } else {
            a.coord = false;
        }
        a.what.retain(|(s, _)| *s != plan.seq);
    }
    if whole {
        record(
            &sh.history,
            &plan,
            &target,
            "healed",
            Some(format!("{:.1} s to healthy", t0.elapsed().as_secs_f64())),
        );
    }
}

async fn undo(sh: &Shared, c: &Cluster, plan: &FaultPlan, target: &str) -> crate::Result<()> {
    match plan.kind {
        FaultKind::NodeKill | FaultKind::CoordKill | FaultKind::LeaderKill => {
            restart_until_up(c, target).await
        }
        FaultKind::NodePause | FaultKind::LeaderPause => c.signal(target, "CONT"),
        FaultKind::FollowerWipe => restart_until_up(c, target).await,
        FaultKind::Partition => {
            c.partition(plan.node, false);
            Ok(())
        }
        FaultKind::DiskFull => {
            c.kill(target).await?;
            restart_until_up(c, target).await
        }
        // The node finds the damage by a scrub pass (a missing file is
        // reported like a corrupt one) and the coordinator repairs it.
        FaultKind::DiskFlip | FaultKind::DiskTruncate | FaultKind::DiskDelete => {
            sh.scrub_and_wait(c, target).await
        }
    }
}

/// Restarts a process; the coordinator may briefly still hold a port, or a
/// start may race with the previous process's exit: a few tries.
async fn restart_until_up(c: &Cluster, id: &str) -> crate::Result<()> {
    let mut last = None;
    for _ in 0..20 {
        if c.running(id) {
            return Ok(());
        }
        match c.restart(id, &[]).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::debug!(%id, error = %e, "restart failed, retrying");
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| crate::Error::Setup(format!("cannot restart {id}"))))
}

/// Brings everything back (final heal): every process running and
/// continued, every partition healed.
pub async fn restore_all(c: &Cluster) {
    for i in 0..c.node_ids.len() {
        c.partition(i, false);
    }
    let ids: Vec<String> = std::iter::once("coord".to_string())
        .chain(c.members.iter().skip(1).cloned())
        .chain(c.node_ids.iter().cloned())
        .collect();
    for id in &ids {
        let _ = c.signal(id, "CONT");
        if !c.running(id) {
            if let Err(e) = restart_until_up(c, id).await {
                tracing::warn!(%id, error = %e, "cannot restart");
            }
        }
    }
    // A node left with the disk-full reserve gets its own command line back.
    if let Ok(st) = c.state() {
        for n in &st.nodes {
            let full = n.pid.is_some_and(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|b| String::from_utf8_lossy(&b).contains(FULL_RESERVE))
            });
            if full {
                let _ = c.kill(&n.id).await;
                let _ = restart_until_up(c, &n.id).await;
            }
        }
    }
}
