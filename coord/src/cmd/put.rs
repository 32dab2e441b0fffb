//! `PlanPut`, `CommitPut`, `AbortPut`: the two-phase, atomic put.
//!
//! Plan reserves chunk ids and placement and remembers the upload; the
//! client then streams chunks straight to the nodes; commit checks what the
//! client stored against the plan and journals the file entry. Until that
//! record is fsynced the name does not exist, so a failed put leaves nothing
//! visible, and its chunks are deleted on abort, on expiry, or when their
//! nodes next register.

use super::now_ms;
use crate::catalog::{ChunkEntry, FileEntry, Record, StripeEntry};
use crate::error::{Error, Result};
use crate::placement::{self, Layout};
use crate::state::{Coord, Upload};
use protocol::{
    BlockOp, ChunkHeader, ChunkId, ChunkPlan, CommitPut, FileName, FileSummary, NodeAddr, NodeId,
    PutPlan,
};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// An upload not committed within this time (or longer for big files, see
/// [`upload_ttl`]) is abandoned and its chunks collected.
const MIN_UPLOAD_TTL: Duration = Duration::from_secs(600);
/// Slowest upload rate a client is assumed to sustain.
const MIN_UPLOAD_RATE: u64 = 1024 * 1024;

/// Most chunks one file may have. Bounds the work and memory a single
/// request can ask of the coordinator (a plan for `size = u64::MAX` must not
/// allocate), and keeps a file's catalog entry well inside one frame for
/// `Lookup`. 32,768 chunks of 64 MiB is 2 TiB.
pub const MAX_CHUNKS_PER_FILE: u64 = 32_768;

/// No upload may stay open longer than this, however large: a client that
/// trickles a huge file forever cannot pin its plan.
const MAX_UPLOAD_TTL: Duration = Duration::from_secs(24 * 3600);

fn upload_ttl(size: u64) -> Duration {
    MIN_UPLOAD_TTL
        .max(Duration::from_secs(size / MIN_UPLOAD_RATE))
        .min(MAX_UPLOAD_TTL)
}

pub fn plan(coord: &Coord, name: FileName, size: u64, force: bool, owner: &str) -> Result<PutPlan> {
    let cfg = &coord.config;
    if cfg.read_only {
        return Err(Error::ReadOnly);
    }
    let mut st = coord.lock();
    if !force && st.catalog.files.contains_key(&name) {
        return Err(Error::FileExists(name));
    }
    let chunks = size.div_ceil(cfg.chunk_size);
    if chunks > MAX_CHUNKS_PER_FILE {
        return Err(Error::BadRequest(format!(
            "a file of {size} bytes would need {chunks} chunks of {} bytes; the limit is {MAX_CHUNKS_PER_FILE} per file (raise the coordinator's --chunk-size)",
            cfg.chunk_size
        )));
    }
    if st.uploads.len() >= cfg.max_uploads {
        return Err(Error::Overloaded(format!(
            "{} uploads are open; try again when some finish",
            st.uploads.len()
        )));
    }
    let mine = st.uploads.values().filter(|u| u.owner == owner).count();
    if mine >= cfg.max_uploads_per_peer {
        return Err(Error::Overloaded(format!(
            "{owner} has {mine} uploads open, the most one client may; finish or abort some"
        )));
    }
    let planned: u64 = st
        .uploads
        .values()
        .map(|u| u.size.div_ceil(u.plan.chunk_size.max(1)))
        .sum();
    if planned + chunks > cfg.max_planned_chunks {
        return Err(Error::Overloaded(format!(
            "{planned} chunks are planned in open uploads; this one would pass the limit of {}",
            cfg.max_planned_chunks
        )));
    }
    let mut nodes = st
        .members
        .writable(Instant::now(), cfg, &st.catalog.draining);
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    let layout = Layout {
        replication: cfg.replication,
        parity: cfg.parity,
        stripe: cfg.stripe,
    };
    let stripes = if chunks == 0 {
        Vec::new()
    } else {
        placement::plan(&nodes, chunks, &layout, &mut st.rotation).map_err(|e| {
            // Say so when full disks are what is missing.
            let full: Vec<String> = st
                .members
                .members
                .values()
                .filter(|m| m.session.is_some())
                .filter(|m| m.stats.usable_bytes().is_some_and(|u| u < cfg.chunk_size))
                .map(|m| m.id.to_string())
                .collect();
            if full.is_empty() {
                e
            } else {
                Error::BadRequest(format!(
                    "{e}: disk full on {} (less than a chunk free beyond their reserve)",
                    full.join(", ")
                ))
            }
        })?
    };
    // Write grants, valid for as long as the upload may stay open.
    let ttl = upload_ttl(size);
    let max_len = protocol::chunk::max_stored_len(cfg.chunk_size);
    let mut stripes = stripes;
    for s in stripes.iter_mut() {
        for c in s.data.iter_mut().chain(s.parity.iter_mut()) {
            c.token = coord.grant(c.id, BlockOp::Write, max_len, ttl);
        }
    }
    st.next_upload += 1;
    let plan = PutPlan {
        upload_id: st.next_upload,
        chunk_size: cfg.chunk_size,
        replication: cfg.replication,
        stripes,
    };
    tracing::info!(%name, size, chunks, upload = plan.upload_id, "put planned");
    st.uploads.insert(
        plan.upload_id,
        Upload {
            name,
            size,
            force,
            plan: plan.clone(),
            expires: Instant::now() + ttl,
            failed: Default::default(),
            owner: owner.to_string(),
        },
    );
    Ok(plan)
}

/// Checks a committed stripe list against the plan and builds the entry.
fn build_entry(up: &Upload, commit: &CommitPut) -> Result<FileEntry> {
    let bad = |m: String| Err(Error::BadCommit(m));
    if commit.stripes.len() != up.plan.stripes.len() {
        return bad(format!(
            "{} stripes committed, {} planned",
            commit.stripes.len(),
            up.plan.stripes.len()
        ));
    }
    let cs = up.plan.chunk_size;
    let total = up.size.div_ceil(cs);
    let mut index = 0u64;
    let mut size = 0u64;
    let mut stripes = Vec::new();
    let check = |h: &ChunkHeader, p: &ChunkPlan| -> Result<ChunkEntry> {
        if h.id != p.id {
            return Err(Error::BadCommit(format!(
                "chunk {} was not planned here",
                h.id
            )));
        }
        protocol::chunk::check_bounds(h).map_err(|e| Error::BadCommit(e.to_string()))?;
        Ok(ChunkEntry {
            header: h.clone(),
            nodes: p.nodes.iter().map(|n| n.id.clone()).collect(),
        })
    };
    for (sc, sp) in commit.stripes.iter().zip(&up.plan.stripes) {
        if sc.data.len() != sp.data.len() || sc.parity.is_some() != sp.parity.is_some() {
            return bad("stripe shape differs from the plan".into());
        }
        let mut data = Vec::new();
        let mut longest = 0;
        for (h, p) in sc.data.iter().zip(&sp.data) {
            index += 1;
            let want = if index == total {
                up.size - (total - 1) * cs
            } else {
                cs
            };
            if h.raw_len != want {
                return bad(format!(
                    "chunk {index} has {} bytes, expected {want}",
                    h.raw_len
                ));
            }
            longest = longest.max(h.raw_len);
            size += h.raw_len;
            data.push(check(h, p)?);
        }
        let parity = match (&sc.parity, &sp.parity) {
            (Some(h), Some(p)) => {
                if h.raw_len != longest {
                    return bad("parity length differs from its stripe's longest chunk".into());
                }
                Some(check(h, p)?)
            }
            _ => None,
        };
        stripes.push(StripeEntry { data, parity });
    }
    if size != up.size {
        return bad(format!("{size} bytes committed, {} planned", up.size));
    }
    protocol::check_attrs(&commit.attrs).map_err(Error::BadCommit)?;
    Ok(FileEntry {
        size,
        created_ms: now_ms(),
        chunk_size: cs,
        replication: up.plan.replication,
        stripes,
        attrs: commit.attrs.clone(),
    })
}

pub async fn commit(coord: &Coord, commit: CommitPut) -> Result<FileSummary> {
    let (name, entry) = {
        let mut st = coord.lock();
        let up = st
            .uploads
            .get(&commit.upload_id)
            .ok_or(Error::NoSuchUpload(commit.upload_id))?;
        let entry = build_entry(up, &commit)?;
        let name = up.name.clone();
        if !up.force && st.catalog.files.contains_key(&name) {
            return Err(Error::FileExists(name));
        }
        if !st.busy.insert(name.clone()) {
            return Err(Error::Busy(name));
        }
        (name, entry)
    };
    let summary = FileSummary {
        name: name.clone(),
        size: entry.size,
        chunks: entry.stripes.iter().map(|s| s.data.len() as u64).sum(),
        created_ms: entry.created_ms,
        attrs: entry.attrs.clone(),
    };
    let res = coord
        .commit(vec![Record::PutFile {
            name: name.clone(),
            entry,
        }])
        .await;
    let upload = {
        let mut st = coord.lock();
        st.busy.remove(&name);
        st.uploads.remove(&commit.upload_id)
    };
    match res {
        Ok(garbage) => {
            tracing::info!(%name, size = summary.size, "put committed");
            coord.collect(garbage);
            Ok(summary)
        }
        Err(e) => {
            if let Some(up) = upload {
                discard(coord, &up);
            }
            Err(e)
        }
    }
}

/// Picks a new node for one copy of a planned chunk after the client failed
/// to store it on `failed`. Prefers nodes that keep the stripe independent
/// (not its parity holder; for parity, no holder of its data; with single
/// copies, no holder of a sibling chunk), then the least used in the plan.
pub fn replace(coord: &Coord, upload_id: u64, chunk: ChunkId, failed: NodeId) -> Result<NodeAddr> {
    let cfg = &coord.config;
    let mut guard = coord.lock();
    let st = &mut *guard;
    let mut writable = st
        .members
        .writable(Instant::now(), cfg, &st.catalog.draining);
    writable.sort_by(|a, b| a.id.cmp(&b.id));
    let up = st
        .uploads
        .get_mut(&upload_id)
        .ok_or(Error::NoSuchUpload(upload_id))?;
    up.failed.insert(failed.clone());
    let mut uses: HashMap<NodeId, usize> = HashMap::new();
    for s in &up.plan.stripes {
        for c in s.data.iter().chain(s.parity.iter()) {
            for n in &c.nodes {
                *uses.entry(n.id.clone()).or_default() += 1;
            }
        }
    }
    let replication = up.plan.replication;
    let failed_set = up.failed.clone();
    let name = up.name.clone();
    for s in up.plan.stripes.iter_mut() {
        let position = s
            .data
            .iter()
            .position(|c| c.id == chunk)
            .map(Some)
            .or_else(|| s.parity.as_ref().filter(|p| p.id == chunk).map(|_| None));
        let Some(slot) = position else { continue };
        let mut avoid: HashSet<NodeId> = HashSet::new();
        match slot {
            Some(i) => {
                avoid.extend(
                    s.parity
                        .iter()
                        .flat_map(|p| p.nodes.iter().map(|n| n.id.clone())),
                );
                if replication == 1 {
                    for (j, d) in s.data.iter().enumerate() {
                        if j != i {
                            avoid.extend(d.nodes.iter().map(|n| n.id.clone()));
                        }
                    }
                }
            }
            None => avoid.extend(
                s.data
                    .iter()
                    .flat_map(|d| d.nodes.iter().map(|n| n.id.clone())),
            ),
        }
        let target = match slot {
            Some(i) => &mut s.data[i],
            None => s.parity.as_mut().expect("found above"),
        };
        let Some(at) = target.nodes.iter().position(|n| n.id == failed) else {
            return Err(Error::BadRequest(format!(
                "{failed} holds no copy of chunk {chunk}"
            )));
        };
        let pick = |strict: bool| {
            writable
                .iter()
                .filter(|n| !failed_set.contains(&n.id))
                .filter(|n| !target.nodes.iter().any(|t| t.id == n.id))
                .filter(|n| !strict || !avoid.contains(&n.id))
                .min_by_key(|n| uses.get(&n.id).copied().unwrap_or(0))
                .cloned()
        };
        let Some(new) = pick(true).or_else(|| pick(false)) else {
            return Err(Error::NotEnoughNodes {
                live: writable
                    .iter()
                    .filter(|n| !failed_set.contains(&n.id))
                    .count(),
                needed: target.nodes.len(),
                replication,
                parity: false,
            });
        };
        tracing::warn!(%name, %chunk, %failed, new = %new.id, "put: replacing a failed target");
        target.nodes[at] = new.clone();
        return Ok(new);
    }
    Err(Error::BadRequest(format!(
        "chunk {chunk} is not part of upload {upload_id}"
    )))
}

pub fn abort(coord: &Coord, upload_id: u64) -> Result<()> {
    let up = coord
        .lock()
        .uploads
        .remove(&upload_id)
        .ok_or(Error::NoSuchUpload(upload_id))?;
    tracing::info!(name = %up.name, upload = upload_id, "put aborted");
    discard(coord, &up);
    Ok(())
}

/// Drops uploads past their deadline.
pub fn expire(coord: &Coord, now: Instant) {
    let expired: Vec<Upload> = {
        let mut st = coord.lock();
        let ids: Vec<u64> = st
            .uploads
            .iter()
            .filter(|(_, u)| u.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        ids.iter().filter_map(|id| st.uploads.remove(id)).collect()
    };
    for up in expired {
        tracing::warn!(name = %up.name, upload = up.plan.upload_id, "upload expired uncommitted");
        discard(coord, &up);
    }
}

fn discard(coord: &Coord, up: &Upload) {
    let garbage = up
        .plan
        .stripes
        .iter()
        .flat_map(|s| s.data.iter().chain(s.parity.iter()))
        .map(|c| (c.id, c.nodes.iter().map(|n| n.id.clone()).collect()))
        .collect();
    coord.collect(garbage);
}

/// `Concat`: `name` becomes `parts` joined in order, by one journal record;
/// no chunk is copied or collected. Fails if a part is missing, named twice,
/// busy, or is `name` itself.
pub async fn concat(
    coord: &Coord,
    name: FileName,
    parts: Vec<FileName>,
    attrs: protocol::Attrs,
) -> Result<FileSummary> {
    if parts.is_empty() || parts.len() > protocol::MAX_CONCAT_PARTS {
        return Err(Error::BadRequest(format!(
            "concat takes 1 to {} parts, got {}",
            protocol::MAX_CONCAT_PARTS,
            parts.len()
        )));
    }
    protocol::check_attrs(&attrs).map_err(Error::BadRequest)?;
    let created_ms = now_ms();
    let (summary, entry) = {
        let mut st = coord.lock();
        let mut seen = HashSet::new();
        let mut entry = FileEntry {
            size: 0,
            created_ms,
            chunk_size: 0,
            replication: u32::MAX,
            stripes: Vec::new(),
            attrs,
        };
        for p in &parts {
            if p == &name || !seen.insert(p) {
                return Err(Error::BadRequest(format!(
                    "concat part {p} is named twice or is the target"
                )));
            }
            let f = st
                .catalog
                .files
                .get(p)
                .ok_or_else(|| Error::NoSuchFile(p.clone()))?;
            entry.size += f.size;
            entry.chunk_size = entry.chunk_size.max(f.chunk_size);
            entry.replication = entry.replication.min(f.replication);
            entry.stripes.extend(f.stripes.iter().cloned());
        }
        let chunks: u64 = entry.stripes.iter().map(|s| s.data.len() as u64).sum();
        if chunks > MAX_CHUNKS_PER_FILE {
            return Err(Error::BadRequest(format!(
                "the joined file would have {chunks} chunks; the limit is {MAX_CHUNKS_PER_FILE}"
            )));
        }
        let mut taken = Vec::new();
        for n in parts.iter().chain(std::iter::once(&name)) {
            if !st.busy.insert(n.clone()) {
                for t in taken {
                    st.busy.remove(&t);
                }
                return Err(Error::Busy(n.clone()));
            }
            taken.push(n.clone());
        }
        let summary = FileSummary {
            name: name.clone(),
            size: entry.size,
            chunks,
            created_ms,
            attrs: entry.attrs.clone(),
        };
        (summary, entry)
    };
    let res = coord
        .commit(vec![Record::Concat {
            name: name.clone(),
            parts: parts.clone(),
            entry,
        }])
        .await;
    {
        let mut st = coord.lock();
        for n in parts.iter().chain(std::iter::once(&name)) {
            st.busy.remove(n);
        }
    }
    let garbage = res?;
    tracing::info!(%name, parts = parts.len(), size = summary.size, "concat committed");
    coord.collect(garbage);
    Ok(summary)
}
