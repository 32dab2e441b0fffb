//! `dfs-sim ls [PREFIX]`: list files.

use super::{print_json, ClientArgs};
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

pub async fn run(a: Args) -> Result<()> {
    let files = a.client.connect().await?.list(a.prefix.clone()).await?;
    if a.json {
        print_json(
            &files
                .iter()
                .map(FileSummaryReport::from)
                .collect::<Vec<_>>(),
        );
        return Ok(());
    }
    for f in &files {
        outln!("{:>10}  {:>6}  {}", bytes(f.size), f.chunks, f.name);
    }
    Ok(())
}
