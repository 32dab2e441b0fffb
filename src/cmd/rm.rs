//! `dfs-sim rm NAME`: remove a file.

use super::{file_name, ClientArgs};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub name: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: Args) -> Result<()> {
    let name = file_name(&a.name)?;
    a.client.connect().await?.remove(name.clone()).await?;
    outln!("removed {name}");
    Ok(())
}
