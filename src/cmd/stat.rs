//! `dfs-sim stat NAME`: a file's chunks, their copies and its health.

use super::{file_name, print_json, ClientArgs};
use crate::format::bytes;
use anyhow::Result;
use client::report::{file_info_health, StatReport};
use protocol::ChunkInfo;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub name: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn where_(c: &ChunkInfo) -> String {
    if c.locations.is_empty() {
        return "(no copies)".into();
    }
    c.locations
        .iter()
        .map(|l| format!("{}{}", l.node.id, if l.alive { "" } else { " (dead)" }))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(a: Args) -> Result<()> {
    let name = file_name(&a.name)?;
    let f = a.client.connect().await?.lookup(name).await?;
    let health = file_info_health(&f);
    let parity = f.stripes.iter().any(|s| s.parity.is_some());
    if a.json {
        print_json(&StatReport::from(&f));
        return Ok(());
    }
    let chunks: usize = f.stripes.iter().map(|s| s.data.len()).sum();
    outln!("name:        {}", f.name);
    outln!("size:        {} ({} bytes)", bytes(f.size), f.size);
    outln!(
        "chunks:      {chunks} in {} stripe(s), chunk size {}",
        f.stripes.len(),
        bytes(f.chunk_size)
    );
    outln!(
        "protection:  {} replica(s){}",
        f.replication,
        if parity { " + xor parity" } else { "" }
    );
    outln!("health:      {}", health.as_str());
    let mut index = 0;
    for (si, s) in f.stripes.iter().enumerate() {
        outln!("stripe {si}:");
        for c in &s.data {
            outln!(
                "  chunk {index:<4} {}  {:>10} -> {:>10}  {}",
                &c.header.id.to_hex()[..12],
                bytes(c.header.raw_len),
                bytes(c.header.stored_len),
                where_(c)
            );
            index += 1;
        }
        if let Some(p) = &s.parity {
            outln!(
                "  parity     {}  {:>10} -> {:>10}  {}",
                &p.header.id.to_hex()[..12],
                bytes(p.header.raw_len),
                bytes(p.header.stored_len),
                where_(p)
            );
        }
    }
    Ok(())
}
