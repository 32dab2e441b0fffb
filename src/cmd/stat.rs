//! `dfs-sim stat NAME`: a file's chunks, their copies and its health.

use super::{file_name, print_json, ClientArgs};
use crate::format::bytes;
use anyhow::Result;
use protocol::health::{file_health, StripeCopies};
use protocol::{ChunkInfo, Codec, FileInfo};

fn live_copies(c: &ChunkInfo) -> usize {
    c.locations.iter().filter(|l| l.alive).count()
}

fn health(f: &FileInfo) -> protocol::health::Health {
    let stripes: Vec<StripeCopies> = f
        .stripes
        .iter()
        .map(|s| StripeCopies {
            data: s.data.iter().map(|c| live_copies(c) as u32).collect(),
            parity: s.parity.iter().map(|p| live_copies(p) as u32).collect(),
        })
        .collect();
    match codes::Code::new(f.scheme) {
        Ok(code) => file_health(&code, &stripes, f.replication),
        Err(_) => protocol::health::Health::Lost,
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    pub name: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn chunk_json(c: &ChunkInfo, role: &str) -> serde_json::Value {
    serde_json::json!({
        "role": role,
        "id": c.header.id.to_hex(),
        "raw_len": c.header.raw_len,
        "stored_len": c.header.stored_len,
        "codec": match c.header.codec { Codec::Raw => "raw", Codec::Lz4 => "lz4" },
        "sha256": c.header.raw_sha256.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "live_copies": live_copies(c),
        "locations": c.locations.iter().map(|l| serde_json::json!({
            "node": l.node.id.as_str(), "addr": l.node.addr, "alive": l.alive,
            "domain": l.domain,
        })).collect::<Vec<_>>(),
    })
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
    let health = health(&f);
    let roles = f.scheme.parity_roles();
    let role = |j: usize| roles.get(j).map(|r| r.to_string()).unwrap_or_default();
    if a.json {
        print_json(&serde_json::json!({
            "name": f.name.as_str(),
            "size": f.size,
            "created_ms": f.created_ms,
            "chunk_size": f.chunk_size,
            "replication": f.replication,
            "scheme": f.scheme.to_string(),
            "health": health.as_str(),
            "stripes": f.stripes.iter().map(|s| serde_json::json!({
                "data": s.data.iter().map(|c| chunk_json(c, "data")).collect::<Vec<_>>(),
                "parity": s.parity.iter().enumerate().map(|(j, c)| chunk_json(c, &role(j))).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }));
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
