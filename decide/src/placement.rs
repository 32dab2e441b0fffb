//! Where the copies of a stripe's members go: one policy for put planning,
//! for replacing a failed put target, and for repair.
//!
//! Rules, strongest first:
//! 1. *Independence.* A parity never shares a node with another member of
//!    its stripe; a data chunk never shares a node with a parity of its
//!    stripe, and with one copy per chunk never with another data chunk
//!    either. One node loss then costs a stripe at most one member. With R
//!    copies, no two data chunks of a stripe should sit on the same set of
//!    R nodes (so R losses cost at most one data chunk); that one is a
//!    preference, since a small cluster may have no other choice.
//! 2. *HA* (`coord --ha`): every stripe survives the loss of any one whole
//!    failure domain: the members whose every copy sits in one domain must
//!    form a pattern `codes::Code::is_decodable` accepts.
//! 3. *Spread.* Among fitting nodes, the domain holding the fewest members
//!    of the stripe, then (for repair) spares first, then the least loaded.
//!
//! Put planning requires rules 1 and 2 and refuses the put otherwise;
//! repair prefers them and falls back only when no fitting node is alive
//! (staying below target is worse), and relocates later.

#[path = "placement_copysets.rs"]
pub mod copysets;

pub use copysets::{Copysets, Placement};

use crate::error::{Error, Result};
use codes::{Code, Scheme};
use protocol::{ChunkId, ChunkPlan, NodeAddr, NodeId, StripePlan};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Largest `xor` stripe picked automatically: wider stripes cost less
/// parity space but make a rebuild read more chunks.
pub const MAX_AUTO_STRIPE: usize = 4;

/// A node placement may use.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: NodeAddr,
    pub domain: String,
    /// A hot spare still holding nothing: takes no new writes, preferred
    /// as a repair target.
    pub spare: bool,
}

/// The rules for one stripe.
pub struct Policy<'a> {
    pub code: &'a Code,
    /// Real data chunks of the stripe.
    pub data: usize,
    pub replication: u32,
    pub ha: bool,
    /// Failure domain of any node, live or not.
    pub domains: &'a HashMap<NodeId, String>,
}

/// Current holders of each member of a stripe, indexed by member.
pub type Holders = Vec<Vec<NodeId>>;

/// The node chosen for a copy and whether it keeps every rule.
#[derive(Debug, Clone)]
pub struct Pick {
    pub node: NodeAddr,
    pub fits: bool,
}

/// How a stripe's copies sit over failure domains. Rebalancing moves a
/// copy only if no field gets worse, so a move never weakens a stripe
/// against the loss of a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// Most members the loss of one domain takes (every copy in it).
    pub worst_loss: usize,
    /// Domains holding a copy.
    pub domains: usize,
    /// Decodable after the loss of any one domain (the `--ha` rule).
    pub survives: bool,
}

impl Spread {
    /// Whether `self` (after a move) is at least as good as `before` in
    /// every respect.
    pub fn no_worse_than(&self, before: &Spread) -> bool {
        self.worst_loss <= before.worst_loss
            && self.domains >= before.domains
            && (self.survives || !before.survives)
    }
}

impl Policy<'_> {
    fn domain<'b>(&'b self, n: &'b NodeId) -> &'b str {
        self.domains
            .get(n)
            .map(|d| d.as_str())
            .unwrap_or(n.as_str())
    }

    /// Nodes that must not hold `member` (rule 1).
    pub fn conflicts(&self, holders: &Holders, member: usize) -> HashSet<NodeId> {
        let k = self.code.k();
        let parity = member >= k;
        holders
            .iter()
            .enumerate()
            .filter(|(m, _)| *m != member)
            .filter(|(m, _)| parity || *m >= k || self.replication == 1)
            .flat_map(|(_, h)| h.iter().cloned())
            .collect()
    }

    /// With R > 1, would the last copy of data `member` on `node` give it
    /// the same holder set as another data chunk (so that R failures take
    /// both)?
    fn same_set(&self, holders: &Holders, member: usize, node: &NodeId) -> bool {
        let r = self.replication as usize;
        if r < 2 || member >= self.code.k() || holders[member].len() + 1 != r {
            return false;
        }
        let mut set: Vec<&NodeId> = holders[member].iter().chain([node]).collect();
        set.sort();
        (0..self.data).filter(|&m| m != member).any(|m| {
            let mut other: Vec<&NodeId> = holders[m].iter().collect();
            other.sort();
            other == set
        })
    }

    /// Members lost if `domain` failed, with `extra` added to `member`.
    fn lost_in(
        &self,
        holders: &Holders,
        domain: &str,
        extra: Option<(usize, &NodeId)>,
    ) -> Vec<usize> {
        self.code
            .real_members(self.data)
            .filter(|&m| {
                let mut nodes: Vec<&NodeId> = holders[m].iter().collect();
                if let Some((em, n)) = extra {
                    if em == m {
                        nodes.push(n);
                    }
                }
                !nodes.is_empty() && nodes.iter().all(|n| self.domain(n) == domain)
            })
            .collect()
    }

    /// Rule 2 for a new copy of `member` on `node`. Only the node's own
    /// domain can change, so only it is checked.
    pub fn ha_ok(&self, holders: &Holders, member: usize, node: &NodeId) -> bool {
        !self.ha || {
            let lost = self.lost_in(holders, self.domain(node), Some((member, node)));
            self.code.is_decodable(self.data, &lost)
        }
    }

    /// Does the stripe as placed survive the loss of any one domain?
    pub fn survives_any_domain(&self, holders: &Holders) -> bool {
        let domains: BTreeSet<&str> = holders.iter().flatten().map(|n| self.domain(n)).collect();
        domains.into_iter().all(|d| {
            self.code
                .is_decodable(self.data, &self.lost_in(holders, d, None))
        })
    }

    /// How the stripe sits over failure domains (see [`Spread`]).
    pub fn spread(&self, holders: &Holders) -> Spread {
        let mut copies: HashMap<&str, usize> = HashMap::new();
        for n in holders.iter().flatten() {
            *copies.entry(self.domain(n)).or_default() += 1;
        }
        let worst_loss = copies
            .keys()
            .map(|d| self.lost_in(holders, d, None).len())
            .max()
            .unwrap_or(0);
        Spread {
            worst_loss,
            domains: copies.len(),
            survives: self.survives_any_domain(holders),
        }
    }

    /// The fewest node failures that leave the stripe undecodable, looking
    /// no further than `limit` (then `limit + 1`). Exhaustive over the
    /// stripe's nodes, so meant for the small node sets of replicated
    /// stripes.
    pub fn fatal_nodes(&self, holders: &Holders, limit: usize) -> usize {
        let mut nodes: Vec<&NodeId> = holders.iter().flatten().collect();
        nodes.sort();
        nodes.dedup();
        for f in 1..=limit.min(nodes.len()) {
            // Every f-subset of the nodes, by index vectors in order.
            let mut idx: Vec<usize> = (0..f).collect();
            loop {
                let down: Vec<&NodeId> = idx.iter().map(|&i| nodes[i]).collect();
                let lost: Vec<usize> = self
                    .code
                    .real_members(self.data)
                    .filter(|&m| {
                        !holders[m].is_empty() && holders[m].iter().all(|n| down.contains(&n))
                    })
                    .collect();
                if !self.code.is_decodable(self.data, &lost) {
                    return f;
                }
                // Next combination.
                let mut i = f;
                while i > 0 && idx[i - 1] == nodes.len() - f + i - 1 {
                    i -= 1;
                }
                if i == 0 {
                    break;
                }
                idx[i - 1] += 1;
                for j in i..f {
                    idx[j] = idx[j - 1] + 1;
                }
            }
        }
        limit + 1
    }

    /// Copies of `holders[member]` that break rule 1 or 2, for repair to
    /// relocate once a fitting node exists. Rule 1: the member that came
    /// later in member order moves, so exactly one of two clashing copies
    /// is relocated. Rule 2: in a domain whose loss would be fatal, the
    /// highest member lost with it moves (one at a time, re-checked by the
    /// next scan).
    pub fn misplaced(&self, holders: &Holders, member: usize) -> HashSet<NodeId> {
        let k = self.code.k();
        let parity = member >= k;
        let mut out: HashSet<NodeId> = holders
            .iter()
            .enumerate()
            .filter(|(m, _)| *m < member)
            .filter(|(m, _)| parity || *m >= k || self.replication == 1)
            .flat_map(|(_, h)| h.iter().cloned())
            .filter(|n| holders[member].contains(n))
            .collect();
        if self.ha {
            for n in &holders[member] {
                let lost = self.lost_in(holders, self.domain(n), None);
                if lost.last() == Some(&member) && !self.code.is_decodable(self.data, &lost) {
                    out.insert(n.clone());
                }
            }
        }
        out
    }

    /// Picks a node for a new copy of `member` among `cands`, never one in
    /// `exclude` or already holding the member. `spares_first` (repair)
    /// ranks spares before regular nodes; `strict` returns only nodes that
    /// keep every rule.
    #[allow(clippy::too_many_arguments)]
    pub fn pick(
        &self,
        cands: &[Candidate],
        holders: &Holders,
        member: usize,
        load: &HashMap<NodeId, u64>,
        exclude: &HashSet<NodeId>,
        spares_first: bool,
        strict: bool,
    ) -> Option<Pick> {
        let avoid = self.conflicts(holders, member);
        let mut per_domain: HashMap<&str, usize> = HashMap::new();
        for n in holders.iter().flatten() {
            *per_domain.entry(self.domain(n)).or_default() += 1;
        }
        cands
            .iter()
            .filter(|c| !exclude.contains(&c.node.id) && !holders[member].contains(&c.node.id))
            .map(|c| {
                let fits = !avoid.contains(&c.node.id) && self.ha_ok(holders, member, &c.node.id);
                (c, fits)
            })
            .filter(|(_, fits)| *fits || !strict)
            .min_by_key(|(c, fits)| {
                (
                    !fits,
                    self.same_set(holders, member, &c.node.id),
                    per_domain.get(c.domain.as_str()).copied().unwrap_or(0),
                    spares_first && !c.spare,
                    load.get(&c.node.id).copied().unwrap_or(0),
                )
            })
            .map(|(c, fits)| Pick {
                node: c.node.clone(),
                fits,
            })
    }
}

/// The scheme new stripes of a file get: `xor` without a fixed `--stripe`
/// narrows to the live node count (at most [`MAX_AUTO_STRIPE`]) so that a
/// small cluster still keeps every chunk of a stripe on its own node.
pub fn effective_scheme(
    scheme: Scheme,
    stripe: Option<u32>,
    replication: u32,
    live: usize,
) -> Scheme {
    match scheme {
        Scheme::Xor { k } => {
            let others = live.saturating_sub(1).max(1);
            let want = match stripe {
                Some(s) => s as usize,
                None if k == codes::DEFAULT_XOR_K => others.min(MAX_AUTO_STRIPE),
                None => k as usize,
            };
            let k = if replication == 1 {
                want.clamp(1, others)
            } else {
                want.max(1)
            };
            Scheme::Xor {
                k: k.min(codes::MAX_MEMBERS - 1) as u8,
            }
        }
        other => other,
    }
}

/// What a put plan is built from.
pub struct Layout<'a> {
    pub code: &'a Code,
    pub replication: u32,
    pub ha: bool,
    pub domains: &'a HashMap<NodeId, String>,
}

/// Plans `chunks` data chunks in stripes of the code's width over the
/// writable, non-spare `nodes` (sorted by id by the caller). `rotation`
/// spreads load across puts. Random placement (the default policy).
pub fn plan(
    nodes: &[Candidate],
    chunks: u64,
    layout: &Layout,
    rotation: &mut u64,
) -> Result<Vec<StripePlan>> {
    plan_with(nodes, chunks, layout, rotation, Placement::Random)
}

/// Nodes one full stripe of `layout` uses at most: every member and copy
/// on its own node (the width of its copysets).
pub fn stripe_width(layout: &Layout, nodes: usize) -> usize {
    let code = layout.code;
    let r = layout.replication.max(1) as usize;
    (code.k() * r + code.members() - code.k()).min(nodes.max(1))
}

/// [`plan`] under a chosen placement policy. With copysets every stripe
/// goes to one copyset (the least loaded one its rules fit in, rotation
/// breaking ties); the per-member choice inside it is the same `pick`.
pub fn plan_with(
    nodes: &[Candidate],
    chunks: u64,
    layout: &Layout,
    rotation: &mut u64,
    placement: Placement,
) -> Result<Vec<StripePlan>> {
    let code = layout.code;
    let k = code.k();
    let n = nodes.len();
    // The scheme must fit a full stripe even when this file is short, so
    // that a cluster accepts or refuses a scheme the same way for every
    // file (the "more members than live non-spare nodes").
    if let Some(e) = infeasible(nodes, layout) {
        return Err(e);
    }
    let sets: Option<Vec<Vec<Candidate>>> = match placement {
        Placement::Random => None,
        Placement::Copysets { scatter_width } => {
            let by_id: HashMap<&NodeId, &Candidate> =
                nodes.iter().map(|c| (&c.node.id, c)).collect();
            let cs = Copysets::build(nodes, stripe_width(layout, n), scatter_width as usize);
            Some(
                cs.sets()
                    .iter()
                    .map(|s| {
                        s.iter()
                            .filter_map(|id| by_id.get(id))
                            .map(|c| (*c).clone())
                            .collect()
                    })
                    .collect(),
            )
        }
    };
    let mut load: HashMap<NodeId, u64> = HashMap::new();
    let mut primary: HashMap<NodeId, u64> = HashMap::new();
    let mut stripes = Vec::new();
    let mut left = chunks;
    while left > 0 {
        let data = (left as usize).min(k);
        left -= data as u64;
        // Rotate the tie-break so equal nodes take turns across stripes.
        let turn = *rotation;
        *rotation = rotation.wrapping_add(1);
        let placed = match &sets {
            None => {
                // Ties (equally loaded, equally spread nodes) are broken by
                // a shuffle seeded with the rotation, not by rotating the
                // node list: rotating made every stripe at one offset pick
                // the same neighbours, so a cluster's stripes sat on about
                // as many node sets as it has nodes (10 pairs for a whole
                // 20-node R=2 cluster), an accidental copyset placement
                // whose repair reads from one or two nodes.
                let mut ring: Vec<Candidate> = nodes.to_vec();
                let mut state = turn ^ 0x005E_ED0F_7A1E;
                copysets::shuffle(&mut ring, &mut state);
                place_stripe(&ring, layout, data, &mut load, &mut primary)
            }
            Some(sets) => {
                // Least loaded copyset first; the rotation decides ties.
                let c = sets.len().max(1);
                let off = (turn % c as u64) as usize;
                let mut order: Vec<(u64, usize)> = (0..sets.len())
                    .map(|i| (off + i) % c)
                    .map(|i| {
                        let l = sets[i]
                            .iter()
                            .map(|x| load.get(&x.node.id).copied().unwrap_or(0))
                            .sum();
                        (l, i)
                    })
                    .collect();
                order.sort_by_key(|&(l, _)| l);
                order.into_iter().find_map(|(_, i)| {
                    place_stripe(&sets[i], layout, data, &mut load, &mut primary)
                })
            }
        };
        let Some(mut placed) = placed else {
            return Err(refusal(nodes, layout, data));
        };
        let mut plan = |m: usize| ChunkPlan {
            id: ChunkId::random(),
            nodes: std::mem::take(&mut placed[m]),
            token: None,
        };
        stripes.push(StripePlan {
            data: (0..data).map(&mut plan).collect(),
            parity: (k..code.members()).map(&mut plan).collect(),
        });
    }
    Ok(stripes)
}

/// Places one stripe of `data` data chunks over `ring` (in tie-break
/// order), keeping every rule; `None` when the ring cannot hold it. Loads
/// are updated only when the whole stripe fits.
fn place_stripe(
    ring: &[Candidate],
    layout: &Layout,
    data: usize,
    load: &mut HashMap<NodeId, u64>,
    primary: &mut HashMap<NodeId, u64>,
) -> Option<Vec<Vec<NodeAddr>>> {
    let code = layout.code;
    let k = code.k();
    let r = layout.replication.max(1) as usize;
    let policy = Policy {
        code,
        data,
        replication: layout.replication,
        ha: layout.ha,
        domains: layout.domains,
    };
    let mut holders: Holders = vec![Vec::new(); code.members()];
    let mut placed: Vec<Vec<NodeAddr>> = vec![Vec::new(); code.members()];
    let mut added: Vec<(NodeId, bool)> = Vec::new();
    // Parities first: they are the most constrained (alone on their node).
    let order: Vec<(usize, usize)> = (k..code.members())
        .map(|m| (m, 1))
        .chain((0..data).map(|m| (m, r)))
        .collect();
    let undo = |added: &[(NodeId, bool)],
                load: &mut HashMap<NodeId, u64>,
                primary: &mut HashMap<NodeId, u64>| {
        for (id, first) in added {
            if let Some(v) = load.get_mut(id) {
                *v -= 1;
            }
            if *first {
                if let Some(v) = primary.get_mut(id) {
                    *v -= 1;
                }
            }
        }
    };
    for (m, copies) in order {
        for copy in 0..copies {
            // Readers try a chunk's first copy first: spread first
            // copies on their own, then the rest by total load.
            let weighted: HashMap<NodeId, u64>;
            let by = if copy == 0 && copies > 1 {
                weighted = load
                    .iter()
                    .map(|(n, l)| {
                        (
                            n.clone(),
                            primary.get(n).copied().unwrap_or(0) * (1 << 32) + l,
                        )
                    })
                    .collect();
                &weighted
            } else {
                &*load
            };
            let Some(p) = policy.pick(ring, &holders, m, by, &HashSet::new(), false, true) else {
                undo(&added, load, primary);
                return None;
            };
            let first = copy == 0;
            if first {
                *primary.entry(p.node.id.clone()).or_default() += 1;
            }
            *load.entry(p.node.id.clone()).or_default() += 1;
            added.push((p.node.id.clone(), first));
            holders[m].push(p.node.id.clone());
            placed[m].push(p.node);
        }
    }
    Some(placed)
}

/// A full stripe cannot be placed at all: too few nodes for its members,
/// or (with HA) too few domains for any one to hold at most what the code
/// tolerates.
fn infeasible(nodes: &[Candidate], layout: &Layout) -> Option<Error> {
    let e = refusal(nodes, layout, layout.code.k());
    let r = layout.replication.max(1) as usize;
    let parities = layout.code.members() - layout.code.k();
    let needed = if r == 1 {
        layout.code.members()
    } else {
        r + parities
    };
    let domains: BTreeSet<&str> = nodes.iter().map(|c| c.domain.as_str()).collect();
    match &e {
        Error::NotEnoughNodes { .. } if nodes.len() < needed => Some(e),
        Error::NotEnoughDomains { needed, .. } if domains.len() < *needed => Some(e),
        _ => None,
    }
}

/// Why a put cannot be placed: too few nodes, or (with HA) too few domains.
fn refusal(nodes: &[Candidate], layout: &Layout, data: usize) -> Error {
    let code = layout.code;
    let scheme = code.scheme();
    let r = layout.replication.max(1) as usize;
    let parities = code.members() - code.k();
    let needed = if r == 1 {
        data + parities
    } else {
        r + parities
    };
    let domains: BTreeSet<&str> = nodes.iter().map(|c| c.domain.as_str()).collect();
    if layout.ha && nodes.len() >= needed {
        // Members one domain may hold and still leave the stripe decodable.
        let tolerated = match scheme {
            Scheme::None => 0,
            Scheme::Xor { .. } => 1,
            Scheme::Rs { m, .. } => m as usize,
            Scheme::Lrc { g, .. } => g as usize + 1,
        };
        let members = if r == 1 {
            data + parities
        } else {
            parities + 1
        };
        let need = if tolerated == 0 {
            r
        } else {
            members.div_ceil(tolerated).max(2)
        };
        return Error::NotEnoughDomains {
            have: domains.len(),
            needed: need,
            scheme: scheme.to_string(),
            domains: domains.into_iter().collect::<Vec<_>>().join(", "),
        };
    }
    Error::NotEnoughNodes {
        live: nodes.len(),
        needed: needed.max(nodes.len() + 1),
        replication: layout.replication,
        scheme: scheme.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize, domains: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                node: NodeAddr {
                    id: NodeId::new(&format!("n{i:02}")).unwrap(),
                    addr: format!("127.0.0.1:{}", 4001 + i),
                },
                domain: format!("d{}", i % domains.max(1)),
                spare: false,
            })
            .collect()
    }

    fn domain_map(ns: &[Candidate]) -> HashMap<NodeId, String> {
        ns.iter()
            .map(|c| (c.node.id.clone(), c.domain.clone()))
            .collect()
    }

    fn run(
        scheme: &str,
        n: usize,
        domains: usize,
        r: u32,
        ha: bool,
        chunks: u64,
    ) -> Result<Vec<StripePlan>> {
        let ns = nodes(n, domains);
        let dm = domain_map(&ns);
        let code = Code::new(effective_scheme(scheme.parse().unwrap(), None, r, n)).unwrap();
        plan(
            &ns,
            chunks,
            &Layout {
                code: &code,
                replication: r,
                ha,
                domains: &dm,
            },
            &mut 0,
        )
    }

    fn holders(code: &Code, s: &StripePlan) -> Vec<Vec<NodeId>> {
        let ids = |c: &ChunkPlan| c.nodes.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
        let mut h = vec![Vec::new(); code.members()];
        for (i, c) in s.data.iter().enumerate() {
            h[i] = ids(c);
        }
        for (j, c) in s.parity.iter().enumerate() {
            h[code.k() + j] = ids(c);
        }
        h
    }

    /// Every single node loss leaves every stripe decodable; R=1 puts every
    /// member on its own node.
    #[test]
    fn single_loss_is_always_recoverable() {
        for (scheme, n) in [
            ("xor:3", 4),
            ("rs:4+2", 6),
            ("rs:4+2", 9),
            ("lrc:6+2+2", 10),
        ] {
            let code = Code::new(scheme.parse().unwrap()).unwrap();
            let s = run(scheme, n, n, 1, false, 13).unwrap();
            assert_eq!(s.iter().map(|s| s.data.len()).sum::<usize>(), 13);
            for st in &s {
                let h = holders(&code, st);
                let all: Vec<&NodeId> = h.iter().flatten().collect();
                let set: HashSet<_> = all.iter().collect();
                assert_eq!(set.len(), all.len(), "{scheme}: members on distinct nodes");
            }
        }
    }

    /// R=2 + xor: any two failures leave every stripe rebuildable.
    #[test]
    fn two_copies_and_parity_survive_any_two_failures() {
        for n in 4..8 {
            let ns = nodes(n, n);
            let s = run("xor", n, n, 2, false, 40).unwrap();
            for a in 0..n {
                for b in a + 1..n {
                    let dead = [&ns[a].node.id, &ns[b].node.id];
                    for st in &s {
                        let lost = st
                            .data
                            .iter()
                            .filter(|c| c.nodes.iter().all(|x| dead.contains(&&x.id)))
                            .count();
                        let parity_dead = dead.contains(&&st.parity[0].nodes[0].id);
                        assert!(
                            lost == 0 || (lost == 1 && !parity_dead),
                            "n={n}: losing {a},{b} loses {lost} chunks of a stripe"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn ha_survives_any_domain_or_is_refused() {
        let code = Code::new("lrc:6+2+2".parse().unwrap()).unwrap();
        let ns = nodes(12, 4);
        let dm = domain_map(&ns);
        let s = run("lrc:6+2+2", 12, 4, 1, true, 20).unwrap();
        for st in &s {
            let p = Policy {
                code: &code,
                data: st.data.len(),
                replication: 1,
                ha: true,
                domains: &dm,
            };
            assert!(p.survives_any_domain(&holders(&code, st)));
        }
        // rs:4+2 over 2 domains: one domain must hold 3 of 6 members.
        let e = run("rs:4+2", 8, 2, 1, true, 4).unwrap_err().to_string();
        assert!(
            e.contains("2 failure domains") && e.contains("needs at least 3"),
            "{e}"
        );
        // Without HA the same cluster is fine.
        run("rs:4+2", 8, 2, 1, false, 4).unwrap();
    }

    /// A stripe that lost its domain spread (repair fallback) is marked for
    /// relocation, one member at a time, the highest first.
    #[test]
    fn ha_violations_are_misplaced() {
        let code = Code::new("lrc:6+2+2".parse().unwrap()).unwrap();
        let id = |i: usize| NodeId::new(&format!("n{i:02}")).unwrap();
        // Members 0, 1, 2 and local parity 6 in domain "a": fatal if it fails.
        let dm: HashMap<NodeId, String> = (0..10)
            .map(|i| {
                (
                    id(i),
                    if [0, 1, 2, 6].contains(&i) { "a" } else { "b" }.to_string(),
                )
            })
            .collect();
        let holders: Holders = (0..10).map(|m| vec![id(m)]).collect();
        let p = Policy {
            code: &code,
            data: 6,
            replication: 1,
            ha: true,
            domains: &dm,
        };
        assert!(!p.survives_any_domain(&holders));
        assert!(p.misplaced(&holders, 6).contains(&id(6)));
        assert!(p.misplaced(&holders, 0).is_empty());
        // Moving member 6 to domain "b" is not HA-safe either ("b" then
        // holds 7 members); a third domain is.
        let mut dm2 = dm.clone();
        dm2.insert(id(6), "c".into());
        let p2 = Policy { domains: &dm2, ..p };
        assert!(!p2.survives_any_domain(&holders), "b holds 6 of 10");
    }

    /// Node failures to lose a replicated xor stripe: two data chunks on
    /// the same pair of nodes die together.
    #[test]
    fn fatal_node_counts() {
        let code = Code::new("xor:2".parse().unwrap()).unwrap();
        let id = |i: usize| NodeId::new(&format!("n{i:02}")).unwrap();
        let dm = HashMap::new();
        let p = Policy {
            code: &code,
            data: 2,
            replication: 2,
            ha: false,
            domains: &dm,
        };
        let chained: Holders = vec![vec![id(0), id(1)], vec![id(1), id(2)], vec![id(3)]];
        assert_eq!(p.fatal_nodes(&chained, 3), 3);
        let same: Holders = vec![vec![id(0), id(1)], vec![id(0), id(1)], vec![id(3)]];
        assert_eq!(p.fatal_nodes(&same, 3), 2);
        assert_eq!(p.fatal_nodes(&same, 1), 2, "beyond the limit");
    }

    #[test]
    fn too_few_nodes() {
        let e = run("xor", 2, 2, 3, false, 1).unwrap_err().to_string();
        assert!(e.contains("only 2 live"), "{e}");
        let e = run("rs:4+2", 5, 5, 1, false, 4).unwrap_err().to_string();
        assert_eq!(e, "only 5 live non-spare nodes for rs:4+2 with replication 1 (needs 6); start more nodes or choose a narrower scheme");
    }

    /// With copies, every node is the first copy (the one read) of some
    /// chunks, whatever the rotation.
    #[test]
    fn first_copies_spread() {
        for rot in 0..6u64 {
            let ns = nodes(3, 3);
            let dm = domain_map(&ns);
            let code = Code::new(Scheme::None).unwrap();
            let layout = Layout {
                code: &code,
                replication: 2,
                ha: false,
                domains: &dm,
            };
            let s = plan(&ns, 11, &layout, &mut rot.clone()).unwrap();
            let firsts: HashSet<_> = s.iter().map(|s| s.data[0].nodes[0].id.clone()).collect();
            assert_eq!(firsts.len(), 3, "rotation {rot}");
        }
    }

    /// With copysets every stripe sits inside one copyset, the rules
    /// still hold, and load stays balanced; the default is unchanged.
    #[test]
    fn copyset_placement_keeps_stripes_in_copysets() {
        let ns = nodes(30, 5);
        let dm = domain_map(&ns);
        let code = Code::new("rs:4+2".parse().unwrap()).unwrap();
        let layout = Layout {
            code: &code,
            replication: 1,
            ha: true,
            domains: &dm,
        };
        let policy = Placement::Copysets { scatter_width: 10 };
        let s = plan_with(&ns, 400, &layout, &mut 0, policy).unwrap();
        let cs = Copysets::build(&ns, stripe_width(&layout, ns.len()), 10);
        let mut load: HashMap<NodeId, usize> = HashMap::new();
        for st in &s {
            let mut used: Vec<NodeId> = holders(&code, st).into_iter().flatten().collect();
            used.sort();
            assert!(
                cs.sets().iter().any(|c| used.iter().all(|n| c.contains(n))),
                "{used:?} is in no copyset"
            );
            let p = Policy {
                code: &code,
                data: st.data.len(),
                replication: 1,
                ha: true,
                domains: &dm,
            };
            assert!(p.survives_any_domain(&holders(&code, st)));
            for n in used {
                *load.entry(n).or_default() += 1;
            }
        }
        let (lo, hi) = (load.values().min().unwrap(), load.values().max().unwrap());
        assert!(hi - lo <= 2, "load {lo}..{hi}");
        // Distinct node sets: a handful of copysets, where random
        // placement spreads over many.
        let sets = |s: &[StripePlan]| {
            s.iter()
                .map(|st| {
                    let mut v: Vec<NodeId> = holders(&code, st).into_iter().flatten().collect();
                    v.sort();
                    v
                })
                .collect::<HashSet<_>>()
                .len()
        };
        assert!(sets(&s) <= cs.sets().len());
        let random = plan(&ns, 400, &layout, &mut 0).unwrap();
        assert!(sets(&random) > 3 * cs.sets().len(), "{}", sets(&random));
    }

    #[test]
    fn placement_names() {
        assert_eq!(Placement::parse("random", 0).unwrap(), Placement::Random);
        assert_eq!(
            Placement::parse("copysets", 8).unwrap(),
            Placement::Copysets { scatter_width: 8 }
        );
        assert!(Placement::parse("copysets", 0).is_err());
        assert!(Placement::parse("rack", 8).is_err());
    }

    #[test]
    fn rotation_spreads_parity() {
        let s = run("xor:3", 4, 4, 1, false, 30).unwrap();
        let parity: HashSet<_> = s.iter().map(|s| s.parity[0].nodes[0].id.clone()).collect();
        assert_eq!(parity.len(), 4);
    }
}
