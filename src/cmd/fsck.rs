//! `dfs-sim fsck [NAME...] [--deep] [--what-if NODES]`: which files are
//! healthy, degraded, at risk or lost, and why.

use super::{file_name, print_json, ClientArgs};
use crate::format::bytes;
use anyhow::{bail, Result};
use client::report::{repair_str, BadCopy, DeepReport, FsckJson};
use protocol::data_client::NodePool;
use protocol::handshake::Role;
use protocol::health::Health;
use protocol::{chunk, FsckReport, NodeId};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files to check [default: all].
    pub names: Vec<String>,
    /// Also read and verify every copy of every chunk (slow: reads it all).
    #[arg(long)]
    pub deep: bool,
    /// Answer for the case these nodes failed now (comma-separated ids;
    /// `domain=NAME` stands for every node of that failure domain).
    #[arg(long, value_delimiter = ',', value_name = "NODE,...")]
    pub what_if: Vec<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: Args) -> Result<()> {
    let names = a
        .names
        .iter()
        .map(|n| file_name(n))
        .collect::<Result<Vec<_>>>()?;
    let cfg = a.client.config()?;
    let mut coord = a.client.connect().await?;
    let mut what_if = Vec::new();
    let mut status = None;
    for s in a.what_if.iter().filter(|s| !s.is_empty()) {
        match s.strip_prefix("domain=") {
            Some(d) => {
                if status.is_none() {
                    status = Some(coord.status().await?);
                }
                let nodes: Vec<NodeId> = status
                    .as_ref()
                    .map(|st| {
                        st.nodes
                            .iter()
                            .filter(|n| n.domain == d)
                            .map(|n| n.id.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                if nodes.is_empty() {
                    bail!("--what-if domain={d}: no node of this cluster is in domain {d:?}");
                }
                what_if.extend(nodes);
            }
            None => what_if.push(NodeId::new(s).map_err(anyhow::Error::msg)?),
        }
    }
    what_if.sort();
    what_if.dedup();
    let mut report = coord.fsck(names, what_if).await?;
    let (mut verified, mut bad) = (0u64, Vec::new());
    if a.deep {
        let _ = &cfg;
        let pool = NodePool::new(Role::Client, None);
        for f in report.files.iter_mut() {
            let info = coord.lookup(f.name.clone()).await?;
            // Copies that actually verified: a file whose chunks cannot be
            // read or rebuilt from them is lost, whatever the catalog says.
            let mut readable = Vec::new();
            for s in &info.stripes {
                let mut copies = protocol::health::StripeCopies {
                    data: Vec::new(),
                    parity: Vec::new(),
                };
                for (ci, c) in s.data.iter().chain(s.parity.iter()).enumerate() {
                    let mut ok = 0u32;
                    for loc in c.locations.iter().filter(|l| l.alive) {
                        let res = match pool
                            .fetch(&loc.node.addr, &c.header, c.token.as_ref())
                            .await
                        {
                            Ok(stored) => chunk::decode(&c.header, stored)
                                .map(|_| ())
                                .map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        match res {
                            Ok(()) => {
                                verified += 1;
                                ok += 1;
                            }
                            Err(reason) => {
                                let _ = coord
                                    .report_bad(c.header.id, loc.node.id.clone(), reason.clone())
                                    .await;
                                bad.push(BadCopy {
                                    file: f.name.to_string(),
                                    chunk: c.header.id.to_hex(),
                                    node: loc.node.id.to_string(),
                                    reason,
                                });
                            }
                        }
                    }
                    if ci < s.data.len() {
                        copies.data.push(ok);
                    } else {
                        copies.parity.push(ok);
                    }
                }
                readable.push(copies);
            }
            // The same decodability function as the coordinator's fsck.
            let found = match codes::Code::new(info.scheme) {
                Ok(code) => protocol::health::file_health(&code, &readable, info.replication),
                Err(_) => Health::Lost,
            };
            if found > f.health {
                f.health = found;
            }
        }
    }
    let lost = report
        .files
        .iter()
        .filter(|f| f.health == Health::Lost)
        .count();
    if a.json {
        print_json(&json(&report, a.deep.then_some((verified, &bad[..]))));
    } else {
        print_text(&report, a.deep.then_some((verified, &bad[..])));
    }
    if lost > 0 {
        if report.what_if.is_empty() {
            bail!("{lost} file(s) lost");
        }
        bail!(
            "{lost} file(s) would be lost if {} failed",
            joined(&report.what_if)
        );
    }
    Ok(())
}

fn joined(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn json(r: &FsckReport, deep: Option<(u64, &[BadCopy])>) -> FsckJson {
    let mut v = FsckJson::from(r);
    v.deep = deep.map(|(verified, bad)| DeepReport {
        verified_copies: verified,
        bad_copies: bad.to_vec(),
    });
    v
}

fn print_text(r: &FsckReport, deep: Option<(u64, &[BadCopy])>) {
    if !r.what_if.is_empty() {
        outln!("if {} failed now:", joined(&r.what_if));
    }
    let width = r
        .files
        .iter()
        .map(|f| f.name.as_str().len())
        .max()
        .unwrap_or(4)
        .min(60);
    for f in &r.files {
        let mut line = format!(
            "{:<width$}  {:<9} {:>10}",
            f.name.as_str(),
            f.health.as_str(),
            bytes(f.size)
        );
        if !f.chunks.is_empty() {
            let what: Vec<String> = f
                .chunks
                .iter()
                .take(6)
                .map(|c| {
                    let which = match c.index {
                        Some(i) => format!("chunk {i}"),
                        None => format!("parity of stripe {}", c.stripe),
                    };
                    format!(
                        "{which} {}/{} live, repair {}",
                        c.live,
                        c.target,
                        repair_str(c.repair)
                    )
                })
                .collect();
            line += &format!("  {}", what.join("; "));
            if f.chunks.len() > 6 {
                line += &format!("; and {} more", f.chunks.len() - 6);
            }
        }
        outln!("{line}");
    }
    let count = |h: Health| r.files.iter().filter(|f| f.health == h).count();
    outln!(
        "{} file(s): {} healthy, {} degraded, {} at-risk, {} lost",
        r.files.len(),
        count(Health::Healthy),
        count(Health::Degraded),
        count(Health::AtRisk),
        count(Health::Lost)
    );
    if let Some((verified, bad)) = deep {
        outln!("deep check: {verified} copies verified, {} bad", bad.len());
        for b in bad {
            outln!(
                "  bad copy of {} chunk {} on {}: {} (reported for repair)",
                b.file,
                &b.chunk[..12],
                b.node,
                b.reason
            );
        }
    }
}
