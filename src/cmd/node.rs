//! `dfs-sim node`: run a chunkserver.

#[cfg(not(feature = "http"))]
use super::no_http as web;
use super::{announce, bind, load_secret, shutdown_signal};
use anyhow::Result;
use protocol::NodeId;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// This node's name, stable across restarts (e.g. n1).
    #[arg(long)]
    pub id: String,
    /// Address for data connections.
    #[arg(long, default_value = "127.0.0.1:4001")]
    pub listen: String,
    /// Where chunks are kept [default: dfs-data/node-<id>].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Register with this coordinator (otherwise wait to be attached by a
    /// coordinator started with --nodes).
    #[arg(long, value_name = "ADDR")]
    pub coord: Option<String>,
    /// Address others use to reach this node [default: the listen address].
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<String>,
    /// Free space always left on the node's disk: a put that would leave
    /// less is refused with a disk-full error before a byte is written.
    #[arg(long, default_value = "64MiB")]
    pub reserve: String,
    /// Background scrub rate (e.g. 32MiB per second; 0 turns the background
    /// scrub off; `dfs-sim scrub` still runs a pass on demand).
    #[arg(long, default_value = "32MiB")]
    pub scrub_rate: String,
    /// Seconds between background scrub passes.
    #[arg(long, default_value_t = 86_400)]
    pub scrub_interval_s: u64,
    /// Memory the repairs running at once on this node may hold, by their
    /// estimate (a rebuild of 64 MiB chunks takes 128-192 MiB).
    #[arg(long, default_value = "384MiB", value_name = "SIZE")]
    pub repair_memory: String,
    /// Failure domain (rack, enclosure, region): a stripe's members are
    /// spread over domains [default: the node's own id].
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,
    /// Hot spare: takes no new writes; repair rebuilds onto it first, after
    /// which it is a regular node.
    #[arg(long)]
    pub spare: bool,
    /// File holding the cluster's shared secret (else DFS_SECRET, if set).
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Serve Prometheus /metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// File holding the token /metrics requires [default: the cluster
    /// secret]; needed when --http is not a loopback address.
    #[arg(long, value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,
    /// Allow listening on a non-loopback address without a secret.
    #[arg(long)]
    pub insecure: bool,
    /// Chunks up to this size are made durable in groups (one sync for all
    /// that arrived meanwhile); 0 fsyncs each chunk on its own.
    #[arg(long, default_value = "256KiB")]
    pub group_commit: String,
}

pub async fn run(a: Args) -> Result<()> {
    let id = NodeId::new(&a.id).map_err(anyhow::Error::msg)?;
    let data = a
        .data
        .unwrap_or_else(|| PathBuf::from(format!("dfs-data/node-{id}")));
    let secret = load_secret(a.secret_file.as_ref())?;
    super::check_exposure(&a.listen, secret.is_some(), a.insecure)?;
    let listener = bind(&a.listen).await?;
    let local = listener.local_addr()?.to_string();
    let mut cfg = node::NodeConfig::new(
        id.clone(),
        data.clone(),
        a.advertise.unwrap_or(local.clone()),
    );
    cfg.coord = a.coord;
    cfg.reserve_bytes = crate::format::parse_size(&a.reserve).map_err(anyhow::Error::msg)?;
    cfg.scrub_rate = crate::format::parse_size(&a.scrub_rate).map_err(anyhow::Error::msg)?;
    cfg.repair_memory = crate::format::parse_size(&a.repair_memory)
        .map_err(|e| anyhow::anyhow!("--repair-memory: {e}"))?;
    cfg.scrub_interval = std::time::Duration::from_secs(a.scrub_interval_s.max(1));
    cfg.secret = secret;
    if let Some(d) = &a.domain {
        if d.is_empty()
            || d.len() > 64
            || !d
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            anyhow::bail!("--domain {d:?}: use 1 to 64 letters, digits, '-', '_' or '.'");
        }
    }
    cfg.domain = a.domain.unwrap_or_default();
    cfg.spare = a.spare;
    cfg.group_commit_max =
        crate::format::parse_size(&a.group_commit).map_err(anyhow::Error::msg)?;
    let web_cfg = web::WebConfig {
        // Only a process serving HTTP reads (and checks) a token.
        token: match a.http {
            Some(_) => super::http_token(a.http_token_file.as_ref(), a.secret_file.as_ref())?,
            None => None,
        },
        admin_token: None,
        data_url: None,
    };
    let http = match &a.http {
        Some(addr) => {
            let l = bind(addr).await?;
            web_cfg.check(&l.local_addr()?)?;
            Some(l)
        }
        None => None,
    };
    announce(&format!(
        "node {id} listening on {local}, data in {}",
        data.display()
    ));
    if let Some(l) = http {
        announce(&format!("metrics on http://{}/metrics", l.local_addr()?));
        tokio::spawn(async move {
            if let Err(e) = web::serve_metrics(l, web_cfg, std::future::pending()).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
    }
    node::run(listener, cfg, shutdown_signal()).await?;
    Ok(())
}
