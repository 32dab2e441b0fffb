//! `dfs-sim get NAME [--out PATH]`: fetch a file.

use super::{file_name, ClientArgs};
use crate::format::{bytes, rate};
use anyhow::Result;
use client::get::Output;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Name in the store.
    pub name: String,
    /// Where to write it ('-' for stdout) [default: the name's last segment].
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: Args) -> Result<()> {
    let name = file_name(&a.name)?;
    let out = match &a.out {
        Some(p) if p.as_os_str() == "-" => Output::Stdout,
        Some(p) => Output::File(p.clone()),
        None => Output::File(PathBuf::from(name.base_name())),
    };
    let to_stdout = matches!(out, Output::Stdout);
    let cfg = a.client.config()?;
    // Only a terminal gets a bar, and only then is the size looked up
    // first (one extra round trip, for a bar with a length and an ETA).
    let total = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && !to_stdout {
        a.client.connect().await?.lookup(name.clone()).await?.size
    } else {
        0
    };
    let bar = crate::progress::Progress::new("get", name.as_str(), total);
    let res = client::get::get(&cfg, name, out, bar.callback()).await;
    bar.finish();
    let s = res?;
    let secs = s.elapsed.as_secs_f64();
    let mut line = format!(
        "get {}: {} in {:.1} s, {}",
        s.name,
        bytes(s.size),
        secs,
        rate(s.size, secs)
    );
    if s.rebuilt > 0 {
        line += &format!(", {} chunk(s) rebuilt from parity", s.rebuilt);
    }
    if s.failed_copies > 0 {
        line += &format!(", {} unreadable copies skipped", s.failed_copies);
    }
    if to_stdout {
        eprintln!("{line}");
    } else {
        outln!("{line}");
    }
    Ok(())
}
