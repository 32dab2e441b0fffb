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
        .map(|l| {
            format!(
                "{} [{}]{}",
                l.node.id,
                l.domain,
                if l.alive { "" } else { " (dead)" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(a: Args) -> Result<()> {
    let name = file_name(&a.name)?;
    let f = a.client.connect().await?.lookup(name).await?;
    let health = file_info_health(&f);
    let roles = f.scheme.parity_roles();
    let role = |j: usize| roles.get(j).map(|r| r.to_string()).unwrap_or_default();
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
        "protection:  {} replica(s) of data + {} ({:.2}x for full stripes)",
        f.replication,
        f.scheme,
        (f.replication as usize * f.scheme.data_count() + f.scheme.parity_count()) as f64
            / f.scheme.data_count() as f64
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
        for (j, p) in s.parity.iter().enumerate() {
            outln!(
                "  {:<10} {}  {:>10} -> {:>10}  {}  ({})",
                format!("parity {j}"),
                &p.header.id.to_hex()[..12],
                bytes(p.header.raw_len),
                bytes(p.header.stored_len),
                where_(p),
                role(j)
            );
        }
    }
    Ok(())
}
