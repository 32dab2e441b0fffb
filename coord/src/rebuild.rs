//! `coord --rebuild-from-nodes`: a catalog assembled from the owner tags
//! the nodes keep with their chunks (see `protocol::tag`), for when every
//! coordinator disk is lost.
//!
//! Rules:
//! - Every listed node is asked for its tags, page by page (bounded
//!   replies, one sorted walk per node); copies with a tombstone (their
//!   file was removed or replaced) and copies without a tag do not count.
//! - Per name, the newest generation whose every stripe is decodable with
//!   the copies found (`codes::Code::is_decodable`, the one decodability
//!   function) wins; an older complete generation is kept only when the
//!   newest is not, and the report says so. A member no copy of which
//!   answered is described again by a node decoding it (`Reconstruct`,
//!   nothing stored), so that repair can restore it.
//! - The nodes' cluster id is adopted only when every answering node that
//!   joined a cluster names the same one.
//! - The result is written as an ordinary snapshot, into a data directory
//!   that holds no catalog yet; `dry_run` writes nothing. Nothing is
//!   deleted or set aside by a rebuild: copies the new catalog does not
//!   claim stay where they are (a normal coordinator sets them aside at
//!   registration and purges them only after the orphan grace).
//! - Client keys and drains are not on the nodes: they are not rebuilt.

use crate::catalog::{Catalog, ChunkEntry, FileEntry, Record, StripeEntry};
use crate::config::CoordConfig;
use crate::error::{Error, Result};
use protocol::handshake::{self, Credential, Role};
use protocol::tag::{created_ms, MAX_TAG_PAGE};
use protocol::{
    Attrs, ChunkHeader, ChunkId, ClusterId, Connection, FileName, NodeAddr, NodeId, NodeRequest,
    NodeResponse, OwnerTag, Rebuild, RebuildPart, Scheme, TagEntry,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one node may take to answer one page.
const PAGE_TIMEOUT: Duration = Duration::from_secs(120);
/// Names listed per category in the report (the counts are complete).
const REPORT_NAMES: usize = 1000;

/// What a rebuild found, did and could not do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildReport {
    /// The cluster adopted (hex).
    pub cluster: String,
    pub dry_run: bool,
    /// The catalog was written to the data directory.
    pub written: bool,
    /// Sequence number the rebuilt catalog starts at (past every one the
    /// nodes have seen).
    pub seq: u64,
    pub nodes: Vec<NodeReport>,
    pub files: u64,
    pub bytes: u64,
    /// Files recovered, per scheme and replication.
    pub schemes: Vec<SchemeFiles>,
    /// Recovered files some of whose members have no copy now (repair
    /// restores them once the coordinator serves).
    pub degraded: Vec<String>,
    pub degraded_total: u64,
    /// Names whose newest generation is incomplete and an older complete
    /// one was kept.
    pub older_kept: Vec<OlderKept>,
    /// Names with no complete generation: not recovered.
    pub incomplete: Vec<Incomplete>,
    pub incomplete_total: u64,
    /// Copies found that the new catalog does not claim: untagged (written
    /// before tags), tombstoned (removed files), of generations not kept.
    pub unclaimed: Unclaimed,
    pub ms: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeReport {
    pub addr: String,
    pub id: Option<String>,
    pub cluster: Option<String>,
    pub copies: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchemeFiles {
    pub scheme: String,
    pub replication: u32,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OlderKept {
    pub name: String,
    pub kept_generation: u64,
    pub newest_generation: u64,
    pub newest_missing: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incomplete {
    pub name: String,
    pub generation: u64,
    pub missing: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Unclaimed {
    pub untagged: u64,
    pub tombstoned: u64,
    pub other_generations: u64,
}

/// Options of one rebuild.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    pub dry_run: bool,
    /// Entries asked per page (capped by the node).
    pub page: u32,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        RebuildOptions {
            dry_run: false,
            page: MAX_TAG_PAGE,
        }
    }
}

/// One copy of a member.
struct Member {
    header: ChunkHeader,
    nodes: Vec<NodeId>,
}

/// One stripe of one generation, as far as its copies tell.
struct StripeAcc {
    data: u32,
    lens: Vec<u64>,
    /// By member index.
    members: Vec<Option<Member>>,
}

/// One generation of one name.
struct Version {
    size: u64,
    scheme: Scheme,
    replication: u32,
    chunk_size: u64,
    stripes: Vec<Option<StripeAcc>>,
    attrs: Attrs,
    copies: u64,
    /// Tags that disagreed with the first one seen (not counted).
    conflicts: u64,
}

impl Version {
    fn new(t: &OwnerTag) -> Self {
        Version {
            size: t.size,
            scheme: t.scheme,
            replication: t.replication,
            chunk_size: t.chunk_size,
            stripes: (0..t.stripes).map(|_| None).collect(),
            attrs: Attrs::new(),
            copies: 0,
            conflicts: 0,
        }
    }

    fn add(&mut self, t: &OwnerTag, header: ChunkHeader, node: &NodeId) {
        let same = t.size == self.size
            && t.scheme == self.scheme
            && t.stripes as usize == self.stripes.len();
        let members = codes::Code::shared(t.scheme)
            .map(|c| c.members())
            .unwrap_or(0);
        let Some(slot) = self.stripes.get_mut(t.stripe as usize).filter(|_| same) else {
            self.conflicts += 1;
            return;
        };
        let s = slot.get_or_insert_with(|| StripeAcc {
            data: t.data,
            lens: t.lens.clone(),
            members: (0..members).map(|_| None).collect(),
        });
        if s.data != t.data || s.lens != t.lens {
            self.conflicts += 1;
            return;
        }
        let Some(m) = s.members.get_mut(t.member as usize) else {
            self.conflicts += 1;
            return;
        };
        match m {
            None => {
                *m = Some(Member {
                    header,
                    nodes: vec![node.clone()],
                })
            }
            Some(m) if m.header == header => {
                if !m.nodes.contains(node) {
                    m.nodes.push(node.clone());
                }
            }
            Some(_) => {
                self.conflicts += 1;
                return;
            }
        }
        if t.stripe == 0 && self.attrs.is_empty() && !t.attrs.is_empty() {
            self.attrs = t.attrs.clone();
        }
        self.copies += 1;
    }

    /// Why this generation cannot be read back, if it cannot: the first
    /// stripe that is absent or undecodable, with its lost members.
    fn missing(&self) -> Option<String> {
        let code = codes::Code::shared(self.scheme).ok()?;
        for (i, s) in self.stripes.iter().enumerate() {
            let Some(s) = s else {
                return Some(format!("stripe {i}: no copy of any member found"));
            };
            let lost = lost_members(&code, s);
            if !code.is_decodable(s.data as usize, &lost) {
                return Some(format!(
                    "stripe {i}: members {lost:?} have no copy, more than {} tolerates",
                    self.scheme
                ));
            }
        }
        None
    }
}

/// Real members of a stripe with no copy found.
fn lost_members(code: &codes::Code, s: &StripeAcc) -> Vec<usize> {
    code.real_members(s.data as usize)
        .filter(|&m| s.members.get(m).is_none_or(|x| x.is_none()))
        .collect()
}

/// Everything the nodes told, as it arrives.
#[derive(Default)]
struct Assembly {
    names: HashMap<FileName, BTreeMap<u64, Version>>,
    unclaimed: Unclaimed,
    max_generation: u64,
}

impl Assembly {
    fn add(&mut self, node: &NodeId, entries: Vec<TagEntry>, names: Vec<OwnerTag>) {
        // Empty files: a version with no stripes, complete by itself.
        for t in names {
            if t.stripes != 0 || t.check().is_err() {
                continue;
            }
            self.max_generation = self.max_generation.max(t.generation);
            let v = self
                .names
                .entry(t.name.clone())
                .or_default()
                .entry(t.generation)
                .or_insert_with(|| Version::new(&t));
            v.attrs = t.attrs.clone();
        }
        for e in entries {
            let Some(t) = e.tag else {
                self.unclaimed.untagged += 1;
                continue;
            };
            if e.doomed {
                self.unclaimed.tombstoned += 1;
                continue;
            }
            if t.check().is_err() {
                self.unclaimed.untagged += 1;
                continue;
            }
            self.max_generation = self.max_generation.max(t.generation);
            self.names
                .entry(t.name.clone())
                .or_default()
                .entry(t.generation)
                .or_insert_with(|| Version::new(&t))
                .add(&t, e.header, node);
        }
    }
}

/// What one node answered.
struct Listed {
    addr: String,
    id: Option<NodeId>,
    cluster: Option<ClusterId>,
    seq_seen: u64,
    copies: u64,
    error: Option<String>,
}

/// Runs a rebuild into `cfg.data_dir` from `cfg.nodes`.
pub async fn rebuild(cfg: &CoordConfig, opts: &RebuildOptions) -> Result<RebuildReport> {
    let start = Instant::now();
    if cfg.nodes.is_empty() {
        return Err(Error::BadRequest(
            "--rebuild-from-nodes needs --nodes ADDR,... (every node of the cluster)".into(),
        ));
    }
    if let Some(what) = holds_catalog(&cfg.data_dir)? {
        return Err(Error::BadRequest(format!(
            "{} already holds a catalog ({what}); a rebuild writes only into an empty or new data directory",
            cfg.data_dir.display()
        )));
    }
    let cred = cfg.secret.clone().map(Credential::Internal);
    let assembly = Mutex::new(Assembly::default());
    let jobs = cfg
        .nodes
        .iter()
        .map(|addr| list_node(addr, cred.as_ref(), opts.page, &assembly));
    let listed = futures_util::future::join_all(jobs).await;
    let mut report = RebuildReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    for l in &listed {
        report.nodes.push(NodeReport {
            addr: l.addr.clone(),
            id: l.id.as_ref().map(|i| i.to_string()),
            cluster: l.cluster.map(|c| c.to_string()),
            copies: l.copies,
            error: l.error.clone(),
        });
    }
    let answering: Vec<&Listed> = listed.iter().filter(|l| l.error.is_none()).collect();
    if answering.is_empty() {
        return Err(Error::BadRequest(format!(
            "no node answered: {}",
            listed
                .iter()
                .map(|l| format!("{} ({})", l.addr, l.error.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let cluster = agreed_cluster(&answering)?;
    report.cluster = cluster.to_string();
    report.seq = answering.iter().map(|l| l.seq_seen).max().unwrap_or(0) + 1;
    let assembly = assembly.into_inner().unwrap_or_else(|p| p.into_inner());
    crate::tags::observe_generation(assembly.max_generation);
    report.unclaimed = assembly.unclaimed.clone();

    let addrs: HashMap<NodeId, String> = answering
        .iter()
        .filter_map(|l| Some((l.id.clone()?, l.addr.clone())))
        .collect();
    let mut catalog = Catalog::default();
    let mut ids: Vec<&NodeId> = addrs.keys().collect();
    ids.sort();
    for id in ids {
        catalog.apply(&Record::NodeAddr {
            id: id.clone(),
            addr: addrs[id].clone(),
        });
    }
    let mut schemes: BTreeMap<(String, u32), (u64, u64)> = BTreeMap::new();
    let mut names: Vec<(FileName, BTreeMap<u64, Version>)> = assembly.names.into_iter().collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, versions) in names {
        let newest = versions.keys().next_back().copied().unwrap_or(0);
        let mut newest_missing = None;
        let mut chosen = None;
        for (generation, v) in versions.iter().rev() {
            let why = match v.missing() {
                None => match entry_of(v, *generation, &addrs, cred.as_ref(), cluster).await {
                    Ok(entry) => {
                        chosen = Some((*generation, entry, v));
                        break;
                    }
                    Err(e) => e,
                },
                Some(why) => why,
            };
            if newest_missing.is_none() {
                newest_missing = Some(why);
            }
        }
        for (g, v) in &versions {
            if chosen.as_ref().is_none_or(|c| c.0 != *g) {
                report.unclaimed.other_generations += v.copies;
            }
        }
        let Some((generation, entry, v)) = chosen else {
            report.incomplete_total += 1;
            if report.incomplete.len() < REPORT_NAMES {
                report.incomplete.push(Incomplete {
                    name: name.to_string(),
                    generation: newest,
                    missing: newest_missing.unwrap_or_default(),
                });
            }
            continue;
        };
        if generation != newest {
            report.older_kept.push(OlderKept {
                name: name.to_string(),
                kept_generation: generation,
                newest_generation: newest,
                newest_missing: newest_missing.clone().unwrap_or_default(),
            });
        }
        let degraded = v.stripes.iter().any(|s| {
            s.as_ref().is_some_and(|s| {
                let code = codes::Code::shared(v.scheme).ok();
                code.is_some_and(|c| !lost_members(&c, s).is_empty())
            })
        }) || entry.chunks().any(|(c, parity)| {
            let want = if parity {
                1
            } else {
                entry.replication as usize
            };
            c.nodes.len() < want
        });
        if degraded {
            report.degraded_total += 1;
            if report.degraded.len() < REPORT_NAMES {
                report.degraded.push(name.to_string());
            }
        }
        let e = schemes
            .entry((entry.scheme.to_string(), entry.replication))
            .or_default();
        e.0 += 1;
        e.1 += entry.size;
        report.files += 1;
        report.bytes += entry.size;
        catalog.apply(&Record::PutFile { name, entry });
    }
    report.schemes = schemes
        .into_iter()
        .map(|((scheme, replication), (files, bytes))| SchemeFiles {
            scheme,
            replication,
            files,
            bytes,
        })
        .collect();
    if !opts.dry_run {
        directio::fsutil::create_dir_durably(&cfg.data_dir)?;
        // Checked again: nothing may have appeared while the nodes talked.
        if let Some(what) = holds_catalog(&cfg.data_dir)? {
            return Err(Error::BadRequest(format!(
                "{} now holds a catalog ({what}); not overwritten",
                cfg.data_dir.display()
            )));
        }
        let dir = cfg.data_dir.clone();
        let seq = report.seq;
        tokio::task::spawn_blocking(move || {
            crate::journal::write_snapshot(&dir, cluster, seq, &mut catalog)
        })
        .await
        .map_err(|e| Error::Journal(e.to_string()))??;
        report.written = true;
    }
    report.ms = start.elapsed().as_millis() as u64;
    tracing::info!(
        files = report.files,
        incomplete = report.incomplete_total,
        degraded = report.degraded_total,
        written = report.written,
        ms = report.ms,
        "catalog rebuilt from the nodes"
    );
    Ok(report)
}

/// What in `dir` makes it a catalog already, if anything.
fn holds_catalog(dir: &std::path::Path) -> Result<Option<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with("catalog.snap") || n.starts_with("journal") {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// The cluster every answering node that joined one names; an error naming
/// the nodes of each cluster when they disagree.
fn agreed_cluster(answering: &[&Listed]) -> Result<ClusterId> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut first = None;
    for l in answering {
        if let Some(c) = l.cluster {
            first.get_or_insert(c);
            by.entry(c.to_string()).or_default().push(l.addr.clone());
        }
    }
    if by.len() > 1 {
        return Err(Error::BadRequest(format!(
            "the nodes disagree on their cluster; refusing to rebuild: {}",
            by.iter()
                .map(|(c, n)| format!("cluster {c}: {}", n.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(first.unwrap_or_else(ClusterId::random))
}

/// Walks one node's tags into `assembly`.
async fn list_node(
    addr: &str,
    cred: Option<&Credential>,
    page: u32,
    assembly: &Mutex<Assembly>,
) -> Listed {
    let mut out = Listed {
        addr: addr.to_string(),
        id: None,
        cluster: None,
        seq_seen: 0,
        copies: 0,
        error: None,
    };
    let res: protocol::Result<()> = async {
        let mut c = Connection::connect(addr).await?;
        handshake::initiate(&mut c, Role::Coord, cred, None).await?;
        let mut after = None;
        loop {
            c.send(&NodeRequest::ListTags { after, limit: page })
                .await?;
            let reply = tokio::time::timeout(PAGE_TIMEOUT, c.recv_reply::<NodeResponse>())
                .await
                .map_err(|_| protocol::Error::Timeout("waiting for a page of owner tags"))??;
            let NodeResponse::Tags {
                node,
                cluster,
                seq_seen,
                entries,
                next,
                names,
            } = reply
            else {
                return Err(protocol::Error::Unexpected {
                    expected: "Tags",
                    got: "another response",
                });
            };
            out.cluster = cluster;
            out.seq_seen = out.seq_seen.max(seq_seen);
            out.copies += entries.len() as u64;
            let done = entries.is_empty() || next.is_none();
            assembly
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .add(&node, entries, names);
            out.id = Some(node);
            if done {
                return Ok(());
            }
            after = next;
        }
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(node = addr, error = %e, "rebuild: node did not list its tags");
        out.error = Some(e.to_string());
    }
    out
}

/// The catalog entry of a complete generation. Members none of whose
/// copies answered are described again by a node decoding them.
async fn entry_of(
    v: &Version,
    generation: u64,
    addrs: &HashMap<NodeId, String>,
    cred: Option<&Credential>,
    cluster: ClusterId,
) -> std::result::Result<FileEntry, String> {
    let code = codes::Code::shared(v.scheme).map_err(|e| e.to_string())?;
    let k = code.k();
    let mut stripes = Vec::with_capacity(v.stripes.len());
    for (si, s) in v.stripes.iter().enumerate() {
        let s = s.as_ref().ok_or_else(|| format!("stripe {si} missing"))?;
        let lost = lost_members(&code, s);
        let mut headers: Vec<Option<ChunkHeader>> = s
            .members
            .iter()
            .map(|m| m.as_ref().map(|m| m.header.clone()))
            .collect();
        for &m in &lost {
            let h = reconstruct(&code, s, m, addrs, cred, cluster)
                .await
                .map_err(|e| {
                    format!("stripe {si} member {m}: no copy, and decoding it failed: {e}")
                })?;
            headers[m] = Some(h);
        }
        let entry = |m: usize| -> std::result::Result<ChunkEntry, String> {
            let header = headers[m]
                .clone()
                .ok_or_else(|| format!("stripe {si} member {m}: no header"))?;
            let nodes = s.members[m]
                .as_ref()
                .map(|x| x.nodes.clone())
                .unwrap_or_default();
            Ok(ChunkEntry { header, nodes })
        };
        let data = (0..s.data as usize)
            .map(entry)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let parity = (k..code.members())
            .map(entry)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        stripes.push(StripeEntry { data, parity });
    }
    let entry = FileEntry {
        size: v.size,
        created_ms: created_ms(generation),
        chunk_size: v.chunk_size,
        replication: v.replication,
        scheme: v.scheme,
        stripes,
        attrs: v.attrs.clone(),
    };
    let sum: u64 = entry
        .stripes
        .iter()
        .flat_map(|s| s.data.iter())
        .map(|c| c.header.raw_len)
        .sum();
    if sum != entry.size {
        return Err(format!(
            "its chunks hold {sum} bytes, its tags say {}",
            entry.size
        ));
    }
    Ok(entry)
}

/// Has a node holding a read member decode member `m` and tell its header.
async fn reconstruct(
    code: &codes::Code,
    s: &StripeAcc,
    m: usize,
    addrs: &HashMap<NodeId, String>,
    cred: Option<&Credential>,
    cluster: ClusterId,
) -> std::result::Result<ChunkHeader, String> {
    let lost = lost_members(code, s);
    let read = code
        .read_plan(s.data as usize, &lost, &[m])
        .map_err(|e| e.to_string())?;
    let parity_len = s.lens.iter().copied().max().unwrap_or(0);
    let raw_len = if m < code.k() {
        s.lens.get(m).copied().unwrap_or(0)
    } else {
        parity_len
    };
    let addr_of = |n: &NodeId| NodeAddr {
        id: n.clone(),
        addr: addrs.get(n).cloned().unwrap_or_default(),
    };
    let parts: Vec<RebuildPart> = read
        .iter()
        .filter_map(|&r| {
            let x = s.members.get(r)?.as_ref()?;
            Some(RebuildPart {
                member: r as u32,
                header: x.header.clone(),
                nodes: x.nodes.iter().map(addr_of).collect(),
            })
        })
        .collect();
    // The lost member's id is not known either (no copy answered): it is
    // decoded under a fresh id, which the catalog then owns; repair makes
    // copies of it, and copies of the old id left on a node that comes
    // back are set aside as unknown, never deleted at once.
    let order = Rebuild {
        scheme: code.scheme(),
        data: s.data,
        member: m as u32,
        parity_len,
        parts,
    };
    let mut errors = Vec::new();
    let workers: Vec<&NodeAddr> = order.parts.iter().flat_map(|p| p.nodes.iter()).collect();
    for w in workers.iter().take(3) {
        let res: protocol::Result<ChunkHeader> = async {
            let mut c = Connection::connect(&w.addr).await?;
            handshake::initiate(&mut c, Role::Coord, cred, Some(cluster)).await?;
            c.send(&NodeRequest::Reconstruct {
                id: ChunkId::random(),
                raw_len,
                rebuild: order.clone(),
            })
            .await?;
            match c.recv_reply::<NodeResponse>().await? {
                NodeResponse::Header(h) => Ok(h),
                _ => Err(protocol::Error::Unexpected {
                    expected: "Header",
                    got: "another response",
                }),
            }
        }
        .await;
        match res {
            Ok(h) => return Ok(h),
            Err(e) => errors.push(format!("{}: {e}", w.id)),
        }
    }
    Err(if errors.is_empty() {
        "no node holds a member to decode from".into()
    } else {
        errors.join("; ")
    })
}

impl std::fmt::Display for RebuildReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "rebuild from {} node(s) of cluster {}{}",
            self.nodes.len(),
            self.cluster,
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        )?;
        for n in &self.nodes {
            match &n.error {
                None => writeln!(
                    f,
                    "  node {} ({}): {} copies",
                    n.id.as_deref().unwrap_or("?"),
                    n.addr,
                    n.copies
                )?,
                Some(e) => writeln!(f, "  node {}: did not answer: {e}", n.addr)?,
            }
        }
        writeln!(f, "files recovered: {} ({} bytes)", self.files, self.bytes)?;
        for s in &self.schemes {
            writeln!(
                f,
                "  {} x{}: {} files, {} bytes",
                s.scheme, s.replication, s.files, s.bytes
            )?;
        }
        if self.degraded_total > 0 {
            writeln!(
                f,
                "degraded (some members without a copy; repair restores them): {}",
                self.degraded_total
            )?;
            for n in &self.degraded {
                writeln!(f, "  {n}")?;
            }
        }
        for o in &self.older_kept {
            writeln!(
                f,
                "older version kept: {} (generation {} kept; newest {} incomplete: {})",
                o.name, o.kept_generation, o.newest_generation, o.newest_missing
            )?;
        }
        if self.incomplete_total > 0 {
            writeln!(
                f,
                "incomplete or undecodable, not recovered: {}",
                self.incomplete_total
            )?;
            for i in &self.incomplete {
                writeln!(f, "  {}: {}", i.name, i.missing)?;
            }
        }
        writeln!(
            f,
            "copies unclaimed (left in place): {} untagged, {} of removed files, {} of other generations",
            self.unclaimed.untagged, self.unclaimed.tombstoned, self.unclaimed.other_generations
        )?;
        if self.written {
            writeln!(f, "catalog written at sequence {}; serving it", self.seq)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{ChunkPlan, PutPlan, StripePlan};

    fn plan(scheme: &str, stripes: usize, data: usize, parity: usize, generation: u64) -> PutPlan {
        let c = || ChunkPlan {
            id: ChunkId::random(),
            nodes: Vec::new(),
            token: None,
        };
        PutPlan {
            upload_id: 1,
            chunk_size: 10,
            replication: 1,
            scheme: scheme.parse().unwrap(),
            stripes: (0..stripes)
                .map(|_| StripePlan {
                    data: (0..data).map(|_| c()).collect(),
                    parity: (0..parity).map(|_| c()).collect(),
                })
                .collect(),
            generation,
        }
    }

    fn entry(t: OwnerTag, doomed: bool) -> TagEntry {
        let header = ChunkHeader {
            id: ChunkId::random(),
            raw_len: 10,
            raw_sha256: [t.member as u8; 32],
            codec: protocol::Codec::Raw,
            stored_len: 10,
            stored_crc: 0,
        };
        TagEntry {
            header,
            tag: Some(t),
            doomed,
        }
    }

    #[test]
    fn completeness_follows_the_decodability_function() {
        let name = FileName::new("f").unwrap();
        let node = NodeId::new("n1").unwrap();
        // rs:2+1, two stripes of 2 data (size 40): any one member of each
        // stripe may be missing, not two.
        let p = plan("rs:2+1", 2, 2, 1, 7);
        let mut a = Assembly::default();
        let tags: Vec<OwnerTag> = (0..2)
            .flat_map(|s| (0..3).map(move |m| (s, m)))
            .map(|(s, m)| p.owner_tag(&name, 40, s, m))
            .collect();
        // Stripe 0 whole, stripe 1 missing its parity; a tombstoned copy
        // and an untagged one do not count.
        let mut entries: Vec<TagEntry> =
            tags[..5].iter().cloned().map(|t| entry(t, false)).collect();
        entries.push(entry(tags[5].clone(), true));
        entries.push(TagEntry {
            tag: None,
            ..entry(tags[0].clone(), false)
        });
        a.add(&node, entries, Vec::new());
        assert_eq!(a.unclaimed.tombstoned, 1);
        assert_eq!(a.unclaimed.untagged, 1);
        let v = &a.names[&name][&7];
        assert_eq!(v.missing(), None, "one lost member of rs:2+1 is decodable");
        // A newer generation with a whole stripe absent is incomplete.
        let p2 = plan("rs:2+1", 2, 2, 1, 9);
        let t = p2.owner_tag(&name, 40, 0, 0);
        a.add(&node, vec![entry(t, false)], Vec::new());
        let v2 = &a.names[&name][&9];
        let why = v2.missing().expect("incomplete");
        assert!(
            why.contains("stripe 0") || why.contains("stripe 1"),
            "{why}"
        );
        // Two members lost in one rs:2+1 stripe: undecodable.
        let mut b = Assembly::default();
        b.add(
            &node,
            tags[..4].iter().cloned().map(|t| entry(t, false)).collect(),
            Vec::new(),
        );
        let why = b.names[&name][&7].missing().expect("undecodable");
        assert!(why.contains("stripe 1"), "{why}");
    }

    #[test]
    fn disagreeing_clusters_are_named() {
        let l = |addr: &str, c: Option<ClusterId>| Listed {
            addr: addr.into(),
            id: None,
            cluster: c,
            seq_seen: 0,
            copies: 0,
            error: None,
        };
        let (x, y) = (ClusterId::random(), ClusterId::random());
        let (a, b, n) = (l("a:1", Some(x)), l("b:1", Some(y)), l("c:1", None));
        assert_eq!(agreed_cluster(&[&a, &n]).unwrap(), x);
        let e = agreed_cluster(&[&a, &b, &n]).unwrap_err().to_string();
        assert!(e.contains("a:1") && e.contains("b:1"), "{e}");
    }
}
