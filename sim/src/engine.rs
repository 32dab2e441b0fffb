//! One trial: an event queue in simulated hours over the sampled catalog.
//!
//! Every decision is the real code's: losses by `codes::Code::is_decodable`
//! (or a deliberately broken stand-in in tests, see [`Decodable`]), repair
//! needs, their order and their targets by `decide::planner::plan`. What is
//! simulated is when things break, how long a repair takes, and when a
//! failed drive is replaced.

use crate::cluster::{chunk_pos, node_index, Base};
use crate::exposure::{Exposure, Impaired};
use crate::model::{Params, HOURS_PER_YEAR};
use decide::placement::Candidate;
use decide::planner::{self, Source};
use protocol::{ChunkId, NodeAddr, NodeId, NodeState};
use rand::seq::SliceRandom;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

pub use crate::rule::{real_decodable, Decodable};

/// What one trial measured. Bytes are real bytes (sample bytes scaled up);
/// losses are expectations over the real stripes (see [`crate::exposure`]).
#[derive(Debug, Clone, Default)]
pub struct TrialResult {
    /// Expected real stripes made undecodable.
    pub expected_lost: f64,
    /// Expected failure events (node, domain, power, latent error) that
    /// lost data: Σ over events of `1 - exp(-E[lost by the event])`.
    pub loss_events: f64,
    pub bytes_lost: f64,
    /// Expected real stripes lost by each power event, in order.
    pub power_events: Vec<f64>,
    /// Bytes read by completed repairs (the network traffic repair costs).
    pub repair_read_bytes: f64,
    /// Bytes written by completed repairs.
    pub repair_write_bytes: f64,
    /// Permanent node failures (a domain failure counts each node).
    pub node_failures: u32,
    pub domain_failures: u32,
    /// Sample-stripe hours spent below target.
    pub reduced_stripe_hours: f64,
    /// Largest repair backlog (waiting + in flight), bytes.
    pub peak_queue_bytes: f64,
    /// Hours from each permanent failure to every stripe at full
    /// protection again.
    pub time_to_full: Vec<f64>,
    /// Repair orders abandoned (target or sources lost meanwhile).
    pub repairs_failed: u32,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    NodeFail {
        node: usize,
        life: u64,
    },
    DomainFail {
        domain: usize,
    },
    Power,
    /// A failed node that held no sample chunk: its real chunks are
    /// re-protected by now (estimated from the repair model).
    Unimpair {
        node: usize,
        life: u64,
    },
    Down {
        node: usize,
    },
    Dead {
        node: usize,
        outage: u64,
    },
    Up {
        node: usize,
        outage: u64,
    },
    RepairDone {
        chunk: ChunkId,
        order: u64,
    },
    Replace {
        node: usize,
    },
    Lse {
        node: usize,
    },
    LseFound {
        id: u64,
    },
}

struct Ev {
    t: f64,
    seq: u64,
    kind: Kind,
}

impl PartialEq for Ev {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ev {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest event goes
    /// first; equal times keep scheduling order.
    fn cmp(&self, o: &Self) -> Ordering {
        o.t.total_cmp(&self.t).then(o.seq.cmp(&self.seq))
    }
}

#[derive(Debug, Clone)]
struct NodeSt {
    up: bool,
    /// Declared dead by the coordinator (failed, or silent too long).
    dead: bool,
    failed: bool,
    spare: bool,
    used_spare: bool,
    outage: u64,
    life: u64,
}

struct Order {
    id: u64,
    target: usize,
    bytes: u64,
    read: u64,
    source: Source,
}

struct Lse {
    id: u64,
    stripe: usize,
    member: usize,
    node: usize,
}

/// One trial's state.
pub struct Trial<'a> {
    base: &'a Base,
    exposure: &'a Exposure,
    /// Failed nodes whose chunks are not all re-protected yet: chunks
    /// still short, chunks short at the failure.
    impaired: BTreeMap<usize, (u32, u32)>,
    /// The failed nodes each short chunk lost a copy on.
    short_on: HashMap<ChunkId, Vec<usize>>,
    /// Real stripes with a member on each node. At time zero the real
    /// placement's balance (every regular node alike, as measured over the
    /// sample), not the sample's own count on the node, which a small
    /// sample makes noisy; then moved by failures and repairs.
    real_on: Vec<f64>,
    p: &'a Params,
    decodable: &'a Decodable,
    pub file: decide::entry::FileEntry,
    node: Vec<NodeSt>,
    on_node: Vec<BTreeSet<usize>>,
    attention: BTreeSet<usize>,
    pub lost: Vec<bool>,
    reduced: Vec<bool>,
    reduced_count: usize,
    in_flight: BTreeMap<ChunkId, Order>,
    /// When each short chunk lost its copy: with a fixed repair time its
    /// repair completes that long after, whatever re-planning happened.
    short_since: BTreeMap<ChunkId, f64>,
    flights_of: Vec<u32>,
    in_flight_bytes: u64,
    load: HashMap<NodeId, u64>,
    per_target: HashMap<NodeId, usize>,
    heap: BinaryHeap<Ev>,
    seq: u64,
    next_order: u64,
    rng: ChaCha8Rng,
    pub now: f64,
    waiting: bool,
    lses: Vec<Lse>,
    open_failures: Vec<f64>,
    cands: Vec<Candidate>,
    cands_dirty: bool,
    /// Set while one failure event is being handled: it counts once.
    event_lost: bool,
    pub out: TrialResult,
}

impl<'a> Trial<'a> {
    /// A fresh cluster; `random` schedules the failure model's events
    /// (scenario runs schedule their own).
    pub fn new(
        base: &'a Base,
        exposure: &'a Exposure,
        p: &'a Params,
        decodable: &'a Decodable,
        rng: ChaCha8Rng,
    ) -> Self {
        let n = base.nodes;
        let file = base.file.clone();
        let mut on_node = vec![BTreeSet::new(); n];
        for (s, st) in file.stripes.iter().enumerate() {
            for (_, c) in st.members() {
                for id in &c.nodes {
                    if let Some(i) = node_index(id) {
                        on_node[i].insert(s);
                    }
                }
            }
        }
        let sample = file.stripes.len();
        let load = planner::load(std::iter::once(&file));
        let node = (0..n)
            .map(|i| NodeSt {
                up: true,
                dead: false,
                failed: false,
                spare: base.spare[i],
                used_spare: false,
                outage: 0,
                life: 0,
            })
            .collect();
        let regular = base.regular().max(1) as f64;
        let touching: f64 = (0..n)
            .filter(|&i| !base.spare[i])
            .map(|i| on_node[i].len() as f64)
            .sum::<f64>()
            * base.weight
            / regular;
        let real_on = (0..n)
            .map(|i| if base.spare[i] { 0.0 } else { touching })
            .collect();
        Trial {
            base,
            exposure,
            real_on,
            impaired: BTreeMap::new(),
            short_on: HashMap::new(),
            p,
            decodable,
            file,
            node,
            on_node,
            attention: BTreeSet::new(),
            lost: vec![false; sample],
            reduced: vec![false; sample],
            reduced_count: 0,
            in_flight: BTreeMap::new(),
            short_since: BTreeMap::new(),
            flights_of: vec![0; sample],
            in_flight_bytes: 0,
            load,
            per_target: HashMap::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            next_order: 0,
            rng,
            now: 0.0,
            waiting: false,
            lses: Vec::new(),
            open_failures: Vec::new(),
            cands: Vec::new(),
            cands_dirty: true,
            event_lost: false,
            out: TrialResult::default(),
        }
    }

    /// Runs the random failure model for `years` (one Monte-Carlo trial).
    pub fn run_random(
        base: &'a Base,
        exposure: &'a Exposure,
        p: &'a Params,
        decodable: &'a Decodable,
        trial: u64,
    ) -> TrialResult {
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        rng.set_stream(trial);
        let mut t = Trial::new(base, exposure, p, decodable, rng);
        t.schedule_random();
        t.run_until(p.years * HOURS_PER_YEAR);
        t.out
    }

    fn push(&mut self, t: f64, kind: Kind) {
        self.seq += 1;
        self.heap.push(Ev {
            t,
            seq: self.seq,
            kind,
        });
    }

    fn exp(&mut self, rate_per_hour: f64) -> f64 {
        if rate_per_hour <= 0.0 {
            return f64::INFINITY;
        }
        let u: f64 = self.rng.gen::<f64>();
        -(1.0 - u).ln() / rate_per_hour
    }

    /// A node lifetime, hours: exponential with rate `-ln(1 - afr)` per
    /// year, or Weibull with the same mean.
    fn lifetime(&mut self) -> f64 {
        let f = &self.p.failures;
        if f.afr <= 0.0 {
            return f64::INFINITY;
        }
        let rate = -(1.0 - f.afr).ln() / HOURS_PER_YEAR;
        match f.weibull_shape {
            None => self.exp(rate),
            Some(k) => {
                let scale = (1.0 / rate) / gamma(1.0 + 1.0 / k);
                let u: f64 = self.rng.gen::<f64>();
                scale * (-(1.0 - u).ln()).powf(1.0 / k)
            }
        }
    }

    fn schedule_random(&mut self) {
        let f = self.p.failures.clone();
        for i in 0..self.base.nodes {
            let t = self.lifetime();
            self.push(t, Kind::NodeFail { node: i, life: 0 });
            let t = self.exp(f.transient_per_year / HOURS_PER_YEAR);
            self.push(t, Kind::Down { node: i });
            let t = self.exp(f.lse_per_year / HOURS_PER_YEAR);
            self.push(t, Kind::Lse { node: i });
        }
        for d in 0..self.base.layout.domains {
            let t = self.exp(f.domain_afr / HOURS_PER_YEAR);
            self.push(t, Kind::DomainFail { domain: d });
        }
        let t = self.exp(f.power_per_year / HOURS_PER_YEAR);
        self.push(t, Kind::Power);
    }

    /// Processes events up to `end` hours.
    pub fn run_until(&mut self, end: f64) {
        while let Some(ev) = self.heap.peek() {
            if ev.t > end || !ev.t.is_finite() {
                break;
            }
            let Some(ev) = self.heap.pop() else { break };
            self.advance(ev.t);
            self.handle(ev.kind);
            self.close_incidents();
        }
        self.advance(end.max(self.now));
    }

    fn advance(&mut self, t: f64) {
        self.out.reduced_stripe_hours += self.reduced_count as f64 * (t - self.now);
        self.now = t;
    }

    fn close_incidents(&mut self) {
        if self.reduced_count == 0 && !self.open_failures.is_empty() {
            for t0 in std::mem::take(&mut self.open_failures) {
                self.out.time_to_full.push(self.now - t0);
            }
        }
    }

    fn handle(&mut self, kind: Kind) {
        let hours = |d: f64| d * 24.0;
        match kind {
            Kind::NodeFail { node, life } => {
                if self.node[node].life == life && !self.node[node].failed {
                    self.fail_nodes(&[node]);
                }
            }
            Kind::DomainFail { domain } => {
                let nodes: Vec<usize> = self
                    .base
                    .domain_nodes(domain)
                    .into_iter()
                    .filter(|&i| !self.node[i].failed)
                    .collect();
                self.out.domain_failures += 1;
                self.fail_domain(domain, &nodes);
                let t = self.now + self.exp(self.p.failures.domain_afr / HOURS_PER_YEAR);
                self.push(t, Kind::DomainFail { domain });
            }
            Kind::Down { node } => {
                let f = self.p.failures.clone();
                if !self.node[node].failed && self.node[node].up {
                    let len = self.exp(1.0 / f.transient_hours.max(1e-9));
                    self.take_down(node);
                    let outage = self.node[node].outage;
                    if f.dead_after_hours < len {
                        self.push(self.now + f.dead_after_hours, Kind::Dead { node, outage });
                    }
                    self.push(self.now + len, Kind::Up { node, outage });
                } else {
                    let t = self.now + self.exp(f.transient_per_year / HOURS_PER_YEAR);
                    self.push(t, Kind::Down { node });
                }
            }
            Kind::Dead { node, outage } => {
                let n = &mut self.node[node];
                if n.outage == outage && !n.up && !n.failed {
                    n.dead = true;
                    self.cands_dirty = true;
                    let stripes: Vec<usize> = self.on_node[node].iter().copied().collect();
                    self.attention.extend(stripes);
                    self.replan(None);
                }
            }
            Kind::Up { node, outage } => {
                let n = &mut self.node[node];
                if n.outage == outage && !n.up && !n.failed {
                    n.up = true;
                    n.dead = false;
                    self.cands_dirty = true;
                    let stripes: Vec<usize> = self.on_node[node].iter().copied().collect();
                    for &s in &stripes {
                        self.update_reduced(s);
                    }
                    self.attention.extend(stripes);
                    self.replan(None);
                }
                let t = self.now + self.exp(self.p.failures.transient_per_year / HOURS_PER_YEAR);
                self.push(t, Kind::Down { node });
            }
            Kind::Power => {
                let n = self.power_count();
                let nodes = self.random_live(n);
                let e = self.fail_nodes(&nodes);
                self.out.power_events.push(e);
                let t = self.now + self.exp(self.p.failures.power_per_year / HOURS_PER_YEAR);
                self.push(t, Kind::Power);
            }
            Kind::Unimpair { node, life } => {
                if self.node[node].life == life {
                    if let Some(e) = self.impaired.get_mut(&node) {
                        e.0 = e.0.saturating_sub(1);
                        if e.0 == 0 {
                            self.impaired.remove(&node);
                        }
                    }
                }
            }
            Kind::RepairDone { chunk, order } => self.repair_done(chunk, order),
            Kind::Replace { node } => {
                self.replace(node);
                if self.waiting {
                    self.replan(None);
                }
            }
            Kind::Lse { node } => {
                if !self.node[node].failed && !self.on_node[node].is_empty() {
                    let i = self.rng.gen_range(0..self.on_node[node].len());
                    let s = self.on_node[node].iter().nth(i).copied().unwrap_or(0);
                    let id = self.base.ids[node].clone();
                    let member = self.file.stripes[s]
                        .members()
                        .find(|(_, c)| c.nodes.contains(&id))
                        .map(|(slot, _)| slot.member(self.base.code.k()));
                    if let Some(member) = member {
                        self.seq += 1;
                        let lid = self.seq;
                        self.lses.push(Lse {
                            id: lid,
                            stripe: s,
                            member,
                            node,
                        });
                        let found = self.rng.gen::<f64>() * hours(self.p.failures.scrub_days);
                        self.push(self.now + found, Kind::LseFound { id: lid });
                    }
                }
                let t = self.now + self.exp(self.p.failures.lse_per_year / HOURS_PER_YEAR);
                self.push(t, Kind::Lse { node });
            }
            Kind::LseFound { id } => self.lses.retain(|l| l.id != id),
        }
    }

    /// A failed node's slot gets an empty new node (a spare when the
    /// layout has spares), with a fresh lifetime.
    fn replace(&mut self, node: usize) {
        let life = self.node[node].life;
        let n = &mut self.node[node];
        n.failed = false;
        n.up = true;
        n.dead = false;
        n.spare = self.base.layout.spares > 0;
        n.used_spare = false;
        self.cands_dirty = true;
        let t = self.now + self.lifetime();
        self.push(t, Kind::NodeFail { node, life });
    }

    /// A transient outage starts: the node's sessions close, so its
    /// repair orders are abandoned (as the coordinator does).
    fn take_down(&mut self, node: usize) {
        let n = &mut self.node[node];
        n.up = false;
        n.outage += 1;
        self.cands_dirty = true;
        self.cancel_target(node);
        let stripes: Vec<usize> = self.on_node[node].iter().copied().collect();
        for s in stripes {
            self.update_reduced(s);
        }
    }

    /// Nodes a power event takes for good: the configured share of all
    /// nodes, at least one.
    pub fn power_count(&self) -> usize {
        ((self.p.failures.power_fraction * self.base.nodes as f64).round() as usize).max(1)
    }

    /// `k` distinct working nodes picked with the trial's RNG.
    pub fn random_live(&mut self, k: usize) -> Vec<usize> {
        let mut live: Vec<usize> = (0..self.base.nodes)
            .filter(|&i| !self.node[i].failed)
            .collect();
        live.shuffle(&mut self.rng);
        live.truncate(k);
        live.sort();
        live
    }

    /// Every node of domain `d` lost at once: the expected loss comes from
    /// the placed stripes' members in `d` (see
    /// [`Exposure::domain_loss`]), except with copysets, whose table
    /// already says which node sets hold whole stripes.
    pub fn fail_domain(&mut self, d: usize, nodes: &[usize]) -> f64 {
        if self.base.copysets.is_some() || self.base.layout.domains >= self.base.nodes {
            return self.fail_nodes(nodes);
        }
        let imp = self.impaired_list();
        let e = self.exposure.domain_loss(d, &imp);
        self.fail_inner(nodes, Some(e))
    }

    /// Hours to re-protect `touching` real chunks of failed node `x`: the
    /// fixed time, or its reads at its scatter's per-node rate (capped by
    /// the cluster).
    fn repair_estimate(&self, x: usize, touching: f64) -> f64 {
        if let Some(h) = self.p.repair.fixed_hours {
            return h;
        }
        let amp = if self.file.replication > 1 {
            1.0
        } else {
            self.base.code.k() as f64
        };
        let node_rate = self.p.repair.node_mbps * 1e6 * 3600.0;
        let mut rate = node_rate * self.base.scatter[x] as f64;
        if let Some(c) = self.p.repair.cluster_mbps {
            rate = rate.min(c * 1e6 * 3600.0);
        }
        touching * self.base.chunk_bytes as f64 * amp / rate.max(1.0)
    }

    fn impaired_list(&self) -> Vec<Impaired> {
        self.impaired
            .iter()
            .map(|(&node, &(left, at))| Impaired {
                node,
                remaining: if at == 0 {
                    0.0
                } else {
                    left as f64 / at as f64
                },
            })
            .collect()
    }

    /// Permanent failure of `nodes` at once (one event): their copies are
    /// gone; the real stripes made undecodable are counted by the exposure
    /// method (node by node, which sums exactly for a batch); the sample
    /// stripes they held are checked with the decodability rule so that
    /// repair stops for what the sample cannot rebuild. Returns the
    /// event's expected lost real stripes.
    pub fn fail_nodes(&mut self, nodes: &[usize]) -> f64 {
        self.fail_inner(nodes, None)
    }

    fn fail_inner(&mut self, nodes: &[usize], domain_loss: Option<f64>) -> f64 {
        let mut touched = BTreeSet::new();
        let mut event = domain_loss.unwrap_or(0.0);
        for &x in nodes {
            let n = &mut self.node[x];
            if n.failed {
                continue;
            }
            let touching = self.real_on[x];
            if domain_loss.is_none() {
                let imp = self.impaired_list();
                event += self.exposure.node_loss(x, touching, &imp);
            }
            self.real_on[x] = 0.0;
            let n = &mut self.node[x];
            n.failed = true;
            n.up = false;
            n.dead = true;
            n.life += 1;
            self.out.node_failures += 1;
            self.cands_dirty = true;
            self.cancel_target(x);
            let id = self.base.ids[x].clone();
            for s in std::mem::take(&mut self.on_node[x]) {
                let st = &mut self.file.stripes[s];
                for c in st.data.iter_mut().chain(st.parity.iter_mut()) {
                    if c.nodes.contains(&id) {
                        c.nodes.retain(|h| *h != id);
                        self.short_since.entry(c.header.id).or_insert(self.now);
                        self.short_on.entry(c.header.id).or_default().push(x);
                        let e = self.impaired.entry(x).or_insert((0, 0));
                        e.0 += 1;
                        e.1 += 1;
                    }
                }
                touched.insert(s);
            }
            self.load.remove(&id);
            self.lses.retain(|l| l.node != x);
            if touching > 0.0 && !self.impaired.contains_key(&x) {
                // Real data but no sample chunk to follow its repair.
                self.impaired.insert(x, (1, 1));
                let at = self.now + self.repair_estimate(x, touching);
                let life = self.node[x].life;
                self.push(at, Kind::Unimpair { node: x, life });
            }
            if self.p.failures.replace_days > 0.0 {
                let at = self.now + self.p.failures.replace_days * 24.0;
                self.push(at, Kind::Replace { node: x });
            }
        }
        // An instant replacement (closed-form comparisons) is there before
        // the first repair is planned.
        if self.p.failures.replace_days <= 0.0 {
            for &x in nodes {
                if self.node[x].failed {
                    self.replace(x);
                }
            }
        }
        self.open_failures.push(self.now);
        self.event_lost = false;
        self.record_expected(event);
        for &s in &touched {
            if !self.lost[s] {
                self.check_loss(s);
                self.update_reduced(s);
            }
        }
        self.attention.extend(touched);
        self.replan(None);
        event
    }

    /// Adds one event's expected real lost stripes.
    fn record_expected(&mut self, e: f64) {
        if e <= 0.0 {
            return;
        }
        self.out.expected_lost += e;
        self.out.loss_events += 1.0 - (-e).exp();
        self.out.bytes_lost += e * self.base.real_stripe_data_bytes();
    }

    /// A short chunk got a copy again: one of the failed nodes it lost a
    /// copy on has one chunk fewer to wait for.
    fn reprotected(&mut self, c: &ChunkId) {
        let Some(v) = self.short_on.get_mut(c) else {
            return;
        };
        let x = v.pop();
        if v.is_empty() {
            self.short_on.remove(c);
        }
        if let Some(x) = x {
            if let Some(e) = self.impaired.get_mut(&x) {
                e.0 = e.0.saturating_sub(1);
                if e.0 == 0 {
                    self.impaired.remove(&x);
                }
            }
        }
    }

    /// Is stripe `s` still decodable from the copies not permanently lost
    /// (plus: does an undetected latent error on a survivor tip it over)?
    fn check_loss(&mut self, s: usize) {
        let code = &self.base.code;
        let st = &self.file.stripes[s];
        let data = st.data.len();
        let k = code.k();
        let lost: Vec<usize> = st
            .members()
            .filter(|(_, c)| c.nodes.is_empty())
            .map(|(slot, _)| slot.member(k))
            .collect();
        if !(self.decodable)(code, data, &lost) {
            // The sample stripe cannot be rebuilt, so repair stops for it;
            // what that means for the real stripes was counted by the
            // exposure method. Its short chunks no longer hold their
            // failed nodes impaired (nothing will re-protect them).
            self.lost[s] = true;
            for m in 0..self.base.code.members() {
                let c = crate::cluster::chunk_id(s, m);
                while self.short_on.contains_key(&c) {
                    self.reprotected(&c);
                }
            }
            if self.reduced[s] {
                self.reduced[s] = false;
                self.reduced_count -= 1;
            }
            let chunks: Vec<ChunkId> = self
                .in_flight
                .range(crate::cluster::chunk_id(s, 0)..=crate::cluster::chunk_id(s, usize::MAX))
                .map(|(c, _)| *c)
                .collect();
            for c in chunks {
                self.drop_order(&c);
            }
            return;
        }
        // A latent error on the last copy of a surviving member: one real
        // stripe (the one holding the bad chunk) is lost.
        for l in self.lses.iter().filter(|l| l.stripe == s) {
            let id = &self.base.ids[l.node];
            let holders = st
                .members()
                .find(|(slot, _)| slot.member(k) == l.member)
                .map(|(_, c)| c.nodes.clone())
                .unwrap_or_default();
            if holders.len() == 1 && holders[0] == *id {
                let mut more = lost.clone();
                more.push(l.member);
                if !(self.decodable)(code, data, &more) {
                    // One real stripe (the one holding the bad chunk).
                    self.record_lse_loss();
                    break;
                }
            }
        }
    }

    fn record_lse_loss(&mut self) {
        self.out.expected_lost += 1.0;
        self.out.bytes_lost += self.base.real_stripe_data_bytes();
        if !self.event_lost {
            self.event_lost = true;
            self.out.loss_events += 1.0;
        }
    }

    fn update_reduced(&mut self, s: usize) {
        if self.lost[s] {
            return;
        }
        let st = &self.file.stripes[s];
        let node = &self.node;
        let r = self.file.replication as usize;
        let reduced = st.members().any(|(slot, c)| {
            let want = if slot.is_parity() { 1 } else { r };
            c.nodes
                .iter()
                .filter(|h| node_index(h).is_some_and(|i| node[i].up))
                .count()
                < want
        });
        if reduced != self.reduced[s] {
            self.reduced[s] = reduced;
            if reduced {
                self.reduced_count += 1;
            } else {
                self.reduced_count -= 1;
            }
        }
    }

    fn cancel_target(&mut self, node: usize) {
        let doomed: Vec<ChunkId> = self
            .in_flight
            .iter()
            .filter(|(_, o)| o.target == node)
            .map(|(c, _)| *c)
            .collect();
        for c in doomed {
            self.drop_order(&c);
            self.out.repairs_failed += 1;
            // Its chunk needs a new order: a full planning round.
            self.waiting = true;
        }
    }

    fn drop_order(&mut self, c: &ChunkId) -> Option<Order> {
        let o = self.in_flight.remove(c)?;
        let (s, _) = chunk_pos(c);
        self.flights_of[s] -= 1;
        self.in_flight_bytes -= o.bytes;
        if let Some(v) = self.per_target.get_mut(&self.base.ids[o.target]) {
            *v = v.saturating_sub(1);
        }
        self.attention.insert(s);
        Some(o)
    }

    fn repair_done(&mut self, chunk: ChunkId, order: u64) {
        match self.in_flight.get(&chunk) {
            Some(o) if o.id == order => {}
            _ => return,
        }
        let Some(o) = self.drop_order(&chunk) else {
            return;
        };
        let (s, m) = chunk_pos(&chunk);
        let up = |i: &NodeId| node_index(i).is_some_and(|i| self.node[i].up);
        let sources_ok = match &o.source {
            Source::Copy(n) => n.iter().any(up),
            Source::Rebuild(parts) => parts.iter().all(|(_, n)| n.iter().any(up)),
        };
        let t = &self.node[o.target];
        if self.lost[s] || !t.up || t.failed || !sources_ok {
            self.out.repairs_failed += 1;
            self.waiting = true;
        } else {
            let id = self.base.ids[o.target].clone();
            let k = self.base.code.k();
            let st = &mut self.file.stripes[s];
            let c = if m < k {
                &mut st.data[m]
            } else {
                &mut st.parity[m - k]
            };
            self.short_since.remove(&chunk);
            if !c.nodes.contains(&id) {
                if !self.on_node[o.target].contains(&s) {
                    self.real_on[o.target] += self.base.weight;
                }
                c.nodes.push(id.clone());
                *self.load.entry(id).or_default() += 1;
                self.on_node[o.target].insert(s);
            }
            if self.node[o.target].spare && !self.node[o.target].used_spare {
                self.node[o.target].used_spare = true;
                self.cands_dirty = true;
            }
            self.reprotected(&chunk);
            self.out.repair_read_bytes += o.read as f64;
            self.out.repair_write_bytes += o.bytes as f64;
            self.update_reduced(s);
        }
        // A free target matters only if something is waiting; otherwise
        // only this stripe (trim, next member) needs a look.
        if self.waiting {
            self.replan(None);
        } else {
            self.replan(Some(s));
        }
    }

    fn candidates(&mut self) {
        if !self.cands_dirty {
            return;
        }
        self.cands_dirty = false;
        self.cands = (0..self.base.nodes)
            .filter(|&i| {
                let n = &self.node[i];
                n.up && !n.dead && !n.failed
            })
            .map(|i| Candidate {
                node: NodeAddr {
                    id: self.base.ids[i].clone(),
                    addr: String::new(),
                },
                domain: self.base.domains[&self.base.ids[i]].clone(),
                spare: self.node[i].spare && !self.node[i].used_spare,
            })
            .collect();
    }

    /// One round of the coordinator's planner over the stripes needing
    /// attention (or just `only`), then its decisions applied: trims drop
    /// holders, choices become orders with a simulated duration.
    fn replan(&mut self, only: Option<usize>) {
        self.candidates();
        let fixed = self.p.repair.fixed_hours;
        let node = &self.node;
        let state = |id: &NodeId| match node_index(id).and_then(|i| node.get(i)) {
            Some(n) if n.dead || n.failed => NodeState::Dead,
            Some(n) if !n.up => NodeState::Suspect,
            Some(_) => NodeState::Alive,
            None => NodeState::Dead,
        };
        let in_flight = |c: &ChunkId| self.in_flight.contains_key(c);
        let no = |_: &ChunkId| false;
        let draining = BTreeSet::new();
        let inputs = planner::Inputs {
            state: &state,
            draining: &draining,
            domains: &self.base.domains,
            writable: &self.cands,
            ha: self.base.layout.ha,
            in_flight: &in_flight,
            backed_off: &no,
            running: self.in_flight.len(),
            parallel: usize::MAX,
            // A sample member stands for many real chunks spread over many
            // targets (see the bandwidth pool below): no per-target cap.
            per_target_cap: usize::MAX,
        };
        let scope: Vec<usize> = match only {
            Some(s) => vec![s],
            None => self.attention.iter().copied().collect(),
        };
        let lost = &self.lost;
        let stripes = scope
            .iter()
            .copied()
            .filter(|&s| !lost[s])
            .map(|s| (&self.base.name, &self.file, s));
        // The coordinator's load is recomputed from the catalog each scan;
        // here the planner's own increments (for this round's targets) are
        // undone below instead of cloning the map every round.
        let plan = planner::plan(stripes, &inputs, &mut self.load, &mut self.per_target);
        let trims = plan.trims.clone();
        let mut orders = Vec::new();
        let mut needy = BTreeSet::new();
        for d in &plan.decisions {
            needy.insert(d.need.stripe);
            if let Some(c) = &d.choice {
                orders.push((
                    d.need.chunk,
                    d.need.bytes,
                    c.target.clone(),
                    c.source.clone(),
                ));
            }
        }
        let waiting = plan.waiting_chunks > 0;
        let waiting_bytes = plan.waiting_bytes;
        drop(plan);
        for (_, _, target, _) in &orders {
            if let Some(v) = self.load.get_mut(target) {
                *v = v.saturating_sub(1);
            }
        }
        if only.is_none() {
            self.waiting = waiting;
        } else {
            self.waiting |= waiting;
        }

        for t in trims {
            let (s, m) = chunk_pos(&t.chunk);
            let k = self.base.code.k();
            let st = &mut self.file.stripes[s];
            let c = if m < k {
                &mut st.data[m]
            } else {
                &mut st.parity[m - k]
            };
            c.nodes.retain(|h| !t.drop.contains(h));
            for h in &t.drop {
                if let Some(v) = self.load.get_mut(h) {
                    *v = v.saturating_sub(1);
                }
            }
            for h in &t.drop {
                let id = h.clone();
                if let Some(i) = node_index(h) {
                    let still = self.file.stripes[s]
                        .members()
                        .any(|(_, c)| c.nodes.contains(&id));
                    if !still {
                        self.on_node[i].remove(&s);
                    }
                }
            }
            self.update_reduced(s);
        }

        // Bandwidth: a sample member stands for `weight` real chunks that
        // the coordinator spreads over many targets, so repair is modelled
        // as a cluster-wide pool (per-node rate times writable nodes, or
        // the cluster cap if lower) shared by the orders in flight when
        // each starts; no order goes faster than its real chunks could on
        // `weight` targets at the per-node rate.
        let node_rate = self.p.repair.node_mbps * 1e6 * 3600.0;
        let mut pool = node_rate * self.cands.len().max(1) as f64;
        if let Some(c) = self.p.repair.cluster_mbps {
            pool = pool.min(c * 1e6 * 3600.0);
        }
        let share = pool / (self.in_flight.len() + orders.len()).max(1) as f64;
        let rate = share.min(node_rate * self.base.weight.max(1.0));
        for (chunk, bytes, target, source) in orders {
            let Some(ti) = node_index(&target) else {
                continue;
            };
            // Repair of a failed node reads from its scatter (the nodes
            // holding its stripes' other members) at the per-node rate,
            // shared by the sample members it lost: copysets' cost.
            let rate = match self.short_on.get(&chunk).and_then(|v| v.last()) {
                Some(&x) => {
                    let lost = self.impaired.get(&x).map_or(1, |e| e.1.max(1));
                    rate.min(node_rate * self.base.scatter[x] as f64 / lost as f64)
                }
                None => rate,
            };
            let parts = match &source {
                Source::Copy(_) => 1,
                Source::Rebuild(p) => p.len().max(1),
            };
            let read = bytes.saturating_mul(parts as u64);
            let dur = match fixed {
                Some(h) => {
                    let since = self.short_since.get(&chunk).copied().unwrap_or(self.now);
                    (since + h - self.now).max(0.0)
                }
                None => read as f64 / rate,
            };
            self.next_order += 1;
            let id = self.next_order;
            let (s, _) = chunk_pos(&chunk);
            self.flights_of[s] += 1;
            self.in_flight_bytes += bytes;
            self.in_flight.insert(
                chunk,
                Order {
                    id,
                    target: ti,
                    bytes,
                    read,
                    source,
                },
            );
            self.push(self.now + dur, Kind::RepairDone { chunk, order: id });
        }
        for s in scope {
            if self.lost[s] || (!needy.contains(&s) && self.flights_of[s] == 0) {
                self.attention.remove(&s);
            }
        }
        let queue = (waiting_bytes + self.in_flight_bytes) as f64;
        if queue > self.out.peak_queue_bytes {
            self.out.peak_queue_bytes = queue;
        }
    }

    /// Health of every live sample stripe, as `fsck` computes it.
    pub fn health_counts(&self) -> [usize; 4] {
        let mut out = [0; 4];
        let node = &self.node;
        for (s, st) in self.file.stripes.iter().enumerate() {
            if self.lost[s] {
                out[3] += 1;
                continue;
            }
            let count = |c: &decide::entry::ChunkEntry| {
                c.nodes
                    .iter()
                    .filter(|h| node_index(h).is_some_and(|i| node[i].up))
                    .count() as u32
            };
            let copies = protocol::health::StripeCopies {
                data: st.data.iter().map(count).collect(),
                parity: st.parity.iter().map(count).collect(),
            };
            let h =
                protocol::health::stripe_health(&self.base.code, &copies, self.file.replication);
            out[h as usize] += 1;
        }
        out
    }

    pub fn is_failed(&self, node: usize) -> bool {
        self.node[node].failed
    }

    pub fn reduced_count(&self) -> usize {
        self.reduced_count
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Next event time, if any.
    pub fn next_event(&self) -> Option<f64> {
        self.heap.peek().map(|e| e.t)
    }

    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
}

/// Γ(x) for x > 0 (Lanczos, g = 7), for the Weibull scale.
pub fn gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        std::f64::consts::PI / ((std::f64::consts::PI * x).sin() * gamma(1.0 - x))
    } else {
        let x = x - 1.0;
        let mut a = G[0];
        let t = x + 7.5;
        for (i, g) in G.iter().enumerate().skip(1) {
            a += g / (x + i as f64);
        }
        (2.0 * std::f64::consts::PI).sqrt() * t.powf(x + 0.5) * (-t).exp() * a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_values() {
        assert!((gamma(1.0) - 1.0).abs() < 1e-10);
        assert!((gamma(5.0) - 24.0).abs() < 1e-8);
        assert!((gamma(1.5) - 0.886_226_925_452_758).abs() < 1e-10);
    }
}
