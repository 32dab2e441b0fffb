//! One module per subcommand: its arguments and what it does.

pub mod chaos;
pub mod cluster_state;
pub mod coord;
pub mod coordinators;
pub mod cp;
pub mod data;
pub mod drain;
pub mod fsck;
pub mod get;
pub mod incidents;
pub mod key;
pub mod kill;
pub mod loadgen;
pub mod ls;
pub mod mount;
#[cfg(not(feature = "http"))]
pub mod no_http;
pub mod node;
pub mod put;
pub mod rebalance;
pub mod retag;
pub mod rm;
pub mod s3;
pub mod scrub;
pub mod sim;
pub mod start;
pub mod stat;
pub mod status;
pub mod up;

use anyhow::{Context, Result};
use client::{ClientConfig, CoordClient};
use protocol::{FileName, Secret};
use std::path::PathBuf;

/// Options every client command shares.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Coordinator address, or every member of a coordinator group
    /// (`a,b,c`): requests find the leader.
    #[arg(long, env = "DFS_COORD", default_value = client::config::DEFAULT_COORD)]
    pub coord: String,
    /// File holding the cluster's shared secret, for operator commands
    /// (else DFS_SECRET, if set).
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// File holding a client key (`NAME:HEX`, from `dfs-sim key create`;
    /// else DFS_KEY, if set).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

impl ClientArgs {
    pub fn config(&self) -> Result<ClientConfig> {
        let mut cfg = ClientConfig::new(self.coord.clone());
        cfg.cred = client_credential(self.secret_file.as_ref(), self.key_file.as_ref())?;
        Ok(cfg)
    }

    pub async fn connect(&self) -> Result<CoordClient> {
        Ok(CoordClient::connect(&self.config()?).await?)
    }
}

pub fn load_secret(file: Option<&PathBuf>) -> Result<Option<Secret>> {
    Secret::load(file.map(|p| p.as_path())).map_err(anyhow::Error::msg)
}

/// The token `--http` requires: the `--http-token-file`, else the cluster
/// secret (its file, else DFS_SECRET), else none.
pub fn http_token(
    token_file: Option<&PathBuf>,
    secret_file: Option<&PathBuf>,
) -> Result<Option<String>> {
    let text = match (token_file, secret_file) {
        (Some(f), _) | (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?
        }
        (None, None) => match std::env::var("DFS_SECRET") {
            Ok(s) => s,
            Err(_) => return Ok(None),
        },
    };
    let t = text.trim();
    if t.is_empty() {
        anyhow::bail!("the http token is empty");
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        anyhow::bail!(
            "the http token must be printable ASCII without spaces (it travels in a header); give one with --http-token-file"
        );
    }
    Ok(Some(t.to_string()))
}

/// A client's credential: a client key if one is given, else the cluster
/// secret (which makes an operator), else none (unsecured clusters).
pub fn client_credential(
    secret_file: Option<&PathBuf>,
    key_file: Option<&PathBuf>,
) -> Result<Option<protocol::Credential>> {
    if let Some(k) = protocol::Credential::load_client_key(key_file.map(|p| p.as_path()))
        .map_err(anyhow::Error::msg)?
    {
        return Ok(Some(k));
    }
    Ok(load_secret(secret_file)?.map(protocol::Credential::Internal))
}

/// Refuses to serve a non-loopback address without a secret: anyone who
/// can reach it could otherwise read, write and delete (Garage's rule).
pub fn check_exposure(listen: &str, secured: bool, insecure: bool) -> Result<()> {
    let loopback = listen
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or_else(|_| listen.starts_with("localhost:"));
    if !loopback && !secured && !insecure {
        anyhow::bail!(
            "refusing to listen on {listen} without a secret: anyone who can reach it could read, write and delete data. Pass --secret-file FILE (the same file on the coordinator and every node), or --insecure if this network is trusted"
        );
    }
    Ok(())
}

pub fn file_name(s: &str) -> Result<FileName> {
    FileName::new(s).map_err(|e| anyhow::anyhow!("invalid name: {e}"))
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Binds a listener with an error that names the address.
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Prints a line and flushes, so a parent process reading our stdout (a
/// test, `dfs-sim up`) sees it at once.
pub fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints a typed report (`client::report`) as pretty JSON.
pub fn print_json<T: serde::Serialize>(v: &T) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
