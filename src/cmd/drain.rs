//! `dfs-sim drain NODE`: move every copy off a node so it can be removed.

use super::ClientArgs;
use anyhow::{bail, Result};
use protocol::NodeId;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    pub node: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `dfs-sim forget NODE`: drop a stopped, empty node from the cluster.
pub async fn forget(a: ForgetArgs) -> Result<()> {
    let node = NodeId::new(&a.node).map_err(anyhow::Error::msg)?;
    a.client.connect().await?.forget(node.clone()).await?;
    outln!("{node} removed from the cluster");
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct Args {
    pub node: String,
    /// Stop draining; the node takes new chunks again.
    #[arg(long)]
    pub cancel: bool,
    /// Wait until the node holds nothing, showing progress.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: Args) -> Result<()> {
    let node = NodeId::new(&a.node).map_err(anyhow::Error::msg)?;
    let mut coord = a.client.connect().await?;
    coord.drain(node.clone(), a.cancel).await?;
    if a.cancel {
        outln!("drain of {node} cancelled");
        return Ok(());
    }
    if !a.wait {
        outln!("draining {node}; `dfs-sim status` shows progress");
        return Ok(());
    }
    let mut last = u64::MAX;
    loop {
        let s = coord.status().await?;
        let Some(n) = s.nodes.iter().find(|n| n.id == node) else {
            bail!("node {node} disappeared from the cluster");
        };
        if n.catalog_chunks == 0 {
            outln!("{node} is drained: it holds no chunk; stop it, then `dfs-sim forget {node}`");
            return Ok(());
        }
        if n.catalog_chunks != last {
            outln!("{node}: {} chunk(s) left to move", n.catalog_chunks);
            last = n.catalog_chunks;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
