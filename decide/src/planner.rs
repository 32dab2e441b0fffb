//! The repair planner: which chunks need a new copy, in what order, and
//! where each one goes.
//!
//! A pure function of catalog state, node liveness and the repairs already
//! in flight: no clock, no sockets, no journal. The coordinator's repair
//! loop (`repair::scan`) calls it with the live cluster and turns its
//! decisions into orders and journal records; the simulator (`sim` crate)
//! calls the very same function with a simulated cluster, so a simulated
//! repair is ordered and targeted exactly as a real one.
//!
//! Ordering, like GFS and HDFS, closest to loss first: a data chunk with no
//! readable copy (rebuilt from its stripe), then one with a single copy,
//! then other data deficits, then parity, then relocations (enough copies,
//! but some placed where they weaken the stripe). Targets come from the one
//! placement [`Policy`], spares first.

use crate::entry::{FileEntry, Slot, StripeEntry};
use crate::placement::{Candidate, Holders, Policy};
use protocol::{ChunkId, FileName, NodeId, NodeState};
use std::collections::{BTreeSet, HashMap, HashSet};

/// What the planner knows besides the catalog.
pub struct Inputs<'a> {
    /// Liveness of any node; unknown nodes must be reported dead.
    pub state: &'a dyn Fn(&NodeId) -> NodeState,
    pub draining: &'a BTreeSet<NodeId>,
    /// Failure domain of every known node.
    pub domains: &'a HashMap<NodeId, String>,
    /// Nodes that may receive a new copy (placement candidates).
    pub writable: &'a [Candidate],
    /// Enclosure-level HA (`coord --ha`).
    pub ha: bool,
    /// Chunks with an order in flight: neither re-planned nor trimmed.
    pub in_flight: &'a dyn Fn(&ChunkId) -> bool,
    /// Chunks whose last attempt failed recently: not retried yet.
    pub backed_off: &'a dyn Fn(&ChunkId) -> bool,
    /// Orders in flight now.
    pub running: usize,
    /// Orders allowed in flight across the cluster.
    pub parallel: usize,
    /// Orders allowed in flight per target node.
    pub per_target_cap: usize,
}

/// Holders to drop from a chunk that is back at target.
#[derive(Debug, Clone)]
pub struct Trim {
    pub chunk: ChunkId,
    /// No longer counted as holders (dead, draining or excess).
    pub drop: Vec<NodeId>,
    /// Nodes told to delete their copy (every dropped holder).
    pub delete_on: Vec<NodeId>,
}

/// A chunk below target (or misplaced).
#[derive(Debug, Clone)]
pub struct Need<'a> {
    /// Enough copies, but some sit where they weaken the stripe.
    pub relocate: bool,
    /// 0 (no readable copy) .. 4 (relocation); lower goes first.
    pub priority: u8,
    pub chunk: ChunkId,
    pub file: &'a FileName,
    pub entry: &'a FileEntry,
    pub stripe: usize,
    pub slot: Slot,
    pub bytes: u64,
    /// Holders not dead, alive ones first, draining ones last.
    pub sources: Vec<NodeId>,
}

/// Where the new copy's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Any of these holders of the chunk itself.
    Copy(Vec<NodeId>),
    /// Decode from these members (the code's read plan), each with its
    /// holders that are not dead.
    Rebuild(Vec<(usize, Vec<NodeId>)>),
}

/// The target chosen for a need.
#[derive(Debug, Clone)]
pub struct Choice {
    pub target: NodeId,
    /// Whether the target keeps every placement rule (a repair may fall
    /// back on one that does not).
    pub fits: bool,
    pub source: Source,
}

/// A need and what the planner decided for it now.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    pub need: Need<'a>,
    /// `None`: no room, backed off, or no target or source now.
    pub choice: Option<Choice>,
}

/// One planning round.
#[derive(Debug, Default)]
pub struct RepairPlan<'a> {
    pub trims: Vec<Trim>,
    /// Every need, in priority order.
    pub decisions: Vec<Decision<'a>>,
    /// Short chunks (not relocations) left without an order.
    pub waiting_chunks: u64,
    pub waiting_bytes: u64,
    /// Short chunks that had room but found no source or target.
    pub stuck: HashSet<ChunkId>,
}

impl RepairPlan<'_> {
    /// Nothing short is left: only relocations, if anything.
    pub fn only_relocations(&self) -> bool {
        self.decisions.iter().all(|d| d.need.relocate)
    }
}

/// Copies per node across the catalog: placement's load measure.
pub fn load<'a>(files: impl Iterator<Item = &'a FileEntry>) -> HashMap<NodeId, u64> {
    let mut load: HashMap<NodeId, u64> = HashMap::new();
    for f in files {
        for (c, _) in f.chunks() {
            for n in &c.nodes {
                *load.entry(n.clone()).or_default() += 1;
            }
        }
    }
    load
}

/// Holders of each member of a stripe (index = member), keeping only the
/// nodes `keep` accepts; virtual members of a short stripe hold nothing.
pub fn holders(code: &codes::Code, s: &StripeEntry, keep: impl Fn(&NodeId) -> bool) -> Holders {
    let mut h: Holders = vec![Vec::new(); code.members()];
    for (slot, c) in s.members() {
        if let Some(v) = h.get_mut(slot.member(code.k())) {
            *v = c.nodes.iter().filter(|n| keep(n)).cloned().collect();
        }
    }
    h
}

/// Plans one round over `stripes` (file name, entry, stripe index): the
/// trims of chunks back at target, then every need in priority order with
/// a target for as many as the limits allow. `load` (copies per node, see
/// [`load`]) is updated with the targets chosen.
pub fn plan<'a>(
    stripes: impl Iterator<Item = (&'a FileName, &'a FileEntry, usize)>,
    inp: &Inputs,
    load: &mut HashMap<NodeId, u64>,
    per_target: &mut HashMap<NodeId, usize>,
) -> RepairPlan<'a> {
    let mut out = RepairPlan::default();
    let mut needs = Vec::new();
    for (name, f, si) in stripes {
        assess(name, f, si, inp, load, &mut out.trims, &mut needs);
    }
    // Stable: equal priorities keep catalog order.
    needs.sort_by_key(|n| n.priority);

    let mut running = inp.running;
    for need in needs {
        let room = running < inp.parallel.max(1);
        let backed_off = (inp.backed_off)(&need.chunk);
        let choice = if room && !backed_off {
            choose(&need, inp, per_target, load)
        } else {
            None
        };
        match &choice {
            Some(c) => {
                *per_target.entry(c.target.clone()).or_default() += 1;
                *load.entry(c.target.clone()).or_default() += 1;
                running += 1;
            }
            None if need.relocate => {}
            None => {
                out.waiting_chunks += 1;
                out.waiting_bytes += need.bytes;
                if room && !backed_off {
                    out.stuck.insert(need.chunk);
                }
            }
        }
        out.decisions.push(Decision { need, choice });
    }
    out
}

/// The trims and needs of one stripe.
fn assess<'a>(
    name: &'a FileName,
    f: &'a FileEntry,
    si: usize,
    inp: &Inputs,
    load: &HashMap<NodeId, u64>,
    trims: &mut Vec<Trim>,
    needs: &mut Vec<Need<'a>>,
) {
    let Some(s) = f.stripes.get(si) else {
        return;
    };
    let code = f.code();
    let policy = Policy {
        code: &code,
        data: s.data.len(),
        replication: f.replication,
        ha: inp.ha,
        domains: inp.domains,
    };
    let state = inp.state;
    let holders = holders(&code, s, |_| true);
    for (slot, c) in s.members() {
        let id = c.header.id;
        if (inp.in_flight)(&id) {
            continue;
        }
        let target = f.target(slot.is_parity()) as usize;
        let alive: Vec<&NodeId> = c
            .nodes
            .iter()
            .filter(|n| state(n) != NodeState::Dead)
            .collect();
        let usable: Vec<&NodeId> = alive
            .iter()
            .copied()
            .filter(|n| !inp.draining.contains(*n))
            .collect();
        // Copies that break the stripe's independence (a repair had to fall
        // back on them when nodes were short) are moved once a better node
        // is available.
        let conflicted = policy.misplaced(&holders, slot.member(code.k()));
        let good = usable.iter().filter(|n| !conflicted.contains(**n)).count();
        if usable.len() >= target {
            // Trim: keep `target` copies, well-placed ones first (then least
            // loaded); dead, draining and excess holders go. Misplaced
            // copies stay until a relocation replaces them.
            let mut keep: Vec<&NodeId> = usable.clone();
            keep.sort_by_key(|n| (conflicted.contains(*n), load.get(*n).copied().unwrap_or(0)));
            keep.truncate(target);
            if keep.len() < c.nodes.len() {
                let drop: Vec<NodeId> = c
                    .nodes
                    .iter()
                    .filter(|n| !keep.contains(n))
                    .cloned()
                    .collect();
                // Dead holders too: one that was only hung (SIGSTOP, a long
                // pause) comes back on its old session without registering
                // again, and would keep the dropped copy forever (found by
                // `dfs-sim chaos` as orphan chunks). One that is gone has its
                // copy set aside when it registers, like any garbage.
                let delete_on = drop.clone();
                trims.push(Trim {
                    chunk: id,
                    drop,
                    delete_on,
                });
            }
            if good >= target {
                continue;
            }
        }
        let mut sources: Vec<NodeId> = alive.iter().map(|n| (*n).clone()).collect();
        sources.sort_by_key(|n| (state(n) != NodeState::Alive, inp.draining.contains(n)));
        // Only misplaced, not short: a low-priority move that never holds
        // up an incident and waits for a node that fits.
        let relocate = usable.len() >= target;
        let priority = match (slot, sources.len()) {
            _ if relocate => 4,
            (Slot::Parity(_), _) => 3,
            (Slot::Data(_), 0) => 0,
            (Slot::Data(_), 1) => 1,
            _ => 2,
        };
        needs.push(Need {
            relocate,
            priority,
            chunk: id,
            file: name,
            entry: f,
            stripe: si,
            slot,
            bytes: c.header.stored_len,
            sources,
        });
    }
}

/// Picks the node to hold the new copy (the one placement policy, spares
/// first) and what it reads: a surviving copy, or the members the code's
/// read plan names (LRC: the local group; RS: K members).
fn choose(
    need: &Need,
    inp: &Inputs,
    per_target: &HashMap<NodeId, usize>,
    load: &HashMap<NodeId, u64>,
) -> Option<Choice> {
    let f = need.entry;
    let stripe = f.stripes.get(need.stripe)?;
    let chunk = stripe.get(need.slot)?;
    let code = f.code();
    let member = need.slot.member(code.k());
    let policy = Policy {
        code: &code,
        data: stripe.data.len(),
        replication: f.replication,
        ha: inp.ha,
        domains: inp.domains,
    };
    // Placement looks at copies that still count: not on dead nodes.
    let live = |n: &NodeId| (inp.state)(n) != NodeState::Dead;
    let holders = holders(&code, stripe, live);
    let busy: HashSet<NodeId> = inp
        .writable
        .iter()
        .filter(|c| per_target.get(&c.node.id).copied().unwrap_or(0) >= inp.per_target_cap)
        .map(|c| c.node.id.clone())
        .chain(chunk.nodes.iter().cloned())
        .collect();
    // Protection first: when no node keeps the stripe independent, any node
    // is better than staying below target. A relocation exists only to
    // restore independence, so it waits for a node that does.
    let pick = policy.pick(inp.writable, &holders, member, load, &busy, true, false)?;
    if !pick.fits && need.relocate {
        return None;
    }
    let source = if !need.sources.is_empty() {
        Source::Copy(need.sources.clone())
    } else {
        let lost: Vec<usize> = code
            .real_members(stripe.data.len())
            .filter(|&m| holders[m].is_empty())
            .collect();
        let read = match code.read_plan(stripe.data.len(), &lost, &[member]) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(chunk = %chunk.header.id, error = %e, "no rebuild possible now");
                return None;
            }
        };
        let mut parts = Vec::new();
        for m in read {
            let slot = if m < code.k() {
                Slot::Data(m)
            } else {
                Slot::Parity(m - code.k())
            };
            let c = stripe.get(slot)?;
            parts.push((m, c.nodes.iter().filter(|n| live(n)).cloned().collect()));
        }
        Source::Rebuild(parts)
    };
    Some(Choice {
        target: pick.node.id,
        fits: pick.fits,
        source,
    })
}
