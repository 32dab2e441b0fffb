//! Exposure: the expected number of *real* stripes a failure makes
//! undecodable, for every real stripe of the layout, not only the sample.
//!
//! # Why not count lost sample stripes
//!
//! A sample stripe stands for thousands of real stripes, but the real ones
//! are spread over far more node combinations than the sample has: a loss
//! that needs three particular nodes to be down at once is missed when no
//! sample stripe sits on those three, and counted thousands of times when
//! one does. The share of trials with a loss then moves with
//! `--sample-stripes`. The sample still drives *repair* (which chunks are
//! short, in which order the real planner repairs them, how long that
//! takes); loss is computed here, from the placement's distribution over
//! node sets.
//!
//! # The method
//!
//! A node is *impaired* from its permanent failure until repair has given
//! every chunk it held a new copy; `r` is the share of its chunks still
//! without one. When node `x` fails, the real stripes it held are
//! `touching` (its sample members times the real stripes per sample
//! stripe). A stripe of `u` distinct nodes holding a member on `x` has its
//! other `u - 1` nodes among the rest of the placement's population; the
//! number of impaired ones among them is hypergeometric, and each of those
//! still lacks its member with probability `r` (thinning by the mean `r`).
//! Newly lost is `touching × Σ_j D[j] P(j other members missing)`, where
//! `D[j]` is the share of (`x`'s slot, `j` other slots) patterns that
//! `codes::Code::is_decodable` (the real rule, or a test's broken one)
//! declares fatal with `x` and not without: computed once per stripe shape
//! over every subset of its slots. Failures of several nodes at once are
//! added one by one, which sums exactly to "fatal after, not before".
//!
//! What is measured from the real placement, not assumed: the shapes (how
//! many distinct nodes a stripe uses, which members share a node, short
//! stripes) come from the stripes `decide::placement::plan` placed; for a
//! whole-domain outage, which members of each placed stripe sit in the
//! failed domain (so an HA layout loses nothing to one domain, exactly as
//! `fsck --what-if` says); for copyset placement, the copyset table the
//! placement itself uses (a stripe's nodes are one copyset).
//!
//! Approximations, stated: nodes within the population are exchangeable
//! (load-balanced placement; domains matter only for whole-domain
//! outages, where they are measured); impaired nodes' repair progress is
//! summarised by its mean; stripes repaired onto new nodes are assumed to
//! keep the at-write distribution (random placement) or their copyset
//! (copysets, whose repair does not in fact keep them there: an
//! optimistic bias for copysets over long runs, none for a single event);
//! `P(any loss) = 1 - exp(-E[lost])` treats real stripes' fates as
//! independent given the failure history.

use crate::rule::Decodable;
use codes::Code;
use decide::entry::StripeEntry;
use protocol::NodeId;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Widest stripe (distinct nodes) the subset tables handle: 2^20 patterns.
pub const MAX_SLOTS: usize = 20;

/// Most other missing members a domain-outage table looks at: the chance
/// of four more impaired nodes among one stripe's few is negligible next
/// to the outage itself.
const DOMAIN_EXTRA: usize = 3;

/// Which distinct nodes (slots) hold each real member of a stripe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ShapeKey {
    data: usize,
    /// Per real member, the bitmask of its holder slots.
    masks: Vec<u32>,
    slots: usize,
}

/// A shape's decodability over every subset of its slots.
struct ShapeTable {
    slots: usize,
    /// `fatal[m]`: losing the slots in `m` leaves the stripe undecodable.
    fatal: Vec<bool>,
    /// `fresh[j]`: share of (slot x, j-subset T of the others) with T ∪ x
    /// fatal and T not.
    fresh: Vec<f64>,
}

fn shape_of(st: &StripeEntry, k: usize) -> (ShapeKey, Vec<NodeId>) {
    let mut slots: Vec<NodeId> = Vec::new();
    let mut masks = Vec::new();
    let _ = k;
    for (_, c) in st.members() {
        let mut m = 0u32;
        for n in &c.nodes {
            let i = match slots.iter().position(|s| s == n) {
                Some(i) => i,
                None => {
                    slots.push(n.clone());
                    slots.len() - 1
                }
            };
            if i < 32 {
                m |= 1 << i;
            }
        }
        masks.push(m);
    }
    (
        ShapeKey {
            data: st.data.len(),
            masks,
            slots: slots.len(),
        },
        slots,
    )
}

fn table(code: &Code, decodable: &Decodable, key: &ShapeKey) -> ShapeTable {
    let u = key.slots;
    let members: Vec<usize> = code.real_members(key.data).collect();
    let mut fatal = vec![false; 1 << u];
    let mut lost = Vec::with_capacity(members.len());
    for (t, f) in fatal.iter_mut().enumerate() {
        lost.clear();
        for (i, &m) in members.iter().enumerate() {
            let mask = key.masks.get(i).copied().unwrap_or(0);
            if mask != 0 && mask & !(t as u32) == 0 {
                lost.push(m);
            }
        }
        *f = !decodable(code, key.data, &lost);
    }
    let mut count = vec![0f64; u.max(1)];
    for t in 0..(1usize << u) {
        if fatal[t] {
            continue;
        }
        let j = t.count_ones() as usize;
        for x in 0..u {
            if t & (1 << x) == 0 && fatal[t | (1 << x)] {
                count[j] += 1.0;
            }
        }
    }
    let fresh = (0..u.max(1))
        .map(|j| {
            let patterns = u as f64 * binom(u.saturating_sub(1), j);
            if patterns > 0.0 {
                count[j] / patterns
            } else {
                0.0
            }
        })
        .collect();
    ShapeTable {
        slots: u,
        fatal,
        fresh,
    }
}

/// C(n, k) as a float (small k).
pub fn binom(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    (0..k).fold(1.0, |a, i| a * (n - i) as f64 / (i + 1) as f64)
}

/// P(i marked among `draws` taken without replacement from `pop` of
/// which `marked` are marked).
pub fn hypergeom(pop: usize, marked: usize, draws: usize, i: usize) -> f64 {
    if draws > pop || i > draws || i > marked || draws - i > pop - marked {
        return 0.0;
    }
    binom(marked, i) * binom(pop - marked, draws - i) / binom(pop, draws)
}

/// P(j members missing) among a stripe's `draws` other nodes, drawn from
/// `pop` nodes of which `impaired` are impaired, each of those missing
/// its member with probability `r`.
fn missing_dist(pop: usize, impaired: usize, draws: usize, r: f64, out: &mut Vec<f64>) {
    out.clear();
    out.resize(draws + 1, 0.0);
    for i in 0..=draws.min(impaired) {
        let h = hypergeom(pop, impaired, draws, i);
        if h == 0.0 {
            continue;
        }
        for (j, o) in out.iter_mut().enumerate().take(i + 1) {
            *o += h * binom(i, j) * r.powi(j as i32) * (1.0 - r).powi((i - j) as i32);
        }
    }
}

/// One group of shapes with the same slot count: the mean fresh-loss
/// table, weighted by how often a node's stripe has that shape.
struct Group {
    slots: usize,
    share: f64,
    fresh: Vec<f64>,
}

/// Node sets whole stripes are confined to, as node indices: copysets
/// (from `decide::placement::Copysets`), or the sets a placement was
/// measured to repeat.
pub struct CopysetIndex {
    pub sets: Vec<Vec<usize>>,
    /// Share of stripes on each set (equal for copysets: the placement
    /// fills the least loaded one).
    pub weights: Vec<f64>,
    /// Sets each node belongs to.
    pub of_node: Vec<Vec<usize>>,
}

impl CopysetIndex {
    pub fn new(sets: Vec<Vec<usize>>, weights: Vec<f64>, nodes: usize) -> CopysetIndex {
        let mut of_node = vec![Vec::new(); nodes];
        for (c, s) in sets.iter().enumerate() {
            for &i in s {
                if let Some(v) = of_node.get_mut(i) {
                    v.push(c);
                }
            }
        }
        CopysetIndex {
            sets,
            weights,
            of_node,
        }
    }
}

/// How loss is computed for this layout (the report says which).
#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    /// Stripes spread over node sets without repeating them: nodes are
    /// exchangeable (hypergeometric counts).
    Spread,
    /// Copyset placement: the placement's own copyset table.
    Copysets(usize),
    /// The placement was measured to repeat a few node sets: those sets,
    /// with their measured shares.
    Measured(usize),
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Model::Spread => write!(
                f,
                "stripes spread over node sets (measured: no set repeats)"
            ),
            Model::Copysets(n) => write!(f, "{n} copysets"),
            Model::Measured(n) => write!(f, "{n} node sets the placement was measured to repeat"),
        }
    }
}

/// Whether placed stripes repeat a few node sets: the second half of the
/// placed stripes adds (almost) no set the first half lacks, and sets are
/// far fewer than stripes. Returns the sets and their shares.
fn repeated_sets(placed: &[Vec<usize>]) -> Option<(Vec<Vec<usize>>, Vec<f64>)> {
    let mut count: HashMap<Vec<usize>, usize> = HashMap::new();
    let half = placed.len() / 2;
    let mut first_half = 0;
    for (i, p) in placed.iter().enumerate() {
        let mut v = p.clone();
        v.sort();
        *count.entry(v).or_default() += 1;
        if i + 1 == half {
            first_half = count.len();
        }
    }
    let all = count.len();
    if placed.len() < 64 || all * 4 > placed.len() || all as f64 > first_half as f64 * 1.05 {
        return None;
    }
    let mut sets: Vec<(Vec<usize>, usize)> = count.into_iter().collect();
    sets.sort();
    let total = placed.len() as f64;
    let weights = sets.iter().map(|(_, c)| *c as f64 / total).collect();
    Some((sets.into_iter().map(|(s, _)| s).collect(), weights))
}

/// Per count of a stripe's slots outside a failed domain: the summed
/// fresh-loss shares for 0..=DOMAIN_EXTRA more of them missing.
type DomainTable = Vec<(usize, [f64; DOMAIN_EXTRA + 1])>;

/// Everything the exposure computation needs, shared by all trials.
pub struct Exposure {
    groups: Vec<Group>,
    model: Model,
    /// Nodes the placement spreads stripes over (regular nodes).
    population: usize,
    copysets: Option<CopysetIndex>,
    /// Domain outages: the placed stripes' shapes and which of their
    /// slots sit in each domain (measured), for `domain_loss`.
    stripes: Vec<(usize, Vec<usize>)>,
    tables: Vec<ShapeTable>,
    domain_of: Vec<usize>,
    domain_size: Vec<usize>,
    index_of: HashMap<NodeId, usize>,
    per_domain: Vec<OnceLock<DomainTable>>,
    /// Real stripes per placed stripe (for domain outages).
    weight: f64,
    lock: Mutex<()>,
}

/// An impaired node: its index and the share of its chunks still without
/// a new copy.
#[derive(Debug, Clone, Copy)]
pub struct Impaired {
    pub node: usize,
    pub remaining: f64,
}

impl Exposure {
    /// Builds the shape tables from `stripes` as the real placement placed
    /// them. `node_of` maps a holder to its index, `domain_of` every
    /// index to its domain.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        code: &Code,
        decodable: &Decodable,
        stripes: &[StripeEntry],
        index_of: HashMap<NodeId, usize>,
        domain_of: Vec<usize>,
        population: usize,
        weight: f64,
        copysets: Option<CopysetIndex>,
    ) -> crate::Result<Exposure> {
        let k = code.k();
        let mut keys: HashMap<ShapeKey, usize> = HashMap::new();
        let mut tables = Vec::new();
        let mut placed = Vec::new();
        let mut uses: Vec<f64> = Vec::new();
        for st in stripes {
            let (key, slots) = shape_of(st, k);
            if key.slots > MAX_SLOTS {
                return crate::error::bad(format!(
                    "a stripe spans {} nodes; the simulator handles at most {MAX_SLOTS}",
                    key.slots
                ));
            }
            let id = match keys.get(&key) {
                Some(&id) => id,
                None => {
                    tables.push(table(code, decodable, &key));
                    uses.push(0.0);
                    keys.insert(key.clone(), tables.len() - 1);
                    tables.len() - 1
                }
            };
            // A node's stripe has this shape in proportion to its slots.
            uses[id] += key.slots as f64;
            let idx: Vec<usize> = slots
                .iter()
                .map(|n| index_of.get(n).copied().unwrap_or(usize::MAX))
                .collect();
            placed.push((id, idx));
        }
        let total: f64 = uses.iter().sum::<f64>().max(1.0);
        let mut by_slots: HashMap<usize, Group> = HashMap::new();
        for (t, w) in tables.iter().zip(&uses) {
            let g = by_slots.entry(t.slots).or_insert_with(|| Group {
                slots: t.slots,
                share: 0.0,
                fresh: vec![0.0; t.fresh.len()],
            });
            g.share += w / total;
            for (a, b) in g.fresh.iter_mut().zip(&t.fresh) {
                *a += b * w / total;
            }
        }
        let mut groups: Vec<Group> = by_slots
            .into_values()
            .map(|mut g| {
                if g.share > 0.0 {
                    for f in &mut g.fresh {
                        *f /= g.share;
                    }
                }
                g
            })
            .collect();
        groups.sort_by_key(|g| g.slots);
        let (model, copysets) = match copysets {
            Some(cs) => (Model::Copysets(cs.sets.len()), Some(cs)),
            None => {
                let sets: Vec<Vec<usize>> = placed.iter().map(|(_, i)| i.clone()).collect();
                match repeated_sets(&sets) {
                    Some((sets, weights)) => (
                        Model::Measured(sets.len()),
                        Some(CopysetIndex::new(sets, weights, domain_of.len())),
                    ),
                    None => (Model::Spread, None),
                }
            }
        };
        let domains = domain_of.iter().copied().max().map_or(0, |d| d + 1);
        let mut domain_size = vec![0; domains];
        for &d in &domain_of {
            domain_size[d] += 1;
        }
        Ok(Exposure {
            groups,
            model,
            population: population.max(1),
            copysets,
            stripes: placed,
            tables,
            domain_of,
            domain_size,
            index_of,
            per_domain: (0..domains).map(|_| OnceLock::new()).collect(),
            weight,
            lock: Mutex::new(()),
        })
    }

    /// The fresh-loss table of a `slots`-wide stripe averaged over the
    /// placed shapes (for tests and the report).
    pub fn fresh(&self, slots: usize) -> Option<&[f64]> {
        self.groups
            .iter()
            .find(|g| g.slots == slots)
            .map(|g| g.fresh.as_slice())
    }

    /// Which loss model applies (see [`Model`]).
    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn index_of(&self, n: &NodeId) -> Option<usize> {
        self.index_of.get(n).copied()
    }

    /// Expected real stripes made undecodable by the permanent failure of
    /// node `x`, which held `touching` real stripes, with `impaired` the
    /// other nodes not yet repaired.
    pub fn node_loss(&self, x: usize, touching: f64, impaired: &[Impaired]) -> f64 {
        if touching <= 0.0 {
            return 0.0;
        }
        let mut dist = Vec::new();
        match &self.copysets {
            None => {
                let others: Vec<&Impaired> = impaired.iter().filter(|i| i.node != x).collect();
                if others.is_empty() {
                    return touching * self.sum(0, self.population, 0.0, &mut dist);
                }
                let r = others.iter().map(|i| i.remaining).sum::<f64>() / others.len() as f64;
                touching * self.sum(others.len(), self.population, r, &mut dist)
            }
            Some(cs) => {
                let mine = cs.of_node.get(x).map(|v| v.as_slice()).unwrap_or(&[]);
                if mine.is_empty() {
                    return touching * self.sum(0, self.population, 0.0, &mut dist);
                }
                let total: f64 = mine.iter().map(|&c| cs.weights[c]).sum::<f64>().max(1e-300);
                let mut e = 0.0;
                for &c in mine {
                    let per = touching * cs.weights[c] / total;
                    let set = &cs.sets[c];
                    let hit: Vec<f64> = set
                        .iter()
                        .filter(|&&n| n != x)
                        .filter_map(|&n| impaired.iter().find(|i| i.node == n))
                        .map(|i| i.remaining)
                        .collect();
                    let r = if hit.is_empty() {
                        0.0
                    } else {
                        hit.iter().sum::<f64>() / hit.len() as f64
                    };
                    e += per * self.sum(hit.len(), set.len(), r, &mut dist);
                }
                e
            }
        }
    }

    /// Σ over shape groups of share × Σ_j fresh[j] P(j missing), the
    /// stripe's other nodes drawn from `pop - 1`.
    fn sum(&self, impaired: usize, pop: usize, r: f64, dist: &mut Vec<f64>) -> f64 {
        let mut e = 0.0;
        for g in &self.groups {
            let draws = g.slots.saturating_sub(1);
            if impaired == 0 {
                e += g.share * g.fresh.first().copied().unwrap_or(0.0);
                continue;
            }
            missing_dist(pop.saturating_sub(1), impaired, draws, r, dist);
            e += g.share
                * g.fresh
                    .iter()
                    .zip(dist.iter())
                    .map(|(f, p)| f * p)
                    .sum::<f64>();
        }
        e
    }

    /// Expected real stripes made undecodable by the loss of every node of
    /// domain `d` at once, `impaired` being the nodes outside it not yet
    /// repaired. Which members of each placed stripe sit in `d` is taken
    /// from the placed stripes; the other impaired nodes are spread over
    /// the nodes outside `d`.
    pub fn domain_loss(&self, d: usize, impaired: &[Impaired]) -> f64 {
        let Some(cell) = self.per_domain.get(d) else {
            return 0.0;
        };
        let groups = cell.get_or_init(|| {
            let _g = self.lock.lock();
            self.domain_table(d)
        });
        let others: Vec<&Impaired> = impaired
            .iter()
            .filter(|i| self.domain_of.get(i.node) != Some(&d))
            .collect();
        let r = if others.is_empty() {
            0.0
        } else {
            others.iter().map(|i| i.remaining).sum::<f64>() / others.len() as f64
        };
        let pop = self.population.saturating_sub(self.domain_size[d]);
        let mut dist = Vec::new();
        let mut e = 0.0;
        for (draws, fresh) in groups {
            missing_dist(pop, others.len(), *draws, r, &mut dist);
            for (j, f) in fresh.iter().enumerate() {
                e += f * dist.get(j).copied().unwrap_or(0.0);
            }
        }
        e * self.weight
    }

    /// Per placed stripe: the slots in domain `d` (all lost) and, for `j`
    /// more of its other slots lost, the share of such patterns fatal
    /// with the domain and not without; summed over stripes by the count
    /// of other slots.
    fn domain_table(&self, d: usize) -> DomainTable {
        let mut acc: HashMap<usize, [f64; DOMAIN_EXTRA + 1]> = HashMap::new();
        let mut memo: HashMap<(usize, u32), [f64; DOMAIN_EXTRA + 1]> = HashMap::new();
        for (shape, idx) in &self.stripes {
            let t = &self.tables[*shape];
            let mut dmask = 0u32;
            for (s, &i) in idx.iter().enumerate() {
                if self.domain_of.get(i) == Some(&d) {
                    dmask |= 1 << s;
                }
            }
            let rest = t.slots - dmask.count_ones() as usize;
            if dmask == 0 {
                continue;
            }
            let fresh = *memo.entry((*shape, dmask)).or_insert_with(|| {
                let mut f = [0.0; DOMAIN_EXTRA + 1];
                let mut n = [0.0; DOMAIN_EXTRA + 1];
                for m in 0..(1u32 << t.slots) {
                    let j = m.count_ones() as usize;
                    if m & dmask != 0 || j > DOMAIN_EXTRA {
                        continue;
                    }
                    n[j] += 1.0;
                    if t.fatal[(m | dmask) as usize] && !t.fatal[m as usize] {
                        f[j] += 1.0;
                    }
                }
                for j in 0..=DOMAIN_EXTRA {
                    if n[j] > 0.0 {
                        f[j] /= n[j];
                    }
                }
                f
            });
            let a = acc.entry(rest).or_insert([0.0; DOMAIN_EXTRA + 1]);
            for j in 0..=DOMAIN_EXTRA {
                a[j] += fresh[j];
            }
        }
        let mut v: Vec<_> = acc.into_iter().collect();
        v.sort_by_key(|(r, _)| *r);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypergeometric_sums_to_one() {
        let s: f64 = (0..=5).map(|i| hypergeom(100, 7, 5, i)).sum();
        assert!((s - 1.0).abs() < 1e-12);
        assert!((hypergeom(10, 10, 3, 3) - 1.0).abs() < 1e-12);
        assert_eq!(hypergeom(10, 0, 3, 1), 0.0);
    }

    /// A placement that repeats ten pairs is recognised (and its shares
    /// measured); one that spreads is not.
    #[test]
    fn repeated_node_sets_are_measured() {
        let pairs: Vec<Vec<usize>> = (0..400)
            .map(|i| vec![2 * (i % 10), 2 * (i % 10) + 1])
            .collect();
        let (sets, w) = repeated_sets(&pairs).unwrap();
        assert_eq!(sets.len(), 10);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let spread: Vec<Vec<usize>> = (0..400)
            .map(|i| vec![i % 97, (i * 7 + 3) % 89 + 97])
            .collect();
        assert!(repeated_sets(&spread).is_none());
    }

    #[test]
    fn missing_thins() {
        let mut d = Vec::new();
        missing_dist(9, 9, 3, 0.5, &mut d);
        // All three others impaired, each missing w.p. 1/2.
        assert!((d[3] - 0.125).abs() < 1e-12 && (d[0] - 0.125).abs() < 1e-12);
    }
}
