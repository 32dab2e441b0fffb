//! `dfs-sim data`: the dashboard's data endpoint, a client-side process
//! that puts and gets files for the page (the coordinator never touches
//! chunk bytes). Point the coordinator's page at it with
//! `coord --http-data-url http://ADDR`.

use super::ClientArgs;
#[cfg(feature = "http")]
use super::{announce, bind, shutdown_signal};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address the page sends files to and fetches them from.
    #[arg(long, default_value = "127.0.0.1:4081")]
    pub listen: String,
    /// File holding the token every request must carry (the dashboard's);
    /// needed off loopback.
    #[arg(long, value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,
    /// The dashboard's origin (e.g. http://127.0.0.1:4080), for CORS;
    /// default any.
    #[arg(long, default_value = "*")]
    pub allow_origin: String,
    /// Largest file taken in or handed out (e.g. 1GiB).
    #[arg(long, default_value = "1GiB", value_name = "SIZE")]
    pub max_size: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[cfg(not(feature = "http"))]
pub async fn run(_a: Args) -> Result<()> {
    anyhow::bail!(
        "this dfs-sim was built without the HTTP faces; rebuild it with the default features (cargo build --release)"
    )
}

#[cfg(feature = "http")]
pub async fn run(a: Args) -> Result<()> {
    let client = a.client.config()?;
    let cfg = web::data::DataConfig {
        token: super::http_token(a.http_token_file.as_ref(), a.client.secret_file.as_ref())?,
        max_bytes: crate::format::parse_size(&a.max_size)
            .map_err(|e| anyhow::anyhow!("--max-size: {e}"))?,
        allow_origin: a.allow_origin.clone(),
        tmp_dir: std::env::temp_dir(),
    };
    let listener = bind(&a.listen).await?;
    let local = listener.local_addr()?;
    announce(&format!(
        "data endpoint listening on {local}, files at http://{local}/files/, coordinator {}",
        a.client.coord
    ));
    web::data::serve_data(listener, client, cfg, shutdown_signal()).await?;
    Ok(())
}
