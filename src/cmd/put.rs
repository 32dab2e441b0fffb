//! `dfs-sim put FILE [--name NAME]`: store a local file.

use super::{file_name, ClientArgs};
use crate::format::{bytes, rate};
use anyhow::{anyhow, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Local file to store.
    pub file: PathBuf,
    /// Name in the store [default: the file's name].
    #[arg(long)]
    pub name: Option<String>,
    /// Replace an existing file of that name.
    #[arg(long)]
    pub force: bool,
    /// This file's erasure code (none, xor:K, rs:K+M, lrc:K+L+G)
    /// [default: the cluster's].
    #[arg(long, value_parser = super::coord::parse_scheme)]
    pub parity: Option<protocol::Scheme>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: Args) -> Result<()> {
    let name = match &a.name {
        Some(n) => file_name(n)?,
        None => {
            let base = a.file.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                anyhow!(
                    "cannot derive a name from {}; pass --name",
                    a.file.display()
                )
            })?;
            file_name(base)?
        }
    };
    let mut cfg = a.client.config()?;
    cfg.scheme = a.parity;
    let total = std::fs::metadata(&a.file).map(|m| m.len()).unwrap_or(0);
    let bar = crate::progress::Progress::new("put", name.as_str(), total);
    let res = client::put::put(&cfg, &a.file, name, a.force, bar.callback()).await;
    bar.finish();
    let s = res?;
    let secs = s.elapsed.as_secs_f64();
    outln!(
        "put {}: {} in {:.1} s, {}, {} chunk{}, {} replica{} + {}",
        s.name,
        bytes(s.size),
        secs,
        rate(s.size, secs),
        s.chunks,
        if s.chunks == 1 { "" } else { "s" },
        s.replication,
        if s.replication == 1 { "" } else { "s" },
        s.scheme
    );
    Ok(())
}
