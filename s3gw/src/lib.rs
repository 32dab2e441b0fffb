//! An S3-compatible gateway in front of a dfs-sim cluster.
//!
//! The gateway is a *client* of the cluster, built only on the `client`
//! crate: object bytes stream between the HTTP connection and the nodes
//! through the client's put and get pipelines, names and metadata live in
//! the coordinator's catalog (see [`names`] for the mapping). It keeps no
//! state of its own, so any number of gateways may serve one cluster.
//!
//! HTTP, SigV4 (headers and presigned URLs) and the S3 XML are handled by
//! the `s3s` crate; this crate implements its `S3` trait.

pub mod names;
mod service;

pub use service::Gateway;

use s3s::auth::{S3Auth, SecretKey};
use s3s::service::S3ServiceBuilder;
use std::collections::HashMap;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Credentials { path: String, message: String },
    #[error("S3 gateway: {0}")]
    Io(#[from] std::io::Error),
}

/// Access key / secret key pairs the gateway accepts.
#[derive(Clone, Default)]
pub struct Credentials(pub Vec<(String, String)>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.0.iter().map(|(a, _)| a.as_str()).collect();
        write!(f, "Credentials({keys:?}, secrets hidden)")
    }
}

impl Credentials {
    /// Parses a credentials file: one `ACCESS_KEY SECRET_KEY` pair per line;
    /// blank lines and `#` comments are skipped.
    pub fn parse(text: &str, path: &str) -> Result<Self, Error> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(s), None) if a.len() <= 128 && s.len() <= 128 => {
                    out.push((a.to_string(), s.to_string()))
                }
                _ => {
                    return Err(Error::Credentials {
                        path: path.into(),
                        message: format!(
                        "line {}: expected 'ACCESS_KEY SECRET_KEY' (each at most 128 characters)",
                        i + 1
                    ),
                    })
                }
            }
        }
        if out.is_empty() {
            return Err(Error::Credentials {
                path: path.into(),
                message: "no 'ACCESS_KEY SECRET_KEY' line".into(),
            });
        }
        Ok(Credentials(out))
    }
}

/// The configured keys. s3s verifies the SigV4 signature (header or
/// presigned) with the secret returned here; an unknown access key is
/// `InvalidAccessKeyId`, as S3 answers.
struct KeyAuth(HashMap<String, SecretKey>);

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<SecretKey> {
        self.0
            .get(access_key)
            .cloned()
            .ok_or_else(|| s3s::s3_error!(InvalidAccessKeyId, "unknown access key"))
    }
}

/// What a gateway needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub client: client::ClientConfig,
    pub credentials: Credentials,
    /// Multipart uploads untouched for this long are aborted and their parts
    /// collected (by whichever gateway notices first).
    pub upload_ttl: Duration,
    /// How often to look for abandoned uploads.
    pub gc_every: Duration,
}

/// Serves S3 on `listener` until `stop` turns true.
pub async fn run(
    listener: TcpListener,
    cfg: Config,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    let gw = Gateway::new(cfg.clone());
    let auth = KeyAuth(
        cfg.credentials
            .0
            .iter()
            .map(|(a, s)| (a.clone(), SecretKey::from(s.clone())))
            .collect(),
    );
    let mut builder = S3ServiceBuilder::new(gw.clone());
    builder.set_auth(auth);
    let service = builder.build();
    let gc = tokio::spawn(service::gc_loop(gw, stop.clone()));
    let http = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tracing::info!(addr = %listener.local_addr()?, "S3 gateway listening");
    loop {
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = sock.set_nodelay(true);
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(sock), service.clone());
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    gc.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}
