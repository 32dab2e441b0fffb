//! `Fsck`: every file's health, the chunks below target and where their
//! repair stands; optionally as if some nodes had failed (`--what-if`).

use crate::error::{Error, Result};
use crate::state::Coord;
use protocol::health::{file_health, StripeCopies};
use protocol::{ChunkHealth, FileHealth, FileName, FsckReport, NodeId, RepairState};
use std::collections::{BTreeSet, HashSet};
use std::ops::Bound;
use std::time::Instant;

/// Most file names one `Fsck` may list (duplicates are dropped first).
pub const MAX_FSCK_NAMES: usize = 10_000;
/// Most nodes one what-if may name.
pub const MAX_WHAT_IF: usize = 1_000;
/// Files examined per hold of the catalog lock: a whole-namespace fsck
/// never stops puts and heartbeats for longer than one batch.
const BATCH: usize = 1024;

pub fn fsck(coord: &Coord, names: Vec<FileName>, what_if: Vec<NodeId>) -> Result<FsckReport> {
    if names.len() > MAX_FSCK_NAMES * 4 || what_if.len() > MAX_WHAT_IF {
        return Err(Error::BadRequest(format!(
            "fsck takes at most {MAX_FSCK_NAMES} file names and {MAX_WHAT_IF} what-if nodes"
        )));
    }
    let names: BTreeSet<FileName> = names.into_iter().collect();
    if names.len() > MAX_FSCK_NAMES {
        return Err(Error::BadRequest(format!(
            "fsck takes at most {MAX_FSCK_NAMES} distinct file names ({} given); leave them out to check every file",
            names.len()
        )));
    }
    let what_if: Vec<NodeId> = what_if
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    {
        let mut guard = coord.lock();
        let st = guard.parts();
        for n in &what_if {
            if !st.members.contains(n) {
                return Err(Error::BadRequest(format!("no node {n} in this cluster")));
            }
        }
        for n in &names {
            if !st.catalog.files().contains_key(n) {
                return Err(Error::NoSuchFile(n.clone()));
            }
        }
    }
    let mut files = Vec::new();
    if names.is_empty() {
        let mut after: Option<FileName> = None;
        loop {
            let mut guard = coord.lock();
            let st = guard.parts();
            let lower = match &after {
                Some(a) => Bound::Excluded(a.clone()),
                None => Bound::Unbounded,
            };
            let batch: Vec<&FileName> = st
                .catalog
                .files()
                .range((lower, Bound::Unbounded))
                .take(BATCH)
                .map(|(n, _)| n)
                .collect();
            if batch.is_empty() {
                break;
            }
            after = batch.last().map(|n| (*n).clone());
            files.extend(check(coord, &st, batch, &what_if));
        }
    } else {
        let names: Vec<FileName> = names.into_iter().collect();
        for batch in names.chunks(BATCH) {
            let mut guard = coord.lock();
            let st = guard.parts();
            // A file removed since the check above is simply left out.
            files.extend(check(coord, &st, batch.iter().collect(), &what_if));
        }
    }
    Ok(FsckReport { what_if, files })
}

/// One page of a whole-namespace fsck (`FsckPage`): the files after
/// `after`, at most `limit` of them and fewer if their report would outgrow
/// half a frame; one hold of the catalog lock. An empty page ends the walk.
pub fn fsck_page(
    coord: &Coord,
    after: Option<FileName>,
    limit: u32,
    what_if: Vec<NodeId>,
) -> Result<FsckReport> {
    if what_if.len() > MAX_WHAT_IF {
        return Err(Error::BadRequest(format!(
            "fsck takes at most {MAX_WHAT_IF} what-if nodes"
        )));
    }
    let what_if: Vec<NodeId> = what_if
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let limit = limit.clamp(1, protocol::MAX_FSCK_PAGE) as usize;
    let mut guard = coord.lock();
    let st = guard.parts();
    for n in &what_if {
        if !st.members.contains(n) {
            return Err(Error::BadRequest(format!("no node {n} in this cluster")));
        }
    }
    let lower = match &after {
        Some(a) => Bound::Excluded(a),
        None => Bound::Unbounded,
    };
    let batch: Vec<&FileName> = st
        .catalog
        .files()
        .range::<FileName, _>((lower, Bound::Unbounded))
        .take(limit)
        .map(|(n, _)| n)
        .collect();
    let mut files = check(coord, &st, batch, &what_if);
    drop(guard);
    // A file's report grows with its chunks below target: cut the page
    // where it would no longer fit a frame (always keeping one file, which
    // a file's chunk count bounds).
    let mut budget = PAGE_BYTES;
    let keep = files
        .iter()
        .take_while(|f| {
            let cost = 64 + f.name.as_str().len() + 64 * f.chunks.len();
            let fits = cost <= budget || budget == PAGE_BYTES;
            budget = budget.saturating_sub(cost);
            fits
        })
        .count();
    files.truncate(keep);
    Ok(FsckReport { what_if, files })
}

/// Most encoded bytes (estimated) of one `FsckPage` reply: half a frame.
const PAGE_BYTES: usize = protocol::MAX_FRAME_LEN / 2;

fn check(
    coord: &Coord,
    st: &crate::state::Parts,
    names: Vec<&FileName>,
    what_if: &[NodeId],
) -> Vec<FileHealth> {
    let now = Instant::now();
    let gone: HashSet<&NodeId> = what_if.iter().collect();
    let live = |n: &NodeId| !gone.contains(n) && st.members.not_dead(n, now, coord.config());
    let mut files = Vec::new();
    for name in names {
        let Some(f) = st.catalog.files().get(name) else {
            continue;
        };
        let code = f.code();
        let mut stripes = Vec::new();
        let mut chunks = Vec::new();
        let mut index = 0u64;
        for (si, s) in f.stripes.iter().enumerate() {
            let count =
                |c: &crate::catalog::ChunkEntry| c.nodes.iter().filter(|n| live(n)).count() as u32;
            stripes.push(StripeCopies {
                data: s.data.iter().map(count).collect(),
                parity: s.parity.iter().map(count).collect(),
            });
            let all = s
                .data
                .iter()
                .map(|c| (c, false))
                .chain(s.parity.iter().map(|c| (c, true)));
            for (c, parity) in all {
                let n = count(c);
                let target = f.target(parity);
                if n < target {
                    let repair = if !what_if.is_empty() {
                        RepairState::Idle
                    } else if st.repairs.in_flight.contains_key(&c.header.id) {
                        RepairState::Running
                    } else if st.repairs.stuck.contains(&c.header.id) {
                        RepairState::Idle
                    } else {
                        RepairState::Queued
                    };
                    chunks.push(ChunkHealth {
                        id: c.header.id,
                        stripe: si as u32,
                        index: (!parity).then_some(index),
                        live: n,
                        target,
                        repair,
                    });
                }
                if !parity {
                    index += 1;
                }
            }
        }
        files.push(FileHealth {
            name: name.clone(),
            size: f.size,
            health: file_health(&code, &stripes, f.replication),
            chunks,
        });
    }
    files
}
