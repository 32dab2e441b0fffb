//! `dfs-sim retag` (operator): give an owner tag to every copy written
//! before tags, so that `coord --rebuild-from-nodes` can place it.

use super::ClientArgs;
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: Args) -> Result<()> {
    let mut coord = a.client.connect().await?;
    let (chunks, failed) = coord.retag().await?;
    outln!("{chunks} chunks walked; copies without a tag were tagged ({failed} could not be: their node was down or refused)");
    if failed > 0 {
        anyhow::bail!(
            "{failed} copies are still untagged; run dfs-sim retag again once their nodes are up"
        );
    }
    Ok(())
}
