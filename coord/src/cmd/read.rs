//! `Lookup` and `List`: read-only views of the catalog.

use crate::catalog::{ChunkEntry, FileEntry};
use crate::error::{Error, Result};
use crate::state::{Coord, Parts};
use protocol::{
    BlockOp, ChunkInfo, FileInfo, FileName, FileSummary, Location, NodeAddr, StripeInfo,
};
use std::time::Instant;

fn chunk_info(st: &Parts, coord: &Coord, c: &ChunkEntry, now: Instant) -> ChunkInfo {
    let mut locations: Vec<Location> = c
        .nodes
        .iter()
        .map(|n| Location {
            node: NodeAddr {
                id: n.clone(),
                addr: st.members.addr_of(n),
            },
            alive: st.members.not_dead(n, now, coord.config()),
            domain: st
                .members
                .get(n)
                .map(|m| m.domain.clone())
                .unwrap_or_else(|| n.to_string()),
        })
        .collect();
    // Live copies first; the client tries them in this order.
    locations.sort_by_key(|l| !l.alive);
    ChunkInfo {
        header: c.header.clone(),
        locations,
        token: coord.grant(c.header.id, BlockOp::Read, 0, coord.config().read_token_ttl),
    }
}

pub fn lookup(coord: &Coord, name: &FileName) -> Result<FileInfo> {
    let mut guard = coord.lock();
    let st = guard.parts();
    let f = st
        .catalog
        .files()
        .get(name)
        .ok_or_else(|| Error::NoSuchFile(name.clone()))?;
    let now = Instant::now();
    Ok(FileInfo {
        name: name.clone(),
        size: f.size,
        created_ms: f.created_ms,
        chunk_size: f.chunk_size,
        replication: f.replication,
        scheme: f.scheme,
        stripes: f
            .stripes
            .iter()
            .map(|s| StripeInfo {
                data: s
                    .data
                    .iter()
                    .map(|c| chunk_info(&st, coord, c, now))
                    .collect(),
                parity: s
                    .parity
                    .iter()
                    .map(|c| chunk_info(&st, coord, c, now))
                    .collect(),
            })
            .collect(),
        attrs: f.attrs.clone(),
    })
}

fn summary(n: &FileName, f: &FileEntry) -> FileSummary {
    FileSummary {
        name: n.clone(),
        size: f.size,
        chunks: f.stripes.iter().map(|s| s.data.len() as u64).sum(),
        created_ms: f.created_ms,
        attrs: f.attrs.clone(),
    }
}

pub fn list(coord: &Coord, prefix: &str) -> Vec<FileSummary> {
    let mut guard = coord.lock();
    let st = guard.parts();
    st.catalog
        .files()
        .iter()
        .filter(|(n, _)| n.as_str().starts_with(prefix))
        .map(|(n, f)| summary(n, f))
        .collect()
}

/// One bounded page of names with `prefix` after `after`, in name order.
/// Starts the walk at the later of `after` and `prefix` in the ordered map,
/// so a page costs its own length, not the size of the namespace.
pub fn list_page(coord: &Coord, prefix: &str, after: Option<&str>, limit: u32) -> Vec<FileSummary> {
    use std::ops::Bound;
    let limit = limit.clamp(1, protocol::MAX_LIST_PAGE) as usize;
    let mut guard = coord.lock();
    let st = guard.parts();
    let start = match after {
        Some(a) if a >= prefix => Bound::Excluded(a.to_string()),
        _ => Bound::Included(prefix.to_string()),
    };
    // Names and attrs are bounded per file but not per page: stop early
    // rather than build a reply larger than a frame. The caller resumes
    // after the last name it got.
    let mut budget = LIST_PAGE_BYTES;
    st.catalog
        .files()
        .range::<str, _>((start.as_ref().map(|s| s.as_str()), Bound::Unbounded))
        .take_while(|(n, _)| n.as_str().starts_with(prefix))
        .take(limit)
        .take_while(|(n, f)| {
            let cost = 64
                + n.as_str().len()
                + f.attrs
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 4)
                    .sum::<usize>();
            let fits = cost <= budget || budget == LIST_PAGE_BYTES;
            budget = budget.saturating_sub(cost);
            fits
        })
        .map(|(n, f)| summary(n, f))
        .collect()
}

/// Most encoded bytes (estimated) one `ListPage` reply carries: half a
/// frame, leaving room for the encoding's overhead.
const LIST_PAGE_BYTES: usize = protocol::MAX_FRAME_LEN / 2;
