//! `CopyFile`: a copy of a file made inside the cluster.
//!
//! Every member of the source's (selected) stripes gets a new chunk id, and
//! every live node holding a copy of it is told to copy it on its own disk
//! under that id (`NodeRequest::Clone`); no chunk byte crosses the network,
//! let alone passes the coordinator or the client. The new file is then
//! committed with one ordinary `PutFile` record listing the holders that
//! confirmed. Members some holders could not copy are simply short of
//! copies and self-healing restores them; a stripe left with fewer members
//! than it needs to decode fails the copy, and every new id is collected.
//!
//! Files never share chunk ids, so the catalog needs no reference counts:
//! removing the source later cannot take the copy's chunks with it.
//!
//! While the clones run, the copy is registered as an upload, so a node
//! registering meanwhile counts the new ids as pending rather than unknown,
//! and an abandoned copy expires and is collected like an abandoned put.

use super::now_ms;
use crate::catalog::{ChunkEntry, FileEntry, Record, StripeEntry};
use crate::error::{Error, Result};
use crate::state::Coord;
use crate::uploads::Upload;
use protocol::handshake::{self, Credential, Role};
use protocol::{
    Attrs, ChunkId, ChunkPlan, Connection, FileName, FileSummary, NodeId, NodeRequest,
    NodeResponse, PutPlan, StripePlan,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Slowest local copy rate assumed when bounding how long a node may take
/// to answer a `Clone` of many chunks (an in-kernel copy on a busy disk).
const MIN_CLONE_RATE: u64 = 8 * 1024 * 1024;
/// Added to every clone deadline: connection, handshake, fsyncs.
const CLONE_GRACE: Duration = Duration::from_secs(30);

/// One member of the new file: its source chunk, its new id and the nodes
/// asked to copy it.
struct Member {
    stripe: usize,
    /// A data chunk (else a parity); members are listed in stripe order.
    data: bool,
    entry: ChunkEntry,
    new_id: ChunkId,
    asked: Vec<NodeId>,
}

/// The stripes of `f` that `range` covers, and their byte count. A range
/// must start at a stripe's first byte and end after a stripe's last byte:
/// a copy takes stripes whole, never cuts a chunk.
fn select(f: &FileEntry, range: Option<(u64, u64)>) -> Result<(std::ops::Range<usize>, u64)> {
    let Some((start, end)) = range else {
        return Ok((0..f.stripes.len(), f.size));
    };
    if start > end || end > f.size {
        return Err(Error::BadRequest(format!(
            "copy range {start}..{end} is outside the file's {} bytes",
            f.size
        )));
    }
    let mut off = 0u64;
    let (mut first, mut last) = (None, None);
    for (i, s) in f.stripes.iter().enumerate() {
        if off == start && first.is_none() {
            first = Some(i);
        }
        off += s.data.iter().map(|c| c.header.raw_len).sum::<u64>();
        if off == end && first.is_some() {
            last = Some(i + 1);
            break;
        }
    }
    match (first, last) {
        (Some(a), Some(b)) => Ok((a..b, end - start)),
        _ if start == end => Ok((0..0, 0)),
        _ => Err(Error::BadRequest(format!(
            "copy range {start}..{end} does not start and end on stripe boundaries; copy whole stripes or stream the edges"
        ))),
    }
}

/// Copies `src` (or the whole stripes `range` covers) to `dst`.
pub async fn copy(
    coord: &Coord,
    src: FileName,
    dst: FileName,
    range: Option<(u64, u64)>,
    attrs: Option<Attrs>,
    force: bool,
    owner: &str,
) -> Result<FileSummary> {
    let cfg = coord.config();
    if cfg.read_only {
        return Err(Error::ReadOnly);
    }
    if let Some(a) = &attrs {
        protocol::check_attrs(a).map_err(Error::BadRequest)?;
    }
    let now = Instant::now();
    // Plan under the lock: new ids, who copies what, the pending upload.
    let (upload_id, template, members, bytes_per_node, addrs) = {
        let mut guard = coord.lock();
        let st = guard.parts();
        if !force && st.catalog.files().contains_key(&dst) {
            return Err(Error::FileExists(dst));
        }
        let f = st
            .catalog
            .files()
            .get(&src)
            .ok_or_else(|| Error::NoSuchFile(src.clone()))?;
        let (stripes, size) = select(f, range)?;
        let template = FileEntry {
            size,
            created_ms: 0,
            chunk_size: f.chunk_size,
            replication: f.replication,
            scheme: f.scheme,
            stripes: Vec::new(),
            attrs: attrs.unwrap_or_else(|| f.attrs.clone()),
        };
        let mut members = Vec::new();
        let mut bytes_per_node: HashMap<NodeId, u64> = HashMap::new();
        for (si, s) in f.stripes[stripes].iter().enumerate() {
            let roles = s
                .data
                .iter()
                .map(|c| (true, c))
                .chain(s.parity.iter().map(|c| (false, c)));
            for (data, c) in roles {
                let asked: Vec<NodeId> = c
                    .nodes
                    .iter()
                    .filter(|n| st.members.not_dead(n, now, cfg))
                    .cloned()
                    .collect();
                for n in &asked {
                    *bytes_per_node.entry(n.clone()).or_default() += c.header.stored_len;
                }
                members.push(Member {
                    stripe: si,
                    data,
                    entry: c.clone(),
                    new_id: ChunkId::random(),
                    asked,
                });
            }
        }
        let addrs: HashMap<NodeId, String> = bytes_per_node
            .keys()
            .map(|n| (n.clone(), st.members.addr_of(n)))
            .collect();
        // The pending upload: its ids count as expected on their nodes.
        let mut plan_stripes: Vec<StripePlan> = Vec::new();
        for m in &members {
            if plan_stripes.len() <= m.stripe {
                plan_stripes.push(StripePlan {
                    data: Vec::new(),
                    parity: Vec::new(),
                });
            }
            let p = ChunkPlan {
                id: m.new_id,
                nodes: m.asked.iter().map(|n| st.members.node_addr(n)).collect(),
                token: None,
            };
            let sp = &mut plan_stripes[m.stripe];
            if m.data {
                sp.data.push(p);
            } else {
                sp.parity.push(p);
            }
        }
        let upload_id = st.uploads.next_id();
        let total: u64 = bytes_per_node.values().copied().max().unwrap_or(0);
        st.uploads.open(
            upload_id,
            Upload {
                name: dst.clone(),
                size,
                force,
                plan: PutPlan {
                    upload_id,
                    chunk_size: template.chunk_size,
                    replication: template.replication,
                    scheme: template.scheme,
                    stripes: plan_stripes,
                    generation: crate::tags::next_generation(),
                },
                expires: now + clone_deadline(total) * 2,
                failed: HashSet::new(),
                owner: owner.to_string(),
            },
        );
        (upload_id, template, members, bytes_per_node, addrs)
    };
    tracing::info!(%src, %dst, upload = upload_id, chunks = members.len(), nodes = addrs.len(), "copy planned");

    // Every node copies its share at once.
    let mut per_node: BTreeMap<NodeId, Vec<(ChunkId, ChunkId)>> = BTreeMap::new();
    for m in &members {
        for n in &m.asked {
            per_node
                .entry(n.clone())
                .or_default()
                .push((m.entry.header.id, m.new_id));
        }
    }
    let cred = cfg.secret.clone().map(Credential::Internal);
    let jobs = per_node.iter().map(|(node, pairs)| {
        let addr = addrs.get(node).cloned().unwrap_or_default();
        let deadline = clone_deadline(bytes_per_node.get(node).copied().unwrap_or(0));
        let cred = cred.clone();
        async move {
            let res = tokio::time::timeout(
                deadline,
                clone_on(&addr, cred.as_ref(), coord.cluster(), pairs),
            )
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {deadline:?}")));
            (node.clone(), res)
        }
    });
    let mut confirmed: HashMap<ChunkId, Vec<NodeId>> = HashMap::new();
    for (node, res) in futures_util::future::join_all(jobs).await {
        match res {
            Ok(done) => {
                for (id, err) in done {
                    match err {
                        None => confirmed.entry(id).or_default().push(node.clone()),
                        Some(e) => {
                            tracing::warn!(%node, chunk = %id, error = %e, "copy: a clone failed")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(%node, error = %e, "copy: node did not clone"),
        }
    }

    // Build the new entry from the confirmed copies; every stripe must
    // still decode.
    let code = template.code();
    let mut entry = template;
    entry.created_ms = now_ms();
    let mut failed = None;
    for m in &members {
        if entry.stripes.len() <= m.stripe {
            entry.stripes.push(StripeEntry {
                data: Vec::new(),
                parity: Vec::new(),
            });
        }
        let mut header = m.entry.header.clone();
        header.id = m.new_id;
        let nodes = confirmed.get(&m.new_id).cloned().unwrap_or_default();
        let c = ChunkEntry { header, nodes };
        let s = &mut entry.stripes[m.stripe];
        if m.data {
            s.data.push(c);
        } else {
            s.parity.push(c);
        }
    }
    for (i, s) in entry.stripes.iter().enumerate() {
        let lost: Vec<usize> = s
            .data
            .iter()
            .enumerate()
            .filter(|(_, c)| c.nodes.is_empty())
            .map(|(j, _)| j)
            .chain(
                s.parity
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.nodes.is_empty())
                    .map(|(j, _)| code.k() + j),
            )
            .collect();
        if !code.is_decodable(s.data.len(), &lost) {
            failed = Some(format!(
                "stripe {i}: {} of its members could not be copied on any node",
                lost.len()
            ));
            break;
        }
    }
    let summary = FileSummary {
        name: dst.clone(),
        size: entry.size,
        chunks: entry.stripes.iter().map(|s| s.data.len() as u64).sum(),
        created_ms: entry.created_ms,
        attrs: entry.attrs.clone(),
    };
    // Copies made but not counted (their node answered too late, or some
    // failed midway) are collected; `flush_deletes` never deletes a copy
    // the catalog lists on that node.
    let unconfirmed: Vec<(ChunkId, Vec<NodeId>)> = members
        .iter()
        .map(|m| {
            let ok = confirmed.get(&m.new_id).cloned().unwrap_or_default();
            let rest = m
                .asked
                .iter()
                .filter(|n| !ok.contains(n))
                .cloned()
                .collect();
            (m.new_id, rest)
        })
        .filter(|(_, n): &(ChunkId, Vec<NodeId>)| !n.is_empty())
        .collect();
    let all: Vec<(ChunkId, Vec<NodeId>)> = members
        .iter()
        .map(|m| (m.new_id, m.asked.clone()))
        .collect();
    if let Some(why) = failed {
        coord.lock().parts().uploads.close(upload_id);
        coord.collect(all);
        return Err(decide::Error::NotEnoughNodes {
            live: addrs.len(),
            needed: code.members(),
            replication: entry.replication,
            scheme: format!("{} (copy of {src} failed: {why})", entry.scheme),
        }
        .into());
    }
    // The copies carry their source's tag: they are given the copy's name
    // (and a new generation) before the copy is committed.
    let generation = crate::tags::next_generation();
    crate::tags::retag(coord, crate::tags::entry_tags(&dst, generation, &entry)).await;
    let record = crate::tags::name_record(&dst, generation, &entry);
    let claim = {
        let mut guard = coord.lock();
        let st = guard.parts();
        if !st.uploads.contains(upload_id) {
            // Expired while copying: its ids are being collected.
            return Err(Error::NoSuchUpload(upload_id));
        }
        if !force && st.catalog.files().contains_key(&dst) {
            st.uploads.close(upload_id);
            drop(guard);
            coord.collect(all);
            return Err(Error::FileExists(dst));
        }
        match coord.claim_names(vec![dst.clone()]) {
            Ok(claim) => claim,
            Err(e) => {
                st.uploads.close(upload_id);
                drop(guard);
                coord.collect(all);
                return Err(e);
            }
        }
    };
    let res = coord
        .commit(vec![Record::PutFile {
            name: dst.clone(),
            entry,
        }])
        .await;
    coord.lock().parts().uploads.close(upload_id);
    drop(claim);
    match res {
        Ok(garbage) => {
            tracing::info!(%src, %dst, size = summary.size, "copy committed");
            if let Some(r) = record {
                crate::tags::broadcast(coord, r);
            }
            coord.collect(garbage);
            coord.collect(unconfirmed);
            Ok(summary)
        }
        Err(e) => {
            coord.collect(all);
            Err(e)
        }
    }
}

/// How long a node may take to copy `bytes` locally.
fn clone_deadline(bytes: u64) -> Duration {
    CLONE_GRACE + Duration::from_secs(bytes / MIN_CLONE_RATE)
}

/// Asks one node to copy chunks locally; returns its per-pair answers.
async fn clone_on(
    addr: &str,
    cred: Option<&Credential>,
    cluster: protocol::ClusterId,
    pairs: &[(ChunkId, ChunkId)],
) -> std::result::Result<Vec<(ChunkId, Option<String>)>, String> {
    let mut out = Vec::with_capacity(pairs.len());
    for batch in pairs.chunks(protocol::MAX_CLONE_PAIRS) {
        let res: protocol::Result<NodeResponse> = async {
            let mut c = Connection::connect(addr).await?;
            handshake::initiate(&mut c, Role::Coord, cred, Some(cluster)).await?;
            c.send(&NodeRequest::Clone {
                pairs: batch.to_vec(),
            })
            .await?;
            c.recv_reply::<NodeResponse>().await
        }
        .await;
        match res {
            Ok(NodeResponse::Cloned(done)) if done.len() == batch.len() => out.extend(done),
            Ok(_) => return Err("unexpected answer to Clone".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(out)
}
