//! dfs-sim's HTTP faces, served from the coordinator process (`coord
//! --http ADDR`) and, for metrics only, from every node (`node --http ADDR`):
//!
//! - `/` — the live dashboard: static assets compiled into the binary, plain
//!   JavaScript polling the API; works offline, no build step.
//! - `/api/...` — JSON documents. Handlers are thin: they call the
//!   coordinator's own request handlers (`coord::cmd`) in process and
//!   serialize the same typed reports (`client::report`) the CLI's `--json`
//!   prints, so the page, the API and the CLI cannot disagree.
//! - `/metrics` — Prometheus text format.
//!
//! - `/api/events` — server-sent events: the status, then what changed.
//! - `POST /api/nodes/{id}/{action}`, `POST /api/rebalance` — actions,
//!   refused (401, nothing changed) without the admin token.
//!
//! The one place chunk bytes reach the coordinator is the bounded, verified
//! hex preview. Files go in and out through [`data`], served by a
//! client-side process (`dfs-sim data`), not by the coordinator.

mod actions;
mod api;
mod assets;
mod auth;
pub mod data;
pub mod error;
mod events;
pub mod metrics;
mod state;

pub use error::{Error, Result};

use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// How the HTTP face is served.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// When set, every request must carry it (`Authorization: Bearer T`, or
    /// `?token=T` for the page itself). Required off loopback, where a
    /// stranger could otherwise read the namespace.
    pub token: Option<String>,
    /// Required (`X-DFS-Admin: T`) by the action routes; without it every
    /// action is refused.
    pub admin_token: Option<String>,
    /// Where the page sends uploads and fetches downloads (a `dfs-sim data`
    /// endpoint), if any.
    pub data_url: Option<String>,
}

impl WebConfig {
    /// Refuses to serve a non-loopback address without a token.
    pub fn check(&self, addr: &std::net::SocketAddr) -> Result<()> {
        if !addr.ip().is_loopback() && self.token.is_none() {
            return Err(Error::TokenRequired(addr.to_string()));
        }
        Ok(())
    }
}

/// Serves the dashboard, the API and `/metrics` of the coordinator `coord`
/// until `shutdown` completes.
pub async fn serve_coord(
    listener: TcpListener,
    coord: Arc<coord::Coord>,
    config: WebConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.check(&listener.local_addr()?)?;
    let prom = metrics::install()?;
    let app = api::router(coord, prom, &config);
    tracing::info!(listen = %listener.local_addr()?, "dashboard serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Serves only `/metrics` (a node's).
pub async fn serve_metrics(
    listener: TcpListener,
    config: WebConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.check(&listener.local_addr()?)?;
    let prom = metrics::install()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let prom = prom.clone();
                async move { metrics::text_response(prom.render()) }
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            auth::Token(config.token.clone().map(Arc::from)),
            auth::require,
        ));
    tracing::info!(listen = %listener.local_addr()?, "metrics serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
