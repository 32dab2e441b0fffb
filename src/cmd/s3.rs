//! `dfs-sim s3`: run an S3 gateway in front of the cluster.

use super::ClientArgs;
#[cfg(feature = "s3")]
use super::{announce, bind, shutdown_signal};
#[cfg(feature = "s3")]
use anyhow::Context;
use anyhow::Result;
use std::path::PathBuf;
#[cfg(feature = "s3")]
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address for S3 (HTTP) clients.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: String,
    #[command(flatten)]
    pub client: ClientArgs,
    /// File of accepted keys: one `ACCESS_KEY SECRET_KEY` pair per line
    /// (else DFS_S3_ACCESS_KEY and DFS_S3_SECRET_KEY).
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,
    /// Multipart uploads left this long without completing are aborted and
    /// their parts collected.
    #[arg(long, default_value_t = 86_400)]
    pub upload_ttl_s: u64,
}

/// The accepted keys, from the file or the environment.
#[cfg(feature = "s3")]
pub fn credentials(file: Option<&PathBuf>) -> Result<s3gw::Credentials> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read credentials file {}", path.display()))?;
        return Ok(s3gw::Credentials::parse(
            &text,
            &path.display().to_string(),
        )?);
    }
    match (
        std::env::var("DFS_S3_ACCESS_KEY"),
        std::env::var("DFS_S3_SECRET_KEY"),
    ) {
        (Ok(a), Ok(s)) if !a.is_empty() && !s.is_empty() => {
            Ok(s3gw::Credentials(vec![(a, s)]))
        }
        _ => anyhow::bail!(
            "no S3 credentials: pass --credentials-file F ('ACCESS_KEY SECRET_KEY' per line) or set DFS_S3_ACCESS_KEY and DFS_S3_SECRET_KEY"
        ),
    }
}

/// Without the `s3` feature (the demo's build) there is no gateway to run.
#[cfg(not(feature = "s3"))]
pub async fn run(_a: Args) -> Result<()> {
    anyhow::bail!(
        "this dfs-sim was built without the S3 gateway; rebuild it with the default features (cargo build --release)"
    )
}

#[cfg(feature = "s3")]
pub async fn run(a: Args) -> Result<()> {
    let credentials = credentials(a.credentials_file.as_ref())?;
    let client = a.client.config()?;
    let listener = bind(&a.listen).await?;
    let local = listener.local_addr()?;
    let ttl = Duration::from_secs(a.upload_ttl_s.max(1));
    let cfg = s3gw::Config {
        client,
        credentials,
        upload_ttl: ttl,
        gc_every: (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(600)),
    };
    announce(&format!(
        "S3 gateway listening on {local}, endpoint http://{local}, coordinator {}",
        a.client.coord
    ));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(s3gw::run(listener, cfg, rx));
    shutdown_signal().await;
    let _ = tx.send(true);
    server.await??;
    Ok(())
}
