//! `dfs-sim ls [PREFIX]`: list files.

use super::ClientArgs;
use crate::format::bytes;
use anyhow::Result;
use client::report::FileSummaryReport;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only names starting with this.
    #[arg(default_value = "")]
    pub prefix: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Pages through the namespace (bounded pages, streamed out as they come),
/// so listing millions of names needs neither one huge reply nor the whole
/// list in memory on either end.
pub async fn run(a: Args) -> Result<()> {
    let mut coord = a.client.connect().await?;
    let mut after: Option<String> = None;
    let mut first = true;
    if a.json {
        outln!("[");
    }
    loop {
        let page = coord
            .list_page(a.prefix.clone(), after.clone(), protocol::MAX_LIST_PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.name.to_string());
        for f in &page {
            if a.json {
                let line = serde_json::to_string(&FileSummaryReport::from(f))?;
                outln!("{}{line}", if first { "  " } else { ", " });
            } else {
                outln!("{:>10}  {:>6}  {}", bytes(f.size), f.chunks, f.name);
            }
            first = false;
        }
    }
    if a.json {
        outln!("]");
    }
    Ok(())
}
