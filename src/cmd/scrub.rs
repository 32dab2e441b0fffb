//! `dfs-sim scrub [--node N] [--wait]`: verify every stored copy now.

use super::ClientArgs;
use anyhow::Result;
use protocol::{NodeId, NodeState};
use std::collections::HashMap;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this node [default: every node].
    #[arg(long)]
    pub node: Option<String>,
    /// Wait until the pass has finished on every node asked.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: Args) -> Result<()> {
    let node = a
        .node
        .as_deref()
        .map(|n| NodeId::new(n).map_err(anyhow::Error::msg))
        .transpose()?;
    let mut coord = a.client.connect().await?;
    let before: HashMap<NodeId, u64> = coord
        .status()
        .await?
        .nodes
        .into_iter()
        .filter(|n| n.state != NodeState::Dead && node.as_ref().is_none_or(|x| *x == n.id))
        .map(|n| (n.id, n.stats.scrub_passes))
        .collect();
    coord.scrub(node).await?;
    if !a.wait {
        outln!("scrub started on {} node(s)", before.len());
        return Ok(());
    }
    loop {
        let s = coord.status().await?;
        let pending: Vec<&protocol::NodeStatus> = s
            .nodes
            .iter()
            .filter(|n| {
                n.state != NodeState::Dead
                    && before
                        .get(&n.id)
                        .is_some_and(|p| n.stats.scrub_passes <= *p)
            })
            .collect();
        if pending.is_empty() {
            let found: u64 = s
                .nodes
                .iter()
                .filter(|n| before.contains_key(&n.id))
                .map(|n| n.stats.corrupt_found)
                .sum();
            outln!(
                "scrub finished on {} node(s); corrupt copies found since the nodes started: {found}",
                before.len()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
