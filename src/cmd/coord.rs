//! `dfs-sim coord`: run the coordinator.

#[cfg(not(feature = "http"))]
use super::no_http as web;
use super::{announce, bind, load_secret, shutdown_signal};
use crate::format::parse_size;
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address for clients and nodes.
    #[arg(long, default_value = client::config::DEFAULT_COORD)]
    pub listen: String,
    /// Where the catalog is kept.
    #[arg(long, value_name = "DIR", default_value = "dfs-data/coord")]
    pub data: PathBuf,
    /// Nodes to attach to, comma-separated (nodes may also register
    /// themselves with `node --coord`).
    #[arg(long, value_delimiter = ',', value_name = "ADDR,...")]
    pub nodes: Vec<String>,
    /// Copies of each data chunk, on distinct nodes.
    #[arg(long, default_value_t = 2)]
    pub replication: u32,
    /// Erasure code of new files: none, xor, rs:K+M (Reed-Solomon) or
    /// lrc:K+L+G (K data in L local XOR groups plus G global parities).
    #[arg(long, default_value = "xor", value_parser = parse_scheme)]
    pub parity: protocol::Scheme,
    /// Data chunks per xor stripe [default: live nodes - 1, at most 4].
    #[arg(long)]
    pub stripe: Option<u32>,
    /// Enclosure-level HA: refuse any put whose stripes would not survive
    /// the loss of one whole failure domain (`node --domain`).
    #[arg(long)]
    pub ha: bool,
    /// Placement of new stripes: random (default) or copysets (whole
    /// stripes only on a few fixed node sets: correlated failures lose
    /// data far less often, repair reads from fewer nodes).
    #[arg(long, default_value = "random")]
    pub placement: String,
    /// Copysets' scatter width: about how many nodes each node shares
    /// stripes with (at least a stripe's width - 1).
    #[arg(long, default_value_t = coord::placement::copysets::DEFAULT_SCATTER_WIDTH)]
    pub scatter_width: u32,
    /// Chunk size (e.g. 64MiB, 1MiB, 4096).
    #[arg(long, default_value = "64MiB")]
    pub chunk_size: String,
    /// Heartbeat interval of nodes, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub heartbeat_ms: u64,
    /// Missed heartbeats before a node is declared dead.
    #[arg(long, default_value_t = 3)]
    pub dead_after: u32,
    /// Repairs (copies or rebuilds) running at once across the cluster.
    #[arg(long, default_value_t = 8)]
    pub repair_parallel: usize,
    /// File holding the cluster's shared secret (else DFS_SECRET, if set).
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Serve the dashboard, the JSON API and /metrics on this address
    /// (e.g. 127.0.0.1:4080).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// File holding the token the dashboard requires [default: the cluster
    /// secret]; needed when --http is not a loopback address.
    #[arg(long, value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,
    /// File holding the token the dashboard's actions (drain, scrub,
    /// forget, rebalance) require [default: the cluster secret; without
    /// either, actions are refused].
    #[arg(long, value_name = "FILE")]
    pub http_admin_token_file: Option<PathBuf>,
    /// Where the dashboard sends uploads and fetches downloads: a
    /// `dfs-sim data` endpoint (e.g. http://127.0.0.1:4081).
    #[arg(long, value_name = "URL")]
    pub http_data_url: Option<String>,
    /// Allow listening on a non-loopback address without a secret.
    #[arg(long)]
    pub insecure: bool,
    /// Copies the catalog does not know are set aside and deleted only this
    /// long after (e.g. 24h, 30m, 10s).
    #[arg(long, default_value = "24h")]
    pub orphan_grace: String,
    /// Copies of removed or replaced files are deleted this long after the
    /// change, so readers that started before finish.
    #[arg(long, default_value = "60s")]
    pub delete_grace: String,
    /// How long a read token granted by a lookup lives (e.g. 5m, 30s): the
    /// bound on how long a revoked client key can go on reading; reads that
    /// last longer renew their tokens.
    #[arg(long, default_value = "5m")]
    pub read_token_ttl: String,
    /// Bytes per second rebalancing may move (e.g. 64MiB, 10MiB).
    #[arg(long, default_value = "64MiB", value_name = "SIZE")]
    pub rebalance_rate: String,
    /// Rebalance only when asked (`dfs-sim rebalance`), not on its own when
    /// an empty node joins or an imbalance persists.
    #[arg(long)]
    pub no_auto_rebalance: bool,
    /// Start on a damaged journal, keeping every valid record on both sides
    /// of the damage (the damaged journal is kept beside the new one).
    #[arg(long, conflicts_with = "read_only")]
    pub recover: bool,
    /// Serve what the catalog holds (reads only): no changes, no repairs, no
    /// deletes. For inspecting a damaged journal.
    #[arg(long)]
    pub read_only: bool,
    /// This coordinator's name in a coordinator group (one of --peers).
    #[arg(long, requires = "peers", value_name = "NAME")]
    pub id: Option<String>,
    /// Every member of the coordinator group, the same list on each:
    /// c1=HOST:PORT,c2=HOST:PORT,c3=HOST:PORT. The catalog is replicated on
    /// Raft; only the leader serves, and any majority keeps the cluster up.
    #[arg(long, requires = "id", value_name = "NAME=ADDR,...")]
    pub peers: Option<String>,
    /// Catalog records (a group: log entries) between snapshots.
    #[arg(long, default_value_t = 1024)]
    pub snapshot_every: u64,
    /// The group leader's heartbeat to the other members, in milliseconds.
    #[arg(long, default_value_t = 250)]
    pub raft_heartbeat_ms: u64,
    /// A member that hears no leader for this long (to twice as long, at
    /// random) calls an election, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub election_timeout_ms: u64,
    /// Every coordinator disk was lost: assemble the catalog from the
    /// owner tags the --nodes keep with their chunks, write it into --data
    /// (which must hold no catalog), print what was found, then serve it.
    #[arg(long, requires = "nodes", conflicts_with_all = ["recover", "read_only"])]
    pub rebuild_from_nodes: bool,
    /// With --rebuild-from-nodes: print what a rebuild would recover and
    /// write nothing.
    #[arg(long, requires = "rebuild_from_nodes")]
    pub dry_run: bool,
    /// With --rebuild-from-nodes: print the report as JSON.
    #[arg(long, requires = "rebuild_from_nodes")]
    pub json: bool,
}

fn print_rebuild(report: &coord::rebuild::RebuildReport, json: bool) {
    if json {
        super::print_json(report);
    } else {
        for line in report.to_string().lines() {
            announce(line);
        }
    }
}

/// `--parity` values, with the scheme's own one-line error.
pub fn parse_scheme(s: &str) -> std::result::Result<protocol::Scheme, String> {
    s.parse().map_err(|e: codes::Error| e.to_string())
}

pub async fn run(a: Args) -> Result<()> {
    let chunk_size = parse_size(&a.chunk_size).map_err(anyhow::Error::msg)?;
    if chunk_size == 0 || chunk_size > protocol::chunk::MAX_CHUNK_LEN {
        bail!(
            "--chunk-size must be between 1 byte and {}",
            crate::format::bytes(protocol::chunk::MAX_CHUNK_LEN)
        );
    }
    if a.replication == 0 {
        bail!("--replication must be at least 1");
    }
    if a.stripe == Some(0) {
        bail!("--stripe must be at least 1");
    }
    if a.heartbeat_ms == 0 || a.dead_after == 0 {
        bail!("--heartbeat-ms and --dead-after must be at least 1");
    }
    let mut cfg = coord::CoordConfig::new(a.data.clone());
    cfg.nodes = a.nodes.into_iter().filter(|n| !n.is_empty()).collect();
    cfg.replication = a.replication;
    cfg.scheme = match (a.parity, a.stripe) {
        (protocol::Scheme::Xor { .. }, Some(k)) => format!("xor:{k}")
            .parse()
            .map_err(|e: codes::Error| anyhow::anyhow!("--stripe: {e}"))?,
        (s, _) => s,
    };
    cfg.stripe = a.stripe;
    cfg.ha = a.ha;
    cfg.placement = coord::placement::Placement::parse(&a.placement, a.scatter_width)
        .map_err(|e| anyhow::anyhow!("--placement: {e}"))?;
    cfg.chunk_size = chunk_size;
    cfg.heartbeat = Duration::from_millis(a.heartbeat_ms);
    cfg.dead_after = a.dead_after;
    if a.repair_parallel == 0 {
        bail!("--repair-parallel must be at least 1");
    }
    cfg.repair_parallel = a.repair_parallel;
    cfg.secret = load_secret(a.secret_file.as_ref())?;
    let web_cfg = web::WebConfig {
        // Only a process serving HTTP reads (and checks) a token.
        token: match a.http {
            Some(_) => super::http_token(a.http_token_file.as_ref(), a.secret_file.as_ref())?,
            None => None,
        },
        admin_token: match a.http {
            Some(_) => super::http_token(a.http_admin_token_file.as_ref(), a.secret_file.as_ref())?,
            None => None,
        },
        data_url: a.http_data_url.clone(),
    };
    super::check_exposure(&a.listen, cfg.secret.is_some(), a.insecure)?;
    cfg.orphan_grace =
        crate::format::parse_duration(&a.orphan_grace).map_err(anyhow::Error::msg)?;
    cfg.delete_grace =
        crate::format::parse_duration(&a.delete_grace).map_err(anyhow::Error::msg)?;
    cfg.read_token_ttl =
        crate::format::parse_duration(&a.read_token_ttl).map_err(anyhow::Error::msg)?;
    if cfg.read_token_ttl < std::time::Duration::from_secs(1) {
        anyhow::bail!(
            "--read-token-ttl must be at least 1s (reads renew their tokens before they expire)"
        );
    }
    cfg.rebalance_rate =
        parse_size(&a.rebalance_rate).map_err(|e| anyhow::anyhow!("--rebalance-rate: {e}"))?;
    if cfg.rebalance_rate == 0 {
        bail!("--rebalance-rate must be above 0 (use --no-auto-rebalance to rebalance only when asked)");
    }
    cfg.auto_rebalance = !a.no_auto_rebalance;
    cfg.recover = a.recover;
    cfg.read_only = a.read_only;
    if a.snapshot_every == 0 {
        bail!("--snapshot-every must be at least 1");
    }
    cfg.snapshot_every = a.snapshot_every;
    if let (Some(me), Some(peers)) = (&a.id, &a.peers) {
        let peers = coord::group::Peers::parse(peers).map_err(anyhow::Error::msg)?;
        if peers.id_of(me).is_none() {
            bail!("--id {me} is not one of --peers");
        }
        if a.raft_heartbeat_ms == 0 || a.election_timeout_ms <= a.raft_heartbeat_ms * 2 {
            bail!("--election-timeout-ms must be more than twice --raft-heartbeat-ms");
        }
        cfg.group = Some(coord::group::GroupConfig {
            me: me.clone(),
            peers,
            heartbeat: Duration::from_millis(a.raft_heartbeat_ms),
            election: Duration::from_millis(a.election_timeout_ms),
            snapshot_every: cfg.snapshot_every,
        });
    }
    // The absolute path, so a coordinator started from the wrong directory
    // says so at once.
    let data = std::path::absolute(&a.data).unwrap_or(a.data.clone());
    cfg.data_dir = data.clone();
    let rebuilt = if a.rebuild_from_nodes {
        let opts = coord::rebuild::RebuildOptions {
            dry_run: a.dry_run,
            ..Default::default()
        };
        let report = coord::rebuild::rebuild(&cfg, &opts).await?;
        if a.dry_run {
            print_rebuild(&report, a.json);
            return Ok(());
        }
        Some(report)
    } else {
        None
    };
    let listener = bind(&a.listen).await?;
    let http = match &a.http {
        Some(addr) => {
            let l = bind(addr).await?;
            web_cfg.check(&l.local_addr()?)?;
            Some(l)
        }
        None => None,
    };
    let local = listener.local_addr()?;
    let coord = coord::Coord::open(cfg)?;
    announce(&format!(
        "coordinator listening on {local}, data in {}",
        data.display()
    ));
    // After the ready line (the first line is always that one).
    if let Some(report) = &rebuilt {
        print_rebuild(report, a.json);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let web_task = match http {
        Some(l) => {
            announce(&format!("dashboard on http://{}/", l.local_addr()?));
            let mut rx = stop_rx.clone();
            let c = coord.clone();
            Some(tokio::spawn(async move {
                web::serve_coord(l, c, web_cfg, async move {
                    let _ = rx.changed().await;
                })
                .await
            }))
        }
        None => None,
    };
    let res = coord::serve(listener, coord, async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    })
    .await;
    drop(stop_rx);
    if let Some(t) = web_task {
        // The web server stops with the coordinator; a failure of its own
        // (e.g. the recorder) is reported, not hidden.
        if t.is_finished() {
            t.await??;
        } else {
            t.abort();
        }
    }
    res?;
    Ok(())
}
