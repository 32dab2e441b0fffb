//! `Lookup` and `List`: read-only views of the catalog.

use crate::catalog::ChunkEntry;
use crate::error::{Error, Result};
use crate::state::{Coord, State};
use protocol::{
    BlockOp, ChunkInfo, FileInfo, FileName, FileSummary, Location, NodeAddr, StripeInfo,
};
use std::time::Instant;

fn chunk_info(st: &State, coord: &Coord, c: &ChunkEntry, now: Instant) -> ChunkInfo {
    let mut locations: Vec<Location> = c
        .nodes
        .iter()
        .map(|n| Location {
            node: NodeAddr {
                id: n.clone(),
                addr: st.members.addr_of(n),
            },
            alive: st.members.is_alive(n, now, &coord.config),
        })
        .collect();
    // Live copies first; the client tries them in this order.
    locations.sort_by_key(|l| !l.alive);
    ChunkInfo {
        header: c.header.clone(),
        locations,
        token: coord.grant(c.header.id, BlockOp::Read, 0, coord.config.read_token_ttl),
    }
}

pub fn lookup(coord: &Coord, name: &FileName) -> Result<FileInfo> {
    let st = coord.lock();
    let f = st
        .catalog
        .files
        .get(name)
        .ok_or_else(|| Error::NoSuchFile(name.clone()))?;
    let now = Instant::now();
    Ok(FileInfo {
        name: name.clone(),
        size: f.size,
        created_ms: f.created_ms,
        chunk_size: f.chunk_size,
        replication: f.replication,
        stripes: f
            .stripes
            .iter()
            .map(|s| StripeInfo {
                data: s
                    .data
                    .iter()
                    .map(|c| chunk_info(&st, coord, c, now))
                    .collect(),
                parity: s.parity.as_ref().map(|c| chunk_info(&st, coord, c, now)),
            })
            .collect(),
    })
}

pub fn list(coord: &Coord, prefix: &str) -> Vec<FileSummary> {
    let st = coord.lock();
    st.catalog
        .files
        .iter()
        .filter(|(n, _)| n.as_str().starts_with(prefix))
        .map(|(n, f)| FileSummary {
            name: n.clone(),
            size: f.size,
            chunks: f.stripes.iter().map(|s| s.data.len() as u64).sum(),
            created_ms: f.created_ms,
        })
        .collect()
}

/// Largest page `list_page` returns.
pub const MAX_PAGE: usize = 1000;

/// One page of names starting with `prefix`, strictly after `after`, in
/// name order, at most `limit` (capped at [`MAX_PAGE`]); and whether more
/// follow. Costs the page, not the namespace: the catalog is ordered by
/// name, so the walk starts at the cursor.
pub fn list_page(
    coord: &Coord,
    prefix: &str,
    after: Option<&FileName>,
    limit: usize,
) -> (Vec<FileSummary>, bool) {
    use std::ops::Bound;
    let limit = limit.clamp(1, MAX_PAGE);
    let st = coord.lock();
    let start = match after {
        Some(a) => Bound::Excluded(a.clone()),
        None => match FileName::new(prefix) {
            Ok(p) => Bound::Included(p),
            Err(_) => Bound::Unbounded,
        },
    };
    let mut it = st
        .catalog
        .files
        .range((start, Bound::Unbounded))
        .skip_while(|(n, _)| n.as_str() < prefix)
        .take_while(|(n, _)| n.as_str().starts_with(prefix))
        .map(|(n, f)| FileSummary {
            name: n.clone(),
            size: f.size,
            chunks: f.stripes.iter().map(|s| s.data.len() as u64).sum(),
            created_ms: f.created_ms,
        });
    let page: Vec<FileSummary> = it.by_ref().take(limit).collect();
    let more = it.next().is_some();
    (page, more)
}
