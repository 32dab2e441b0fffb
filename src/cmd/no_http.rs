//! Stand-in for the `web` crate in a build without the `http` feature (the
//! demo's: `scripts/demo.sh` builds with `--no-default-features`), so that
//! `coord` and `node` read the same either way: `--http` is refused at
//! once, with what to do, before anything would be served.

use anyhow::{bail, Result};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

const NOT_BUILT: &str =
    "this dfs-sim was built without the HTTP faces (dashboard, API, /metrics); \
     rebuild it with the default features (cargo build --release) to use --http";

pub struct WebConfig {
    pub token: Option<String>,
    pub admin_token: Option<String>,
    pub data_url: Option<String>,
}

impl WebConfig {
    pub fn check(&self, _addr: &std::net::SocketAddr) -> Result<()> {
        let _ = (&self.token, &self.admin_token, &self.data_url);
        bail!(NOT_BUILT)
    }
}

pub async fn serve_coord(
    _listener: TcpListener,
    _coord: Arc<coord::Coord>,
    _config: WebConfig,
    _shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    bail!(NOT_BUILT)
}

pub async fn serve_metrics(
    _listener: TcpListener,
    _config: WebConfig,
    _shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    bail!(NOT_BUILT)
}
