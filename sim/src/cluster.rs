//! The simulated cluster at time zero: nodes, domains, spares, and a sample
//! of stripes placed by the coordinator's own `placement::plan_with`.
//!
//! # Sampling
//!
//! A 484 × 16 TB cluster at 70% holds millions of 64 MiB stripes; keeping
//! each in the event loop would be slow and pointless. The simulator asks
//! the real placement for `sample` stripes (one put of `sample × K` chunks,
//! as a large file would be planned, with the real load balancing and
//! domain spreading) and lets each stand for `weight` real stripes in the
//! *repair* model: which chunks are short, the order the real planner
//! repairs them in, how long that takes, what it reads. Repair traffic and
//! time at reduced protection are unbiased that way.
//!
//! Loss is not counted on the sample: a sample stripe's real stripes sit
//! on many more node combinations than the sample has, so counting lost
//! sample stripes makes the answer move with the sample size. Loss is the
//! expected number of real stripes made undecodable, from the placement's
//! distribution over node sets (`crate::exposure`), for every real stripe.

use crate::error::{bad, Result};
use crate::model::{parse_bytes, parse_percent, Layout};
use codes::Code;
use decide::entry::{ChunkEntry, FileEntry, StripeEntry};
use decide::placement::{self, Candidate};
use protocol::{ChunkHeader, ChunkId, Codec, FileName, NodeAddr, NodeId};
use std::collections::HashMap;

/// Members per regular node the default sample aims at.
pub const DEFAULT_MEMBERS_PER_NODE: usize = 32;

/// Most sample stripes placed by default.
pub const DEFAULT_MAX_SAMPLE: usize = 10_000;

/// Node ids are `n0000`..: index and id convert both ways without a map.
pub fn node_id(i: usize) -> NodeId {
    NodeId::new(&format!("n{i:04}")).expect("generated node ids are valid")
}

pub fn node_index(id: &NodeId) -> Option<usize> {
    id.as_str().get(1..)?.parse().ok()
}

pub fn domain_name(d: usize) -> String {
    format!("d{d}")
}

/// Chunk ids encode (stripe, member) so a repair report finds its chunk.
pub fn chunk_id(stripe: usize, member: usize) -> ChunkId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(stripe as u64).to_be_bytes());
    b[8..].copy_from_slice(&(member as u64).to_be_bytes());
    ChunkId(b)
}

pub fn chunk_pos(c: &ChunkId) -> (usize, usize) {
    let s = u64::from_be_bytes(c.0[..8].try_into().unwrap_or([0; 8]));
    let m = u64::from_be_bytes(c.0[8..].try_into().unwrap_or([0; 8]));
    (s as usize, m as usize)
}

/// Everything trials share.
pub struct Base {
    pub layout: Layout,
    pub code: Code,
    pub nodes: usize,
    pub domain_of: Vec<usize>,
    pub spare: Vec<bool>,
    pub domains: HashMap<NodeId, String>,
    pub ids: Vec<NodeId>,
    /// The catalog at time zero: one file whose stripes are the sample.
    pub name: FileName,
    pub file: FileEntry,
    /// Real stripes each sample stripe stands for.
    pub weight: f64,
    /// Bytes stored per sample member (one member of `weight` real stripes).
    pub member_bytes: u64,
    /// Data bytes per sample stripe (all `weight` real stripes).
    pub stripe_data_bytes: f64,
    /// Real bytes stored (data, copies and parity) and real data bytes.
    pub stored_bytes: f64,
    pub data_bytes: f64,
    pub chunk_bytes: u64,
    /// Copysets of the placement (node indices), when it uses them.
    pub copysets: Option<Vec<Vec<usize>>>,
    /// Per node: distinct other nodes holding its stripes' other members,
    /// the nodes a repair of it reads from (copysets: its copyset mates;
    /// random placement: about every other regular node).
    pub scatter: Vec<usize>,
}

impl Base {
    pub fn new(layout: &Layout, sample: Option<usize>) -> Result<Base> {
        layout.validate()?;
        let scheme = layout.scheme()?;
        let code = Code::new(scheme)?;
        let n = layout.nodes;
        let domain_of: Vec<usize> = (0..n).map(|i| i % layout.domains).collect();
        // Spares are the last nodes, so they spread over the domains too.
        let spare: Vec<bool> = (0..n).map(|i| i >= n - layout.spares).collect();
        let ids: Vec<NodeId> = (0..n).map(node_id).collect();
        let domains: HashMap<NodeId, String> = (0..n)
            .map(|i| (ids[i].clone(), domain_name(domain_of[i])))
            .collect();
        let regular = n - layout.spares;
        let r = layout.replication.max(1) as usize;
        let k = code.k();
        let per_stripe = k * r + (code.members() - k);
        // The sample drives repair only (loss is counted over every real
        // stripe), so a very large cluster needs no more than
        // DEFAULT_MAX_SAMPLE of them by default.
        let sample = sample
            .unwrap_or(
                (regular * DEFAULT_MEMBERS_PER_NODE)
                    .div_ceil(per_stripe)
                    .min(DEFAULT_MAX_SAMPLE),
            )
            .max(1);
        let cands: Vec<Candidate> = (0..n)
            .filter(|&i| !spare[i])
            .map(|i| Candidate {
                node: NodeAddr {
                    id: ids[i].clone(),
                    addr: String::new(),
                },
                domain: domain_name(domain_of[i]),
                spare: false,
            })
            .collect();
        let mut rotation = 0;
        let policy = layout.placement()?;
        let playout = placement::Layout {
            code: &code,
            replication: layout.replication,
            ha: layout.ha,
            domains: &domains,
        };
        let plans =
            placement::plan_with(&cands, (sample * k) as u64, &playout, &mut rotation, policy)?;
        let width = placement::stripe_width(&playout, cands.len());
        let copysets = match policy {
            placement::Placement::Random => None,
            placement::Placement::Copysets { scatter_width } => Some(
                placement::Copysets::build(&cands, width, scatter_width as usize)
                    .sets()
                    .iter()
                    .map(|s| s.iter().filter_map(node_index).collect())
                    .collect::<Vec<Vec<usize>>>(),
            ),
        };
        let capacity = parse_bytes(&layout.capacity)? as f64;
        let fill = parse_percent(&layout.fill)?;
        let chunk_bytes = parse_bytes(&layout.chunk)?;
        let stored_bytes = regular as f64 * capacity * fill;
        let real_stripes = stored_bytes / (per_stripe as f64 * chunk_bytes as f64);
        let weight = real_stripes / sample as f64;
        let member = stored_bytes / (sample * per_stripe) as f64;
        if member < 1.0 {
            return bad("the layout stores less than one byte per sampled chunk");
        }
        let member_bytes = member as u64;
        // Real members per regular node, each bringing width - 1 mates.
        let per_node = real_stripes * per_stripe as f64 / regular.max(1) as f64;
        let scatter: Vec<usize> = (0..n)
            .map(|i| match &copysets {
                Some(sets) => {
                    let mut m: Vec<usize> = sets
                        .iter()
                        .filter(|s| s.contains(&i))
                        .flatten()
                        .copied()
                        .filter(|&j| j != i)
                        .collect();
                    m.sort();
                    m.dedup();
                    m.len().max(1)
                }
                None => ((per_node * (width.max(2) - 1) as f64) as usize)
                    .clamp(1, regular.saturating_sub(1).max(1)),
            })
            .collect();
        let entry = |s: usize, m: usize, nodes: &[NodeAddr]| ChunkEntry {
            header: ChunkHeader {
                id: chunk_id(s, m),
                raw_len: member_bytes,
                raw_sha256: [0; 32],
                codec: Codec::Raw,
                stored_len: member_bytes,
                stored_crc: 0,
            },
            nodes: nodes.iter().map(|a| a.id.clone()).collect(),
        };
        let stripes: Vec<StripeEntry> = plans
            .iter()
            .enumerate()
            .map(|(s, p)| StripeEntry {
                data: p
                    .data
                    .iter()
                    .enumerate()
                    .map(|(m, c)| entry(s, m, &c.nodes))
                    .collect(),
                parity: p
                    .parity
                    .iter()
                    .enumerate()
                    .map(|(j, c)| entry(s, k + j, &c.nodes))
                    .collect(),
            })
            .collect();
        let file = FileEntry {
            size: (sample * k) as u64 * member_bytes,
            created_ms: 0,
            chunk_size: member_bytes,
            replication: layout.replication,
            scheme,
            stripes,
            attrs: Default::default(),
        };
        Ok(Base {
            layout: layout.clone(),
            code,
            nodes: n,
            domain_of,
            spare,
            domains,
            ids,
            name: FileName::new("sim").expect("a valid name"),
            file,
            weight,
            member_bytes,
            stripe_data_bytes: member_bytes as f64 * k as f64,
            stored_bytes,
            data_bytes: stored_bytes * k as f64 / per_stripe as f64,
            chunk_bytes,
            copysets,
            scatter,
        })
    }

    /// Data bytes of one real stripe.
    pub fn real_stripe_data_bytes(&self) -> f64 {
        self.stripe_data_bytes / self.weight.max(1e-12)
    }

    /// Regular (data-holding at time zero) nodes.
    pub fn regular(&self) -> usize {
        self.spare.iter().filter(|s| !**s).count()
    }

    /// The exposure tables of this layout's placement under `decodable`
    /// (the real rule, or a test's broken one).
    pub fn exposure(
        &self,
        decodable: &crate::rule::Decodable,
    ) -> Result<crate::exposure::Exposure> {
        let index_of = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let copysets = self.copysets.as_ref().map(|sets| {
            let w = 1.0 / sets.len().max(1) as f64;
            crate::exposure::CopysetIndex::new(sets.clone(), vec![w; sets.len()], self.nodes)
        });
        crate::exposure::Exposure::new(
            &self.code,
            decodable,
            &self.file.stripes,
            index_of,
            self.domain_of.clone(),
            self.regular(),
            self.weight,
            copysets,
        )
    }

    pub fn sample(&self) -> usize {
        self.file.stripes.len()
    }

    /// Nodes in failure domain `d`.
    pub fn domain_nodes(&self, d: usize) -> Vec<usize> {
        (0..self.nodes)
            .filter(|&i| self.domain_of[i] == d)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        assert_eq!(node_index(&node_id(483)), Some(483));
        assert_eq!(chunk_pos(&chunk_id(1234, 15)), (1234, 15));
    }
}
