//! The simulated cluster at time zero: nodes, domains, spares, and a sample
//! of stripes placed by the coordinator's own `placement::plan`.
//!
//! # Sampling
//!
//! A 484 × 16 TB cluster at 70% holds millions of 64 MiB stripes; keeping
//! each in the event loop would be slow and pointless, since a stripe's fate
//! depends only on which nodes hold its members. The simulator asks the
//! real placement for `sample` stripes (one put of `sample × K` chunks, as a
//! large file would be planned, with the real load balancing and domain
//! spreading) and lets each stand for `weight` real stripes on the same
//! nodes. Consequences, stated plainly:
//! - Expected bytes lost, repair traffic and time at reduced protection are
//!   unbiased: every real stripe is represented by a sample stripe placed the
//!   way the real code places it.
//! - Whether a loss happens at all depends on the set of distinct node
//!   combinations: real placement has at most as many as real stripes; the
//!   sample has `sample`. Where real stripes are spread over more
//!   combinations than the sample has, the probability of *some* loss is
//!   underestimated and the size of each loss overestimated; the sample size
//!   (`--sample-stripes`) trades speed for that resolution.
//! - A sample member being repaired is repaired as a whole by one target at
//!   the node's repair bandwidth; a loss during that repair costs only the
//!   share of its real stripes not yet re-protected.

use crate::error::{bad, Result};
use crate::model::{parse_bytes, parse_percent, Layout};
use codes::Code;
use decide::entry::{ChunkEntry, FileEntry, StripeEntry};
use decide::placement::{self, Candidate};
use protocol::{ChunkHeader, ChunkId, Codec, FileName, NodeAddr, NodeId};
use std::collections::HashMap;

/// Members per regular node the default sample aims at.
pub const DEFAULT_MEMBERS_PER_NODE: usize = 32;

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
        let sample = sample
            .unwrap_or((regular * DEFAULT_MEMBERS_PER_NODE).div_ceil(per_stripe))
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
        let plans = placement::plan(
            &cands,
            (sample * k) as u64,
            &placement::Layout {
                code: &code,
                replication: layout.replication,
                ha: layout.ha,
                domains: &domains,
            },
            &mut rotation,
        )?;
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
        })
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
