//! `dfs-sim key create|revoke|list`: client keys of a secured cluster.
//!
//! A client key lets its holder put, get, list and remove files, and
//! nothing else: nodes serve it only chunks the coordinator granted, and
//! operator commands (drain, forget, scrub, keys) need the cluster secret.

use super::ClientArgs;
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// `create NAME` prints a new key as `NAME:HEX` (the content of a key
    /// file for `--key-file`, or the value of DFS_KEY); `revoke NAME` ends
    /// it at once; `list` names the keys in force.
    #[arg(value_enum)]
    pub action: Action,
    pub name: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Action {
    Create,
    Revoke,
    List,
}

pub async fn run(a: Args) -> Result<()> {
    let cfg = a.client.config()?;
    if !matches!(cfg.cred, Some(protocol::Credential::Internal(_))) {
        bail!("managing keys needs the cluster secret: pass --secret-file FILE or set DFS_SECRET");
    }
    let mut coord = client::CoordClient::connect(&cfg).await?;
    let name = || {
        a.name
            .clone()
            .ok_or_else(|| anyhow::anyhow!("name the key: dfs-sim key {:?} NAME", a.action))
    };
    match a.action {
        Action::Create => outln!("{}", coord.key_create(name()?).await?),
        Action::Revoke => {
            let name = name()?;
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
