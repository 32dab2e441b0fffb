//! Copyset placement (Cidon et al., "Copysets: Reducing the Frequency of
//! Data Loss in Cloud Storage", USENIX ATC 2013; Facebook's HDFS
//! placement groups): whole stripes go only to a few fixed node sets.
//!
//! Why: with random placement a cluster of millions of stripes has a
//! stripe on almost every combination of nodes, so any large simultaneous
//! failure (a power event that leaves 1% of nodes dead) loses data almost
//! surely. Restricting stripes to `copysets` makes such a loss need the
//! failed nodes to cover one of few sets, at the cost of a smaller scatter
//! width: a failed node's stripe-mates, which feed its repair, are about
//! `scatter_width` nodes instead of the whole cluster, so repair is more
//! concentrated and slower.
//!
//! Construction (the paper's): `P = ceil(S / (w - 1))` permutations of the
//! nodes, each cut into consecutive groups of the stripe width `w`; a
//! permutation's last short group is filled from its start. Permutations
//! are deterministic (a fixed seeded shuffle of the nodes sorted by id) so
//! that a restarted coordinator builds the same sets, and domain-aware
//! (domains interleaved round-robin) so that a group spans as many
//! failure domains as it can, which the HA rule needs.

use crate::placement::Candidate;
use protocol::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `--scatter-width` when none is given: each node shares copysets with
/// about this many others (at least one permutation: a stripe's width - 1).
pub const DEFAULT_SCATTER_WIDTH: u32 = 10;

/// How new stripes choose their nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    /// Any nodes the rules allow, least loaded first (the default).
    #[default]
    Random,
    /// Only within copysets, each node in about `scatter_width / (w - 1)`
    /// of them.
    Copysets { scatter_width: u32 },
}

impl Placement {
    /// `random` or `copysets` (with `scatter_width`), as the command lines
    /// spell them.
    pub fn parse(name: &str, scatter_width: u32) -> Result<Placement, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "random" | "default" => Ok(Placement::Random),
            "copysets" | "copyset" if scatter_width >= 1 => {
                Ok(Placement::Copysets { scatter_width })
            }
            "copysets" | "copyset" => Err("--scatter-width must be at least 1".into()),
            other => Err(format!(
                "{other:?} is not a placement: random (default) or copysets"
            )),
        }
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Random => write!(f, "random"),
            Placement::Copysets { scatter_width } => {
                write!(f, "copysets (scatter width {scatter_width})")
            }
        }
    }
}

/// The copysets of one node list.
#[derive(Debug, Clone)]
pub struct Copysets {
    sets: Vec<Vec<NodeId>>,
}

/// splitmix64: a fixed, dependency-free generator for the permutations
/// (they must not change between builds or restarts).
fn mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fisher-Yates with [`mix`].
pub(crate) fn shuffle<T>(v: &mut [T], state: &mut u64) {
    for i in (1..v.len()).rev() {
        let j = (mix(state) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

impl Copysets {
    /// Copysets of `width` nodes over `nodes` (any order: they are sorted
    /// by id first) with scatter width about `scatter`.
    pub fn build(nodes: &[Candidate], width: usize, scatter: usize) -> Copysets {
        let mut sorted: Vec<&Candidate> = nodes.iter().collect();
        sorted.sort_by(|a, b| a.node.id.cmp(&b.node.id));
        let n = sorted.len();
        let w = width.clamp(1, n.max(1));
        if n == 0 {
            return Copysets { sets: Vec::new() };
        }
        let perms = if w <= 1 {
            1
        } else {
            scatter.max(1).div_ceil(w - 1)
        };
        let mut sets = Vec::new();
        for p in 0..perms {
            let mut state = 0x00C0_FFEE_u64 ^ (p as u64).wrapping_mul(0x1000_0001);
            let mut by_domain: BTreeMap<&str, Vec<&NodeId>> = BTreeMap::new();
            for c in &sorted {
                by_domain
                    .entry(c.domain.as_str())
                    .or_default()
                    .push(&c.node.id);
            }
            let mut lists: Vec<Vec<&NodeId>> = by_domain.into_values().collect();
            for l in &mut lists {
                shuffle(l, &mut state);
            }
            shuffle(&mut lists, &mut state);
            // Round-robin over domains: consecutive nodes differ in domain.
            let mut perm = Vec::with_capacity(n);
            let mut i = 0;
            while perm.len() < n {
                for l in &lists {
                    if let Some(x) = l.get(i) {
                        perm.push((*x).clone());
                    }
                }
                i += 1;
            }
            for start in (0..n).step_by(w) {
                let mut set: Vec<NodeId> = perm[start..(start + w).min(n)].to_vec();
                let mut j = 0;
                while set.len() < w && j < n {
                    if !set.contains(&perm[j]) {
                        set.push(perm[j].clone());
                    }
                    j += 1;
                }
                set.sort();
                if !sets.contains(&set) {
                    sets.push(set);
                }
            }
        }
        Copysets { sets }
    }

    pub fn sets(&self) -> &[Vec<NodeId>] {
        &self.sets
    }

    /// Distinct other nodes sharing a copyset with `node`: the nodes its
    /// repair reads from.
    pub fn scatter_of(&self, node: &NodeId) -> usize {
        let mut mates: Vec<&NodeId> = self
            .sets
            .iter()
            .filter(|s| s.contains(node))
            .flatten()
            .filter(|n| *n != node)
            .collect();
        mates.sort();
        mates.dedup();
        mates.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::NodeAddr;

    fn nodes(n: usize, domains: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                node: NodeAddr {
                    id: NodeId::new(&format!("n{i:03}")).unwrap(),
                    addr: String::new(),
                },
                domain: format!("d{}", i % domains),
                spare: false,
            })
            .collect()
    }

    /// Every node is in about S / (w - 1) sets, its scatter is close to S,
    /// and sets are the same whatever order the nodes come in.
    #[test]
    fn scatter_width_and_stability() {
        let ns = nodes(100, 10);
        let cs = Copysets::build(&ns, 3, 4);
        // 2 permutations of 33 full groups plus one filled group each.
        assert_eq!(cs.sets().len(), 68);
        for c in &ns {
            let s = cs.scatter_of(&c.node.id);
            assert!((2..=6).contains(&s), "{} scatter {s}", c.node.id);
        }
        let mut rev = ns.clone();
        rev.reverse();
        assert_eq!(Copysets::build(&rev, 3, 4).sets(), cs.sets());
    }

    /// A group of w nodes spans min(w, domains) domains.
    #[test]
    fn sets_span_domains() {
        let ns = nodes(60, 6);
        let dom: std::collections::HashMap<_, _> = ns
            .iter()
            .map(|c| (c.node.id.clone(), c.domain.clone()))
            .collect();
        let cs = Copysets::build(&ns, 6, 10);
        for s in cs.sets() {
            let d: std::collections::BTreeSet<_> = s.iter().map(|n| &dom[n]).collect();
            assert_eq!(d.len(), 6, "{s:?}");
        }
    }
}
