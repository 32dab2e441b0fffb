//! `dfs-sim chaos`: faults thrown at a real cluster while clients work,
//! then a verdict (see the `chaos` crate). Exit status 1 on any violation.

use crate::format::{parse_duration, parse_size};
use anyhow::{anyhow, bail, Result};
use chaos::FaultKind;
use localcluster::{ClusterState, DEFAULT_DIR};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How long faults and operations go on (e.g. 30s, 10m); healing and the
    /// final check follow.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seed of the operation and fault schedules [default: random, printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Nodes of the cluster chaos starts.
    #[arg(long, default_value_t = 6)]
    pub nodes: u32,
    /// Copies of each data chunk.
    #[arg(long, default_value_t = 2)]
    pub replication: u32,
    /// Parity scheme, passed to the coordinator (xor, none, rs:K+M where
    /// supported).
    #[arg(long, default_value = "xor")]
    pub parity: String,
    /// Chunk size: small, so that files span stripes.
    #[arg(long, default_value = "64KiB")]
    pub chunk_size: String,
    /// Coordinators of the cluster chaos starts: 1, or a group of 3 or 5
    /// (adds the faults leader-kill, leader-pause and follower-wipe).
    #[arg(long, default_value_t = 1)]
    pub coordinators: u32,
    /// Node heartbeat interval of the cluster chaos starts.
    #[arg(long, default_value_t = 300)]
    pub heartbeat_ms: u64,
    /// Impair more nodes at once than the scheme tolerates (operations may
    /// fail; wrong bytes are still violations).
    #[arg(long)]
    pub beyond_tolerance: bool,
    /// Write the history (JSON lines) here [default: in the run directory].
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Where the cluster chaos starts lives [default: a new temp dir].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Work against the cluster of `dfs-sim up --data DIR` instead.
    #[arg(long)]
    pub attach: bool,
    /// The cluster's directory, with --attach.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub data: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Only these fault kinds (node-kill, node-pause, coord-kill, disk-flip,
    /// disk-truncate, disk-delete, disk-full, partition; with a group also
    /// leader-kill, leader-pause, follower-wipe) [default: all that apply].
    #[arg(long, value_delimiter = ',')]
    pub faults: Vec<String>,
    /// How long the cluster may take to be healthy after the faults stop.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub heal_timeout: Duration,
    /// How long deleted files' chunks may linger on the nodes after the run.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub orphan_grace: Duration,
    /// File holding the cluster's shared secret (else DFS_SECRET), with
    /// --attach.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
}

pub async fn run(a: Args) -> Result<()> {
    let seed = a.seed.unwrap_or_else(rand_seed);
    let faults = a
        .faults
        .iter()
        .map(|f| {
            FaultKind::parse(f.trim()).ok_or_else(|| {
                let all: Vec<&str> = FaultKind::ALL.iter().map(|k| k.as_str()).collect();
                anyhow!("unknown fault {f:?} (one of {})", all.join(", "))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let chunk_text = if a.attach {
        let st = ClusterState::load(&a.data)?;
        localcluster::flag(&st.coord.argv, "--chunk-size")
            .unwrap_or("64MiB")
            .to_string()
    } else {
        a.chunk_size.clone()
    };
    let chunk_size = parse_size(&chunk_text).map_err(anyhow::Error::msg)?;
    if chunk_size == 0 || chunk_size > protocol::chunk::MAX_CHUNK_LEN {
        bail!("--chunk-size must be between 1 byte and 1 GiB");
    }
    let (replication, parity) = if a.attach {
        let st = ClusterState::load(&a.data)?;
        let r = localcluster::flag(&st.coord.argv, "--replication")
            .and_then(|r| r.parse().ok())
            .unwrap_or(2);
        let p = localcluster::flag(&st.coord.argv, "--parity")
            .unwrap_or("xor")
            .to_string();
        (r, p)
    } else {
        (a.replication, a.parity.clone())
    };
    // Deletes of an attached cluster wait out its own grace period first.
    let mut orphan_grace = a.orphan_grace;
    if a.attach {
        let st = ClusterState::load(&a.data)?;
        let delete_grace = localcluster::flag(&st.coord.argv, "--delete-grace")
            .map(parse_duration)
            .transpose()
            .map_err(anyhow::Error::msg)?
            .unwrap_or(Duration::from_secs(60));
        orphan_grace = orphan_grace.max(delete_grace + Duration::from_secs(15));
    }
    let secret = super::client_credential(a.secret_file.as_ref(), None)?;
    let exe = std::env::current_exe()?;
    eprintln!(
        "chaos: seed {seed} (replay with --seed {seed}), {} for {:?}",
        if a.attach {
            format!("cluster in {}", a.data.display())
        } else {
            format!("{} nodes, R={replication} + {parity}", a.nodes)
        },
        a.duration
    );
    let tty = std::io::stderr().is_terminal();
    let last_line = Arc::new(AtomicU64::new(0));
    let live: Arc<dyn Fn(&chaos::Live) + Send + Sync> = Arc::new(move |l: &chaos::Live| {
        let secs = l.elapsed.as_secs();
        let line = format!(
            "[{:>4} s {}] ops {}  faults {}  violations {}  now: {}",
            secs,
            l.phase,
            l.ops,
            l.faults,
            l.violations,
            if l.current.is_empty() {
                "-".to_string()
            } else {
                l.current.join(", ")
            }
        );
        if tty {
            eprint!("\r\x1b[K{line}");
        } else if secs >= last_line.load(Ordering::Relaxed) + 5 {
            last_line.store(secs, Ordering::Relaxed);
            eprintln!("{line}");
        }
    });
    // Ctrl-C ends the run early; the cluster still heals, is checked and
    // (if chaos started it) stopped.
    let (int_tx, int_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        super::shutdown_signal().await;
        eprintln!("\nchaos: interrupted; healing and checking what ran so far");
        let _ = int_tx.send(true);
    });
    let cfg = chaos::Config {
        exe,
        duration: a.duration,
        seed,
        nodes: a.nodes,
        replication,
        parity,
        chunk_size,
        heartbeat_ms: a.heartbeat_ms,
        coordinators: a.coordinators,
        attach: a.attach.then(|| a.data.clone()),
        secret,
        beyond_tolerance: a.beyond_tolerance,
        history: a.history,
        run_dir: a.run_dir,
        clients: a.clients,
        faults,
        heal_timeout: a.heal_timeout,
        orphan_grace,
        live: Some(live),
        interrupt: Some(int_rx),
    };
    let report = chaos::run(cfg).await?;
    if tty {
        eprintln!();
    }
    outln!("{report}");
    if !report.passed() {
        let v = &report.verdict;
        bail!(
            "chaos seed {seed} found violations: {} lost, {} wrong, {} resurrected, {} orphan chunks; see {}",
            v.lost,
            v.wrong,
            v.resurrected,
            v.orphans,
            report.history.display()
        );
    }
    Ok(())
}

fn rand_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
}
