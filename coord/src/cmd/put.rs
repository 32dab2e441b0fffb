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
use crate::placement::{self, Holders, Layout, Policy};
use crate::state::Coord;
use crate::uploads::Upload;
use protocol::{
    BlockOp, ChunkHeader, ChunkId, ChunkPlan, CommitPut, FileName, FileSummary, NodeAddr, NodeId,
    PutPlan, Scheme,
};
use std::collections::HashMap;
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

/// Plans a put. With `fit`, a file smaller than one full stripe is cut into
/// the stripe's K data chunks (each at least `MIN_FIT_CHUNK`, at most the
/// cluster's chunk size) rather than into one short stripe (`PlanPut { fit: true }`).
pub fn plan(
    coord: &Coord,
    name: FileName,
    size: u64,
    force: bool,
    scheme: Option<Scheme>,
    fit: bool,
    owner: &str,
) -> Result<PutPlan> {
    let cfg = coord.config();
    if cfg.read_only {
        return Err(Error::ReadOnly);
    }
    let mut guard = coord.lock();
    let st = guard.parts();
    if !force && st.catalog.files().contains_key(&name) {
        return Err(Error::FileExists(name));
    }
    let chunks = size.div_ceil(cfg.chunk_size);
    if chunks > MAX_CHUNKS_PER_FILE {
        return Err(Error::BadRequest(format!(
            "a file of {size} bytes would need {chunks} chunks of {} bytes; the limit is {MAX_CHUNKS_PER_FILE} per file (raise the coordinator's --chunk-size)",
            cfg.chunk_size
        )));
    }
    // The caps count live uploads only: one past its deadline is dead
    // weight until the monitor collects it, and must not refuse new puts.
    let now = Instant::now();
    let open = st.uploads.live(now);
    if open >= cfg.max_uploads {
        return Err(Error::Overloaded(format!(
            "{open} uploads are open; try again when some finish"
        )));
    }
    let mine = st.uploads.live_owned_by(owner, now);
    if mine >= cfg.max_uploads_per_peer {
        return Err(Error::Overloaded(format!(
            "{owner} has {mine} uploads open, the most one client may; finish or abort some"
        )));
    }
    let planned = st.uploads.planned_chunks();
    if planned + chunks > cfg.max_planned_chunks {
        return Err(Error::Overloaded(format!(
            "{planned} chunks are planned in open uploads; this one would pass the limit of {}",
            cfg.max_planned_chunks
        )));
    }
    // Spares take no new writes.
    let nodes: Vec<placement::Candidate> = st
        .members
        .candidates(Instant::now(), cfg, st.catalog.draining(), st.used_spares)
        .into_iter()
        .filter(|c| !c.spare)
        .collect();
    let scheme = match scheme {
        // A scheme named for this put is used as given.
        Some(s) => s,
        None => placement::effective_scheme(cfg.scheme, cfg.stripe, cfg.replication, nodes.len()),
    };
    let code = codes::Code::new(scheme).map_err(|e| Error::BadRequest(e.to_string()))?;
    let chunk_size = if fit {
        fit_chunk_size(size, code.k() as u64, cfg.chunk_size)
    } else {
        cfg.chunk_size
    };
    let chunks = size.div_ceil(chunk_size);
    let domains = st.members.domains();
    let layout = Layout {
        code: &code,
        replication: cfg.replication,
        ha: cfg.ha,
        domains: &domains,
    };
    let stripes = if chunks == 0 {
        Vec::new()
    } else {
        placement::plan_with(&nodes, chunks, &layout, st.rotation, cfg.placement).map_err(|e| {
            // Say so when full disks are what is missing.
            let full: Vec<String> = st
                .members
                .iter()
                .filter(|m| m.session.is_some())
                .filter(|m| m.stats.usable_bytes().is_some_and(|u| u < cfg.chunk_size))
                .map(|m| m.id.to_string())
                .collect();
            if full.is_empty() {
                Error::from(e)
            } else {
                Error::BadRequest(format!(
                    "{e}: disk full on {} (less than a chunk free beyond their reserve)",
                    full.join(", ")
                ))
            }
        })?
    };
    let mut plan = PutPlan {
        upload_id: st.uploads.next_id(),
        chunk_size,
        replication: cfg.replication,
        scheme,
        stripes,
        generation: crate::tags::next_generation(),
    };
    // Write grants, valid for as long as the upload may stay open, each
    // signed over its chunk's owner tag.
    let ttl = upload_ttl(size);
    let max_len = protocol::chunk::max_stored_len(cfg.chunk_size);
    if let Some(key) = coord.token_key() {
        let expires = protocol::token::now_ms().saturating_add(ttl.as_millis() as u64);
        let k = code.k();
        let mut tokens = Vec::new();
        for (si, s) in plan.stripes.iter().enumerate() {
            let members = (0..s.data.len()).chain((0..s.parity.len()).map(|j| k + j));
            for (c, member) in s.data.iter().chain(s.parity.iter()).zip(members) {
                let tag = plan.owner_tag(&name, size, si, member);
                tokens.push(key.sign_tagged(
                    c.id,
                    BlockOp::Write,
                    max_len,
                    expires,
                    Some(&tag.digest()),
                ));
            }
        }
        let mut tokens = tokens.into_iter();
        for s in plan.stripes.iter_mut() {
            for c in s.data.iter_mut().chain(s.parity.iter_mut()) {
                c.token = tokens.next();
            }
        }
    }
    tracing::info!(%name, size, chunks, %scheme, upload = plan.upload_id, "put planned");
    st.uploads.open(
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

/// The chunk length that spreads `size` bytes over one stripe of `k` data
/// chunks: never above the cluster's chunk size, never below
/// [`protocol::MIN_FIT_CHUNK`] (unless the cluster's chunk size is), in
/// whole 4 KiB pages.
fn fit_chunk_size(size: u64, k: u64, chunk_size: u64) -> u64 {
    let per = size.div_ceil(k.max(1)).div_ceil(4096) * 4096;
    per.max(protocol::MIN_FIT_CHUNK.min(chunk_size))
        .min(chunk_size)
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
        if sc.data.len() != sp.data.len() || sc.parity.len() != sp.parity.len() {
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
        let mut parity = Vec::new();
        for (h, p) in sc.parity.iter().zip(&sp.parity) {
            if h.raw_len != longest {
                return bad("parity length differs from its stripe's longest chunk".into());
            }
            parity.push(check(h, p)?);
        }
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
        scheme: up.plan.scheme,
        stripes,
        attrs: commit.attrs.clone(),
    })
}

/// How long a commit waits for another change of the same name (another
/// put's commit, a remove, a copy's commit: each one journal write) before
/// it is refused.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// Commits an upload. Concurrent overwrites of one name are serialized,
/// never refused: a commit that finds the name busy waits its turn and then
/// replaces what the earlier one wrote, so the commit that arrived last
/// wins (as on S3). A commit that is refused for good (the name exists and
/// this is no overwrite, or it stayed busy past [`BUSY_WAIT`]) releases its
/// upload at once: its chunks are collected after the delete grace and it
/// no longer counts against any cap.
pub async fn commit(coord: &Coord, commit: CommitPut) -> Result<FileSummary> {
    let deadline = Instant::now() + BUSY_WAIT;
    let mut pause = Duration::from_millis(1);
    let (name, entry, _claim, generation, was_empty) = loop {
        let refused = {
            let mut guard = coord.lock();
            let st = guard.parts();
            let up = st
                .uploads
                .get(commit.upload_id)
                .ok_or(Error::NoSuchUpload(commit.upload_id))?;
            let entry = build_entry(up, &commit)?;
            let name = up.name.clone();
            let generation = up.plan.generation;
            let was_empty = st.catalog.files().get(&name).is_some_and(|f| f.size == 0);
            if !up.force && st.catalog.files().contains_key(&name) {
                Some(Error::FileExists(name))
            } else {
                match coord.claim_names(vec![name.clone()]) {
                    Ok(claim) => break (name, entry, claim, generation, was_empty),
                    Err(e) if Instant::now() >= deadline => Some(e),
                    Err(_) => None,
                }
            }
        };
        if let Some(e) = refused {
            release(coord, commit.upload_id, &e);
            return Err(e);
        }
        // The holder is one journal write away from releasing the name.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let summary = FileSummary {
        name: name.clone(),
        size: entry.size,
        chunks: entry.stripes.iter().map(|s| s.data.len() as u64).sum(),
        created_ms: entry.created_ms,
        attrs: entry.attrs.clone(),
    };
    // Attributes are known only now (an S3 ETag): the first stripe's
    // chunks get them in their tags once the file is durable.
    let attr_tags: Vec<crate::tags::TagOrder> = if entry.attrs.is_empty() || generation == 0 {
        Vec::new()
    } else {
        let first = entry
            .stripes
            .first()
            .map_or(0, |s| s.data.len() + s.parity.len());
        let mut t = crate::tags::entry_tags(&name, generation, &entry);
        t.truncate(first);
        t
    };
    let record = crate::tags::name_record(&name, generation, &entry);
    let res = coord
        .commit(vec![Record::PutFile {
            name: name.clone(),
            entry,
        }])
        .await;
    let upload = coord.lock().parts().uploads.close(commit.upload_id);
    if res.is_ok() {
        if was_empty {
            crate::tags::broadcast(
                coord,
                protocol::SessionMsg::DropName {
                    name: name.clone(),
                    upto: generation.saturating_sub(1),
                },
            );
        }
        if let Some(r) = record {
            crate::tags::broadcast(coord, r);
        }
    }
    match res {
        Ok(garbage) => {
            tracing::info!(%name, size = summary.size, "put committed");
            coord.collect(garbage);
            crate::tags::retag(coord, attr_tags).await;
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
/// to store it on `failed`, by the same placement policy as the plan:
/// nodes that keep the stripe independent (and, with `--ha`, domain-safe)
/// first, then the least used in the plan; a node the client failed on is
/// never offered again.
pub fn replace(coord: &Coord, upload_id: u64, chunk: ChunkId, failed: NodeId) -> Result<NodeAddr> {
    let cfg = coord.config();
    let mut guard = coord.lock();
    let st = guard.parts();
    let cands: Vec<placement::Candidate> = st
        .members
        .candidates(Instant::now(), cfg, st.catalog.draining(), st.used_spares)
        .into_iter()
        .filter(|c| !c.spare)
        .collect();
    let domains = st.members.domains();
    let up = st
        .uploads
        .get_mut(upload_id)
        .ok_or(Error::NoSuchUpload(upload_id))?;
    up.failed.insert(failed.clone());
    let mut uses: HashMap<NodeId, u64> = HashMap::new();
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
    let code = codes::Code::new(up.plan.scheme).map_err(|e| Error::BadRequest(e.to_string()))?;
    let k = code.k();
    for s in up.plan.stripes.iter_mut() {
        let member = s
            .data
            .iter()
            .position(|c| c.id == chunk)
            .or_else(|| s.parity.iter().position(|p| p.id == chunk).map(|j| k + j));
        let Some(member) = member else { continue };
        let mut holders: Holders = vec![Vec::new(); code.members()];
        for (i, c) in s.data.iter().enumerate() {
            holders[i] = c.nodes.iter().map(|n| n.id.clone()).collect();
        }
        for (j, c) in s.parity.iter().enumerate() {
            holders[k + j] = c.nodes.iter().map(|n| n.id.clone()).collect();
        }
        let Some(at) = holders[member].iter().position(|n| *n == failed) else {
            return Err(Error::BadRequest(format!(
                "{failed} holds no copy of chunk {chunk}"
            )));
        };
        holders[member].remove(at);
        let policy = Policy {
            code: &code,
            data: s.data.len(),
            replication,
            ha: cfg.ha,
            domains: &domains,
        };
        // Under HA a put only ever lands domain-safe; otherwise a fallback
        // node beats failing the put (repair relocates it later).
        let new = policy
            .pick(&cands, &holders, member, &uses, &failed_set, false, true)
            .or_else(|| {
                (!cfg.ha)
                    .then(|| {
                        policy.pick(&cands, &holders, member, &uses, &failed_set, false, false)
                    })
                    .flatten()
            })
            .map(|p| p.node);
        let Some(new) = new else {
            return Err(decide::Error::NotEnoughNodes {
                live: cands
                    .iter()
                    .filter(|n| !failed_set.contains(&n.node.id))
                    .count(),
                needed: code.members(),
                replication,
                scheme: up.plan.scheme.to_string(),
            }
            .into());
        };
        tracing::warn!(%name, %chunk, %failed, new = %new.id, "put: replacing a failed target");
        let target = if member < k {
            &mut s.data[member]
        } else {
            &mut s.parity[member - k]
        };
        target.nodes[at] = new.clone();
        return Ok(new);
    }
    Err(Error::BadRequest(format!(
        "chunk {chunk} is not part of upload {upload_id}"
    )))
}

/// Drops an upload whose commit was refused and collects its chunks.
fn release(coord: &Coord, upload_id: u64, why: &Error) {
    let up = coord.lock().parts().uploads.close(upload_id);
    if let Some(up) = up {
        tracing::info!(name = %up.name, upload = upload_id, error = %why, "commit refused; upload released");
        discard(coord, &up);
    }
}

pub fn abort(coord: &Coord, upload_id: u64) -> Result<()> {
    let up = coord
        .lock()
        .parts()
        .uploads
        .close(upload_id)
        .ok_or(Error::NoSuchUpload(upload_id))?;
    tracing::info!(name = %up.name, upload = upload_id, "put aborted");
    discard(coord, &up);
    Ok(())
}

/// Drops uploads past their deadline.
pub fn expire(coord: &Coord, now: Instant) {
    let expired: Vec<Upload> = {
        let mut guard = coord.lock();
        let st = guard.parts();
        let ids = st.uploads.expired(now);
        ids.into_iter()
            .filter_map(|id| st.uploads.close(id))
            .collect()
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
    let (summary, entry, claim) = {
        let mut guard = coord.lock();
        let st = guard.parts();
        let mut seen = std::collections::HashSet::new();
        // One scheme per file: parts must share theirs.
        let scheme = match parts.first().and_then(|p| st.catalog.files().get(p)) {
            Some(f) => f.scheme,
            None => return Err(Error::NoSuchFile(parts[0].clone())),
        };
        let mut entry = FileEntry {
            size: 0,
            created_ms,
            chunk_size: 0,
            replication: u32::MAX,
            scheme,
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
                .files()
                .get(p)
                .ok_or_else(|| Error::NoSuchFile(p.clone()))?;
            if f.scheme != scheme {
                return Err(Error::BadRequest(format!(
                    "concat parts must share one protection scheme: {p} has {}, the first part {scheme}",
                    f.scheme
                )));
            }
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
        let claim = coord.claim_names(
            parts
                .iter()
                .chain(std::iter::once(&name))
                .cloned()
                .collect(),
        )?;
        let summary = FileSummary {
            name: name.clone(),
            size: entry.size,
            chunks,
            created_ms,
            attrs: entry.attrs.clone(),
        };
        (summary, entry, claim)
    };
    // The joined file's chunks are tagged with its name once it is
    // durable: a rebuild finds the object, not its parts.
    let tags = crate::tags::entry_tags(&name, crate::tags::next_generation(), &entry);
    let res = coord
        .commit(vec![Record::Concat {
            name: name.clone(),
            parts: parts.clone(),
            entry,
        }])
        .await;
    drop(claim);
    let garbage = res?;
    tracing::info!(%name, parts = parts.len(), size = summary.size, "concat committed");
    coord.collect(garbage);
    crate::tags::retag(coord, tags).await;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::fit_chunk_size;
    const M: u64 = 1024 * 1024;

    #[test]
    fn small_files_fill_one_stripe_within_bounds() {
        // An 8 MiB S3 part: 6 chunks of 1.33 MiB under rs:6+3, 4 MiB each
        // over 2 data chunks.
        assert_eq!(fit_chunk_size(8 * M, 6, 64 * M), 1_400_832);
        assert_eq!((8 * M).div_ceil(fit_chunk_size(8 * M, 6, 64 * M)), 6);
        assert_eq!(fit_chunk_size(8 * M, 2, 64 * M), 4 * M);
        // Never below 1 MiB, never above the cluster's chunk size.
        assert_eq!(fit_chunk_size(100_000, 6, 64 * M), M);
        assert_eq!(fit_chunk_size(1024 * M, 2, 64 * M), 64 * M);
        assert_eq!(fit_chunk_size(8 * M, 3, 256 * 1024), 256 * 1024);
        assert_eq!(fit_chunk_size(0, 4, 64 * M), M);
    }
}
