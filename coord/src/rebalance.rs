//! Rebalancing: moving copies from the fullest nodes to the emptiest until
//! every node's stored bytes are within [`TOLERANCE`] of the mean.
//!
//! Built like self-healing. [`plan`] is a pure function of catalog state,
//! usage and liveness (unit-tested below without sockets) that picks
//! moves: the node furthest above the mean gives first, to the node
//! furthest below it, one copy at a time, and only copies whose move
//! changes nothing a stripe relies on: the new holder holds no member of
//! the stripe, the stripe's spread over failure domains gets no worse (the
//! one placement [`Policy`], with its `--ha` rule), spares are never
//! targets, and a stripe that is short, under repair or already moving is
//! left alone. Each move strictly lowers the sum of squared usages, so a
//! run always ends.
//!
//! The loop around it ([`run`]) owns the clock, the rate limit (a token
//! bucket in bytes per second, plus at most [`MAX_IN_FLIGHT`] moves),
//! the triggers (an operator's `dfs-sim rebalance`, an empty node joining,
//! or an imbalance that persists) and the messages. A move is a repair
//! order to the new holder, which copies the chunk node to node and
//! reports back like any repair; only then is the new holder journaled,
//! and with it the source dropped, whose copy goes after the delete grace
//! (so reads in progress finish). Repairs come first: no move starts while
//! any chunk waits for repair, and a chunk being moved is not repaired or
//! trimmed meanwhile.

use crate::catalog::{FileEntry, Record, Slot};
use crate::placement::{Candidate, Policy};
use crate::planner;
use protocol::{
    ChunkId, FileName, NodeId, NodeUsage, RebalanceState, RebalanceStatus, RepairOrder,
    RepairSource,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Every node within this fraction of the mean counts as balanced.
pub const TOLERANCE: f64 = 0.10;
/// Moves in flight across the cluster: rebalancing is background work.
pub const MAX_IN_FLIGHT: usize = 4;
/// Moves in flight per node (as source or target).
const PER_NODE: usize = 2;
/// Sources looked at per planning round, and candidate copies kept per
/// source: bounds the memory of a round whatever the catalog's size.
const SOURCES: usize = 8;
const CANDIDATES: usize = 256;
/// A failed move is not tried again before this.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// An imbalance must last this long before it starts a run on its own (a
/// put in progress or a repair's aftermath settles first).
pub const PERSIST: Duration = Duration::from_secs(30);
/// After a run that could not reach the tolerance, the next one on its own
/// waits this much longer.
const STUCK_HOLD: Duration = Duration::from_secs(600);
/// How often an idle loop looks at usage.
const IDLE_LOOK: Duration = Duration::from_secs(2);
/// Task ids of moves have this bit set, so they never collide with repair
/// task ids on the same sessions.
const TASK_BIT: u64 = 1 << 63;

// ------------------------------------------------------------ the planner

/// What the planner knows besides the catalog.
pub struct Inputs<'a> {
    /// Nodes that may receive a copy (writable: room beyond the reserve;
    /// not spares). Sources are every node of the usage map, so a full
    /// node still gives.
    pub targets: &'a [Candidate],
    /// Failure domain of every known node.
    pub domains: &'a HashMap<NodeId, String>,
    /// Enclosure-level HA (`coord --ha`).
    pub ha: bool,
    /// A holder that counts (alive).
    pub alive: &'a dyn Fn(&NodeId) -> bool,
    /// Chunks not to touch now: a repair or a move in flight, or backed off.
    pub busy: &'a dyn Fn(&ChunkId) -> bool,
}

/// One copy to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub chunk: ChunkId,
    pub file: FileName,
    pub stripe: usize,
    pub slot: Slot,
    pub from: NodeId,
    pub to: NodeId,
    /// Stored bytes of the copy.
    pub bytes: u64,
}

/// Stored bytes per node of `nodes` (those that take data), as the
/// catalog counts them.
pub fn usage<'a>(
    files: impl Iterator<Item = &'a FileEntry>,
    nodes: impl Iterator<Item = NodeId>,
) -> BTreeMap<NodeId, u64> {
    let mut u: BTreeMap<NodeId, u64> = nodes.map(|n| (n, 0)).collect();
    for f in files {
        for (c, _) in f.chunks() {
            for n in &c.nodes {
                if let Some(x) = u.get_mut(n) {
                    *x += c.header.stored_len;
                }
            }
        }
    }
    u
}

pub fn mean(usage: &BTreeMap<NodeId, u64>) -> f64 {
    if usage.is_empty() {
        0.0
    } else {
        usage.values().sum::<u64>() as f64 / usage.len() as f64
    }
}

/// The largest distance of a node's usage from the mean, as a fraction of
/// the mean (0 for an empty cluster or a single node).
pub fn deviation(usage: &BTreeMap<NodeId, u64>) -> f64 {
    let m = mean(usage);
    if usage.len() < 2 || m <= 0.0 {
        return 0.0;
    }
    usage
        .values()
        .map(|&u| (u as f64 - m).abs() / m)
        .fold(0.0, f64::max)
}

pub fn balanced(usage: &BTreeMap<NodeId, u64>) -> bool {
    deviation(usage) <= TOLERANCE
}

/// Bytes that must leave the nodes above the mean: what a run has to move
/// at least.
pub fn excess(usage: &BTreeMap<NodeId, u64>) -> u64 {
    let m = mean(usage);
    usage
        .values()
        .map(|&u| (u as f64 - m).max(0.0) as u64)
        .sum()
}

/// A copy a source could give.
struct Candidate_<'a> {
    file: &'a FileName,
    entry: &'a FileEntry,
    stripe: usize,
    slot: Slot,
    chunk: ChunkId,
    bytes: u64,
}

/// Node failures [`legal`] looks at when a move makes a node hold two
/// members of a replicated stripe.
const FATAL_LIMIT: usize = 3;

/// Whether moving `slot`'s copy of stripe `stripe` of `f` from `from` to
/// `to` keeps every rule: `from` holds the copy and `to` none of it; `to`
/// may hold this member by the placement policy's independence rule (a
/// parity, or any member with one copy, alone on its node; with copies, a
/// data chunk never beside a parity), and then the stripe must still
/// survive as many node failures as before; the spread over domains gets
/// no worse (members a domain's loss takes, domains used, the `--ha`
/// rule).
#[allow(clippy::too_many_arguments)]
pub fn legal(
    f: &FileEntry,
    stripe: usize,
    slot: Slot,
    from: &NodeId,
    to: &NodeId,
    domains: &HashMap<NodeId, String>,
    ha: bool,
    alive: &dyn Fn(&NodeId) -> bool,
) -> bool {
    let Some(s) = f.stripes.get(stripe) else {
        return false;
    };
    if from == to || s.get(slot).is_none_or(|c| !c.nodes.contains(from)) {
        return false;
    }
    if s.get(slot).is_some_and(|c| c.nodes.contains(to)) {
        return false;
    }
    let shares = s.members().any(|(_, c)| c.nodes.contains(to));
    let code = f.code();
    let member = slot.member(code.k());
    let policy = Policy {
        code: &code,
        data: s.data.len(),
        replication: f.replication,
        ha,
        domains,
    };
    let before = planner::holders(&code, s, alive);
    if policy.conflicts(&before, member).contains(to) {
        return false;
    }
    let mut after = before.clone();
    let Some(h) = after.get_mut(member) else {
        return false;
    };
    h.retain(|n| n != from);
    h.push(to.clone());
    if policy.misplaced(&after, member).contains(to) {
        return false;
    }
    if !policy.spread(&after).no_worse_than(&policy.spread(&before)) {
        return false;
    }
    // With `to` holding no member the stripe's nodes are the same shape
    // (`to` stands in for `from`); otherwise count node failures again.
    !shares || policy.fatal_nodes(&after, FATAL_LIMIT) >= policy.fatal_nodes(&before, FATAL_LIMIT)
}

/// Whether a stripe may give a copy now: every member at target on live
/// holders, none of them dead, none busy.
fn settled(f: &FileEntry, stripe: usize, inp: &Inputs) -> bool {
    let Some(s) = f.stripes.get(stripe) else {
        return false;
    };
    s.members().all(|(slot, c)| {
        !(inp.busy)(&c.header.id)
            && c.nodes.iter().all(|n| (inp.alive)(n))
            && c.nodes.len() >= f.target(slot.is_parity()) as usize
    })
}

/// Plans up to `max` moves over `files`, most imbalanced nodes first, and
/// updates `usage` (stored bytes per node, moves in flight included) and
/// `per_node` (moves in flight per node) with them. Nothing when balanced.
pub fn plan<'a>(
    files: impl Iterator<Item = (&'a FileName, &'a FileEntry)>,
    inp: &Inputs,
    usage: &mut BTreeMap<NodeId, u64>,
    per_node: &mut HashMap<NodeId, usize>,
    max: usize,
) -> Vec<Move> {
    let mut moves = Vec::new();
    if max == 0 || balanced(usage) {
        return moves;
    }
    let m = mean(usage);
    let lowest = usage.values().copied().min().unwrap_or(0);
    // The sources worth scanning for: above the mean, fullest first.
    let mut sources: Vec<(NodeId, u64)> = usage
        .iter()
        .filter(|(_, &u)| u as f64 > m)
        .map(|(n, &u)| (n.clone(), u))
        .collect();
    sources.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    sources.truncate(SOURCES);
    let source_set: HashSet<&NodeId> = sources.iter().map(|(n, _)| n).collect();
    let mut cands: HashMap<NodeId, Vec<Candidate_>> = HashMap::new();
    for (name, f) in files {
        for (si, s) in f.stripes.iter().enumerate() {
            let mut checked = None;
            for (slot, c) in s.members() {
                for n in &c.nodes {
                    if !source_set.contains(n) {
                        continue;
                    }
                    let u = usage.get(n).copied().unwrap_or(0);
                    // Only a copy whose move can lower the imbalance.
                    if c.header.stored_len == 0 || u.saturating_sub(lowest) <= c.header.stored_len {
                        continue;
                    }
                    let list = cands.entry(n.clone()).or_default();
                    if list.len() >= CANDIDATES {
                        continue;
                    }
                    if !*checked.get_or_insert_with(|| settled(f, si, inp)) {
                        continue;
                    }
                    list.push(Candidate_ {
                        file: name,
                        entry: f,
                        stripe: si,
                        slot,
                        chunk: c.header.id,
                        bytes: c.header.stored_len,
                    });
                }
            }
        }
    }
    // Bigger copies first: fewer moves for the same bytes.
    for list in cands.values_mut() {
        list.sort_by_key(|c| std::cmp::Reverse(c.bytes));
    }
    let mut touched: HashSet<(&FileName, usize)> = HashSet::new();
    let mut exhausted: HashSet<NodeId> = HashSet::new();
    let busy_node = |per_node: &HashMap<NodeId, usize>, n: &NodeId| {
        per_node.get(n).copied().unwrap_or(0) >= PER_NODE
    };
    let writable: HashSet<&NodeId> = inp.targets.iter().map(|c| &c.node.id).collect();
    while moves.len() < max && !balanced(usage) {
        let m = mean(usage);
        // The fullest source still able to give.
        let Some(from) = usage
            .iter()
            .filter(|(n, &u)| u as f64 > m && !exhausted.contains(*n) && !busy_node(per_node, n))
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(n, _)| n.clone())
        else {
            break;
        };
        let u_from = usage[&from];
        let mut targets: Vec<(NodeId, u64)> = usage
            .iter()
            .filter(|(n, &u)| {
                (u as f64) < m && **n != from && writable.contains(n) && !busy_node(per_node, n)
            })
            .map(|(n, &u)| (n.clone(), u))
            .collect();
        targets.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        let mut chosen = None;
        'copies: for c in cands.get(&from).map(|v| v.as_slice()).unwrap_or(&[]) {
            if touched.contains(&(c.file, c.stripe)) {
                continue;
            }
            for (to, u_to) in &targets {
                // Strictly better: the source stays above the target.
                if u_from.saturating_sub(*u_to) <= c.bytes {
                    break;
                }
                if legal(
                    c.entry,
                    c.stripe,
                    c.slot,
                    &from,
                    to,
                    inp.domains,
                    inp.ha,
                    inp.alive,
                ) {
                    chosen = Some((c, to.clone()));
                    break 'copies;
                }
            }
        }
        let Some((c, to)) = chosen else {
            exhausted.insert(from);
            continue;
        };
        touched.insert((c.file, c.stripe));
        *usage.entry(from.clone()).or_default() -= c.bytes;
        *usage.entry(to.clone()).or_default() += c.bytes;
        *per_node.entry(from.clone()).or_default() += 1;
        *per_node.entry(to.clone()).or_default() += 1;
        moves.push(Move {
            chunk: c.chunk,
            file: c.file.clone(),
            stripe: c.stripe,
            slot: c.slot,
            from,
            to,
            bytes: c.bytes,
        });
    }
    moves
}

// ------------------------------------------------------------- the loop

/// A move in flight.
pub struct MoveTask {
    pub task: u64,
    pub mv: Move,
    pub started: Instant,
}

/// Rebalancing bookkeeping, kept in [`State`].
#[derive(Default)]
pub struct Rebalance {
    pub in_flight: HashMap<ChunkId, MoveTask>,
    next_task: u64,
    retry_at: HashMap<ChunkId, Instant>,
    /// The current run started then.
    running: Option<Instant>,
    /// The operator asked for a run.
    requested: bool,
    /// An empty node registered: a run starts once repairs are done.
    joined: Option<NodeId>,
    imbalanced_since: Option<Instant>,
    /// When an idle round last looked at usage.
    looked: Option<Instant>,
    /// How often an idle round looks: [`IDLE_LOOK`], or 20x what the last
    /// look cost (a pass over the whole catalog under its lock), so an idle
    /// rebalancer takes at most 5% of the lock at millions of files.
    idle_every: Duration,
    /// Token bucket of the rate limit, in bytes; refilled when.
    budget: f64,
    refilled: Option<Instant>,
    status: RebalanceStatus,
}

impl Rebalance {
    /// `dfs-sim rebalance`: start a run at the next round.
    pub fn request(&mut self) {
        self.requested = true;
        // Progress from now on is the new run's.
        self.status.trigger = "operator".into();
        self.status.moved_chunks = 0;
        self.status.moved_bytes = 0;
        self.status.planned_chunks = 0;
        self.status.planned_bytes = 0;
        self.status.failed = 0;
        self.status.stuck = false;
    }

    /// A node holding nothing registered: even the cluster out onto it.
    pub fn node_joined(&mut self, node: &NodeId) {
        self.joined = Some(node.clone());
    }

    /// Whether a run is going on (running, paused for repairs, or about to
    /// start at the operator's request).
    pub fn active(&self) -> bool {
        self.running.is_some() || self.requested
    }

    pub fn status(&self) -> RebalanceStatus {
        let mut s = self.status.clone();
        s.in_flight_chunks = self.in_flight.len() as u64;
        s.in_flight_bytes = self.in_flight.values().map(|t| t.mv.bytes).sum();
        if self.requested && self.running.is_none() {
            s.state = RebalanceState::Running;
        }
        s
    }

    fn finish(&mut self, now: Instant, stuck: bool) {
        if let Some(t) = self.running.take() {
            let took = now.saturating_duration_since(t);
            self.status.last_run_ms = Some(took.as_millis() as u64);
            if stuck {
                tracing::warn!(
                    moved = self.status.moved_chunks,
                    "rebalance: stopped short of the tolerance; no move left that keeps every placement rule"
                );
            } else {
                tracing::info!(
                    moved = self.status.moved_chunks,
                    bytes = self.status.moved_bytes,
                    s = took.as_secs_f64(),
                    "rebalance: every node within {:.0}% of the mean",
                    TOLERANCE * 100.0
                );
            }
        }
        self.status.state = RebalanceState::Idle;
        self.status.stuck = stuck;
        // An imbalance left behind waits the persistence time again, and
        // one no move can fix much longer (a new node that only shares
        // domains with full ones, say): the next try would find the same.
        self.imbalanced_since = Some(if stuck { now + STUCK_HOLD } else { now });
    }
}

pub mod run;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ChunkEntry, StripeEntry};
    use codes::Scheme;
    use protocol::{ChunkHeader, Codec, NodeAddr};

    fn id(i: usize) -> NodeId {
        NodeId::new(&format!("n{i:02}")).unwrap()
    }

    fn cands(n: usize, domains: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                node: NodeAddr {
                    id: id(i),
                    addr: format!("127.0.0.1:{}", 4001 + i),
                },
                domain: format!("d{}", i % domains),
                spare: false,
            })
            .collect()
    }

    fn chunk(nodes: &[usize], len: u64) -> ChunkEntry {
        ChunkEntry {
            header: ChunkHeader {
                id: ChunkId::random(),
                raw_len: len,
                raw_sha256: [0; 32],
                codec: Codec::Raw,
                stored_len: len,
                stored_crc: 0,
            },
            nodes: nodes.iter().map(|&i| id(i)).collect(),
        }
    }

    /// A file of `stripes` stripes of `scheme` with one copy per member,
    /// placed round-robin over the first `over` nodes only.
    fn file(scheme: &str, r: u32, stripes: usize, over: usize) -> FileEntry {
        let scheme: Scheme = scheme.parse().unwrap();
        let code = codes::Code::new(scheme).unwrap();
        let mut next = 0;
        let mut take = |n: usize| -> Vec<usize> {
            let v: Vec<usize> = (0..n).map(|i| (next + i) % over).collect();
            next += 1;
            v
        };
        let ss = (0..stripes)
            .map(|_| {
                // Members of one stripe on distinct nodes: a window of the ring.
                let members = code.members();
                let nodes = take(members);
                StripeEntry {
                    data: (0..code.k())
                        .map(|i| {
                            let copies: Vec<usize> =
                                (0..r as usize).map(|c| nodes[(i + c) % members]).collect();
                            chunk(&copies, 1000)
                        })
                        .collect(),
                    parity: (code.k()..members)
                        .map(|m| chunk(&[nodes[m]], 1000))
                        .collect(),
                }
            })
            .collect();
        FileEntry {
            size: 0,
            created_ms: 0,
            chunk_size: 1000,
            replication: r,
            scheme,
            stripes: ss,
            attrs: Default::default(),
        }
    }

    fn ids(c: &[Candidate]) -> impl Iterator<Item = NodeId> + '_ {
        c.iter().map(|c| c.node.id.clone())
    }

    fn domain_map(c: &[Candidate]) -> HashMap<NodeId, String> {
        c.iter()
            .map(|c| (c.node.id.clone(), c.domain.clone()))
            .collect()
    }

    /// Applies moves to the catalog the way `done` does.
    fn apply(files: &mut BTreeMap<FileName, FileEntry>, moves: &[Move]) {
        for m in moves {
            let f = files.get_mut(&m.file).unwrap();
            let s = &mut f.stripes[m.stripe];
            let c = match m.slot {
                Slot::Data(i) => &mut s.data[i],
                Slot::Parity(j) => &mut s.parity[j],
            };
            assert!(c.nodes.contains(&m.from));
            c.nodes.retain(|n| n != &m.from);
            c.nodes.push(m.to.clone());
        }
    }

    /// Runs rounds of `per_round` moves until the planner stops; checks
    /// after every round that no stripe has two members on one node and
    /// that no stripe's spread got worse.
    fn converge(
        files: &mut BTreeMap<FileName, FileEntry>,
        nodes: &[Candidate],
        ha: bool,
        per_round: usize,
    ) -> usize {
        let domains = domain_map(nodes);
        let alive = |_: &NodeId| true;
        let busy = |_: &ChunkId| false;
        let spread =
            |files: &BTreeMap<FileName, FileEntry>| -> Vec<(crate::placement::Spread, usize)> {
                files
                    .values()
                    .flat_map(|f| {
                        let code = f.code();
                        f.stripes
                            .iter()
                            .map(|s| {
                                let p = Policy {
                                    code: &code,
                                    data: s.data.len(),
                                    replication: f.replication,
                                    ha,
                                    domains: &domains,
                                };
                                let h = planner::holders(&code, s, |_| true);
                                (p.spread(&h), p.fatal_nodes(&h, 3))
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect()
            };
        let mut total = 0;
        for _round in 0..10_000 {
            let before = spread(files);
            let mut u = usage(files.values(), ids(nodes));
            let inp = Inputs {
                targets: nodes,
                domains: &domains,
                ha,
                alive: &alive,
                busy: &busy,
            };
            let moves = plan(files.iter(), &inp, &mut u, &mut HashMap::new(), per_round);
            if moves.is_empty() {
                break;
            }
            total += moves.len();
            apply(files, &moves);
            assert_eq!(
                u,
                usage(files.values(), ids(nodes)),
                "projected usage is exact"
            );
            for (a, b) in spread(files).iter().zip(before.iter()) {
                assert!(a.0.no_worse_than(&b.0), "spread got worse: {b:?} -> {a:?}");
                assert!(
                    a.1 >= b.1,
                    "fewer node failures lose the stripe: {b:?} -> {a:?}"
                );
            }
            for f in files.values() {
                for s in &f.stripes {
                    let all: Vec<&NodeId> = s.members().flat_map(|(_, c)| &c.nodes).collect();
                    let set: HashSet<&NodeId> = all.iter().copied().collect();
                    let rule = if f.replication == 1 {
                        set.len() == all.len()
                    } else {
                        true
                    };
                    assert!(rule, "two members of a stripe on one node");
                }
            }
        }
        total
    }

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    #[test]
    fn fresh_nodes_fill_up_to_the_tolerance() {
        // rs:4+2 on 6 nodes, then 4 empty nodes join.
        let nodes = cands(10, 10);
        let mut files = BTreeMap::new();
        files.insert(name("a"), file("rs:4+2", 1, 60, 6));
        files.insert(name("b"), file("xor:3", 1, 40, 6));
        let before = usage(files.values(), ids(&nodes));
        assert!(!balanced(&before));
        let moved = converge(&mut files, &nodes, false, 4);
        let after = usage(files.values(), ids(&nodes));
        assert!(balanced(&after), "deviation {}", deviation(&after));
        assert!(moved > 0);
        assert_eq!(
            before.values().sum::<u64>(),
            after.values().sum::<u64>(),
            "moves keep every byte"
        );
    }

    #[test]
    fn replicas_and_parity_balance_with_copies() {
        let nodes = cands(6, 6);
        let mut files = BTreeMap::new();
        files.insert(name("r"), file("xor:2", 2, 50, 3));
        converge(&mut files, &nodes, false, 3);
        assert!(balanced(&usage(files.values(), ids(&nodes))));
    }

    #[test]
    fn ha_stripes_keep_surviving_any_domain() {
        // lrc:6+2+2 over 4 domains with --ha; 4 more nodes join in new
        // domains and existing ones.
        let nodes = cands(16, 4);
        let domains = domain_map(&nodes);
        let mut files = BTreeMap::new();
        files.insert(name("l"), file("lrc:6+2+2", 1, 40, 12));
        let code = codes::Code::new("lrc:6+2+2".parse().unwrap()).unwrap();
        converge(&mut files, &nodes, true, 4);
        let u = usage(files.values(), ids(&nodes));
        assert!(balanced(&u), "deviation {}", deviation(&u));
        for s in &files[&name("l")].stripes {
            let p = Policy {
                code: &code,
                data: s.data.len(),
                replication: 1,
                ha: true,
                domains: &domains,
            };
            assert!(p.survives_any_domain(&planner::holders(&code, s, |_| true)));
        }
    }

    #[test]
    fn spares_are_never_targets_and_busy_or_short_stripes_stay() {
        let mut nodes = cands(5, 5);
        // n04 is a spare: the caller leaves it out of the nodes.
        nodes.truncate(4);
        let mut files = BTreeMap::new();
        files.insert(name("a"), file("xor:2", 1, 30, 3));
        // A stripe with a member short of its copies is never touched.
        files.get_mut(&name("a")).unwrap().stripes[0].data[0]
            .nodes
            .clear();
        let short: HashSet<ChunkId> = files[&name("a")].stripes[0]
            .members()
            .map(|(_, c)| c.header.id)
            .collect();
        let busy_id = files[&name("a")].stripes[1].data[1].header.id;
        let domains = domain_map(&nodes);
        let alive = |_: &NodeId| true;
        let busy = |c: &ChunkId| *c == busy_id;
        let mut u = usage(files.values(), ids(&nodes));
        let inp = Inputs {
            targets: &nodes,
            domains: &domains,
            ha: false,
            alive: &alive,
            busy: &busy,
        };
        let moves = plan(files.iter(), &inp, &mut u, &mut HashMap::new(), 100);
        assert!(!moves.is_empty());
        for m in &moves {
            assert_ne!(m.to, id(4), "a spare is never a target");
            assert!(!short.contains(&m.chunk), "a short stripe stays");
            assert!(m.stripe != 1, "a stripe with a busy member stays");
        }
    }

    #[test]
    fn balanced_clusters_and_limits() {
        let nodes = cands(3, 3);
        let mut files = BTreeMap::new();
        files.insert(name("a"), file("xor:2", 1, 30, 3));
        let domains = domain_map(&nodes);
        let alive = |_: &NodeId| true;
        let busy = |_: &ChunkId| false;
        let inp = Inputs {
            targets: &nodes,
            domains: &domains,
            ha: false,
            alive: &alive,
            busy: &busy,
        };
        let mut u = usage(files.values(), ids(&nodes));
        assert!(balanced(&u));
        assert!(plan(files.iter(), &inp, &mut u, &mut HashMap::new(), 10).is_empty());
        // One more node: at most `max` moves, at most PER_NODE per node.
        let nodes = cands(4, 4);
        let inp = Inputs {
            targets: &nodes,
            ..inp
        };
        let mut u = usage(files.values(), ids(&nodes));
        let moves = plan(files.iter(), &inp, &mut u, &mut HashMap::new(), 10);
        assert_eq!(
            moves.len(),
            PER_NODE,
            "the one target takes {PER_NODE} at a time"
        );
        assert!(moves.iter().all(|m| m.to == id(3)));
    }

    /// A node without room (not among the targets) still gives copies.
    #[test]
    fn a_full_node_gives_and_never_receives() {
        let nodes = cands(4, 4);
        let mut files = BTreeMap::new();
        files.insert(name("a"), file("xor:2", 1, 30, 3));
        let domains = domain_map(&nodes);
        let alive = |_: &NodeId| true;
        let busy = |_: &ChunkId| false;
        let targets: Vec<Candidate> = nodes[1..].to_vec();
        let inp = Inputs {
            targets: &targets,
            domains: &domains,
            ha: false,
            alive: &alive,
            busy: &busy,
        };
        let mut u = usage(files.values(), ids(&nodes));
        let moves = plan(files.iter(), &inp, &mut u, &mut HashMap::new(), 10);
        assert!(moves.iter().any(|m| m.from == id(0)), "{moves:?}");
        assert!(moves.iter().all(|m| m.to != id(0)));
    }

    /// With copies on a dead node the stripe is left to repair.
    #[test]
    fn dead_holders_leave_the_stripe_to_repair() {
        let nodes = cands(4, 4);
        let mut files = BTreeMap::new();
        files.insert(name("a"), file("xor:2", 1, 12, 3));
        let domains = domain_map(&nodes);
        let alive = |n: &NodeId| *n != id(0);
        let busy = |_: &ChunkId| false;
        let inp = Inputs {
            targets: &nodes,
            domains: &domains,
            ha: false,
            alive: &alive,
            busy: &busy,
        };
        let mut u = usage(files.values(), ids(&nodes));
        for m in plan(files.iter(), &inp, &mut u, &mut HashMap::new(), 10) {
            let s = &files[&m.file].stripes[m.stripe];
            assert!(s.members().all(|(_, c)| !c.nodes.contains(&id(0))));
        }
    }
}
