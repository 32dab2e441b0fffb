//! `dfs-sim key create|revoke|list`: client keys of a secured cluster.
//!
//! A client key lets its holder put, get, list and remove files, and
//! nothing else: nodes serve it only chunks the coordinator granted, and
//! operator commands (drain, forget, scrub, keys) need the cluster secret.

use super::ClientArgs;
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Issue a key; prints `NAME:HEX`, the content of a key file for
    /// `--key-file` (or the value of DFS_KEY).
    Create { name: String },
    /// Revoke a key: connections using it are refused from now on.
    Revoke { name: String },
    /// Names of the keys in force.
    List,
}

pub async fn run(a: Args) -> Result<()> {
    let cfg = a.client.config()?;
    if !matches!(cfg.cred, Some(protocol::Credential::Internal(_))) {
        bail!("managing keys needs the cluster secret: pass --secret-file FILE or set DFS_SECRET");
    }
    let mut coord = client::CoordClient::connect(&cfg).await?;
    match a.action {
        Action::Create { name } => outln!("{}", coord.key_create(name).await?),
        Action::Revoke { name } => {
            coord.key_revoke(name.clone()).await?;
            outln!("key {name} revoked");
        }
        Action::List => {
            for k in coord.key_list().await? {
                outln!("{k}");
            }
        }
    }
    Ok(())
}
