//! `dfs-sim fsck [NAME...] [--deep] [--what-if NODES]`: which files are
//! healthy, degraded, at risk or lost, and why.

use super::{file_name, ClientArgs};
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
    a.client.config()?;
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
    let mut out = Out::new(a.json, a.deep);
    if names.is_empty() {
        // The whole namespace, a bounded page at a time, each page checked
        // (and deep-checked) and printed before the next is asked for.
        let mut after = None;
        loop {
            let mut page = coord
                .fsck_page(after.clone(), protocol::MAX_FSCK_PAGE, what_if.clone())
                .await?;
            let Some(last) = page.files.last() else { break };
            after = Some(last.name.clone());
            if a.deep {
                deep_check(&mut coord, &mut page, &mut out).await?;
            }
            out.page(&page);
        }
    } else {
        let mut report = coord.fsck(names, what_if.clone()).await?;
        if a.deep {
            deep_check(&mut coord, &mut report, &mut out).await?;
        }
        out.page(&report);
    }
    let lost = out.finish(&what_if);
    if lost > 0 {
        if what_if.is_empty() {
            bail!("{lost} file(s) lost");
        }
        bail!(
            "{lost} file(s) would be lost if {} failed",
            joined(&what_if)
        );
    }
    Ok(())
}

/// Reads and verifies every live copy of every chunk of the files in
/// `report`, reporting bad copies, and worsens each file's health to what
/// the readable copies support.
async fn deep_check(
    coord: &mut client::coord_client::CoordClient,
    report: &mut FsckReport,
    out: &mut Out,
) -> Result<()> {
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
                            out.verified += 1;
                            ok += 1;
                        }
                        Err(reason) => {
                            let _ = coord
                                .report_bad(c.header.id, loc.node.id.clone(), reason.clone())
                                .await;
                            out.bad.push(BadCopy {
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
    Ok(())
}

/// The report as it streams out: lines (or JSON array elements) per page,
/// counts kept for the summary, so memory does not grow with the number
/// of files.
struct Out {
    json: bool,
    deep: bool,
    /// Files printed so far, by health (healthy, degraded, at-risk, lost).
    counts: [u64; 4],
    width: usize,
    verified: u64,
    bad: Vec<BadCopy>,
}

impl Out {
    fn new(json: bool, deep: bool) -> Out {
        Out {
            json,
            deep,
            counts: [0; 4],
            width: 4,
            verified: 0,
            bad: Vec::new(),
        }
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn page(&mut self, r: &FsckReport) {
        if self.total() == 0 {
            if self.json {
                let what_if: Vec<String> = r.what_if.iter().map(|n| n.to_string()).collect();
                outln!(
                    "{{\"what_if\": {},\n\"files\": [",
                    serde_json::to_string(&what_if).unwrap_or_default()
                );
            } else if !r.what_if.is_empty() {
                outln!("if {} failed now:", joined(&r.what_if));
            }
        }
        // Column width grows with the names seen, never shrinks.
        let widest = r.files.iter().map(|f| f.name.as_str().len()).max();
        self.width = self.width.max(widest.unwrap_or(4).min(60));
        let json = FsckJson::from(r);
        for (f, j) in r.files.iter().zip(&json.files) {
            if self.json {
                let sep = if self.total() == 0 { "  " } else { ", " };
                outln!("{sep}{}", serde_json::to_string(j).unwrap_or_default());
            } else {
                outln!("{}", line(f, self.width));
            }
            self.counts[level(f.health)] += 1;
        }
    }

    /// Prints the summary; returns the number of lost files.
    fn finish(&mut self, what_if: &[NodeId]) -> u64 {
        let c = self.counts;
        if self.json {
            if self.total() == 0 {
                let what_if: Vec<String> = what_if.iter().map(|n| n.to_string()).collect();
                outln!(
                    "{{\"what_if\": {},\n\"files\": [",
                    serde_json::to_string(&what_if).unwrap_or_default()
                );
            }
            match self.deep.then(|| DeepReport {
                verified_copies: self.verified,
                bad_copies: std::mem::take(&mut self.bad),
            }) {
                Some(d) => outln!(
                    "],\n\"deep\": {}}}",
                    serde_json::to_string(&d).unwrap_or_default()
                ),
                None => outln!("]}}"),
            }
            return c[3];
        }
        outln!(
            "{} file(s): {} healthy, {} degraded, {} at-risk, {} lost",
            self.total(),
            c[0],
            c[1],
            c[2],
            c[3]
        );
        if self.deep {
            outln!(
                "deep check: {} copies verified, {} bad",
                self.verified,
                self.bad.len()
            );
            for b in &self.bad {
                outln!(
                    "  bad copy of {} chunk {} on {}: {} (reported for repair)",
                    b.file,
                    &b.chunk[..12],
                    b.node,
                    b.reason
                );
            }
        }
        c[3]
    }
}

fn level(h: Health) -> usize {
    match h {
        Health::Healthy => 0,
        Health::Degraded => 1,
        Health::AtRisk => 2,
        Health::Lost => 3,
    }
}

fn joined(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// One file's line of the text report.
fn line(f: &protocol::FileHealth, width: usize) -> String {
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
    line
}
