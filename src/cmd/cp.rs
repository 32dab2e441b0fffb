//! `dfs-sim cp SRC DST`: copy a file inside the cluster.

use super::{file_name, ClientArgs};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub src: String,
    pub dst: String,
    /// Replace DST if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Every node holding a chunk of SRC copies it on its own disk under a new
/// id; the bytes never cross the network or pass this process.
pub async fn run(a: Args) -> Result<()> {
    let (src, dst) = (file_name(&a.src)?, file_name(&a.dst)?);
    let s = a
        .client
        .connect()
        .await?
        .copy(src.clone(), dst.clone(), None, None, a.force)
        .await?;
    outln!(
        "copied {src} -> {dst} ({} bytes, {} chunks)",
        s.size,
        s.chunks
    );
    Ok(())
}
