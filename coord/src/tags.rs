//! The coordinator's side of owner tags (see `protocol::tag`): the
//! generation clock, the tags of a catalog entry, and retagging chunks on
//! their nodes when a file gets chunks it did not write (a `Concat`, a
//! copy) or attributes known only at commit.
//!
//! Retags are best effort and come after the change is durable: a node
//! that misses one keeps the chunk's previous tag (or none), which costs a
//! later rebuild that file (reported as unclaimed or as the older name),
//! never a live file's bytes.

use crate::catalog::FileEntry;
use crate::state::Coord;
use protocol::handshake::{self, Credential, Role};
use protocol::tag::GenClock;
use protocol::{ChunkId, Connection, FileName, NodeId, NodeRequest, NodeResponse, OwnerTag};
use std::collections::BTreeMap;
use std::time::Duration;

/// Generations handed out by this process (one clock per process: every
/// coordinator in it stays monotonic).
static GENERATIONS: GenClock = GenClock::new();

/// A generation newer than every one this process handed out or observed.
pub fn next_generation() -> u64 {
    GENERATIONS.next()
}

/// Moves the clock past `g` (a rebuild found chunks that new).
pub fn observe_generation(g: u64) {
    GENERATIONS.observe(g);
}

/// Sends a session message to every node in session (name records of
/// empty files go to all of them: any one that answers a rebuild has it).
pub fn broadcast(coord: &Coord, msg: protocol::SessionMsg) {
    let mut guard = coord.lock();
    let p = guard.parts();
    let ids: Vec<NodeId> = p.members.ids().cloned().collect();
    for id in ids {
        p.members.send(&id, msg.clone());
    }
}

/// The name record of an empty file, when `entry` is one.
pub fn name_record(
    name: &FileName,
    generation: u64,
    entry: &FileEntry,
) -> Option<protocol::SessionMsg> {
    (entry.size == 0 && entry.stripes.is_empty()).then(|| {
        protocol::SessionMsg::KeepName(Box::new(protocol::tag::empty_file(
            name,
            generation,
            entry.scheme,
            entry.replication,
            entry.attrs.clone(),
        )))
    })
}

/// Most bytes of tags per `Retag` request, well inside a frame.
const RETAG_BYTES: usize = 2 * 1024 * 1024;
/// How long one node may take to answer one `Retag`.
const RETAG_TIMEOUT: Duration = Duration::from_secs(30);

/// One chunk to tag: its id, the nodes holding it, its new tag.
pub type TagOrder = (ChunkId, Vec<NodeId>, OwnerTag);

/// The tags of every chunk of `entry` as file `name` at `generation`; the
/// attributes go on every member of the first stripe.
pub fn entry_tags(name: &FileName, generation: u64, entry: &FileEntry) -> Vec<TagOrder> {
    let k = entry.code().k();
    let mut out = Vec::new();
    for (si, s) in entry.stripes.iter().enumerate() {
        let members = s
            .data
            .iter()
            .enumerate()
            .chain(s.parity.iter().enumerate().map(|(j, c)| (k + j, c)));
        for (member, c) in members {
            let tag = OwnerTag {
                name: name.clone(),
                generation,
                size: entry.size,
                scheme: entry.scheme,
                replication: entry.replication,
                chunk_size: entry.chunk_size,
                stripes: entry.stripes.len() as u32,
                stripe: si as u32,
                data: s.data.len() as u32,
                member: member as u32,
                lens: s.data.iter().map(|c| c.header.raw_len).collect(),
                attrs: if si == 0 {
                    entry.attrs.clone()
                } else {
                    Default::default()
                },
            };
            out.push((c.header.id, c.nodes.clone(), tag));
        }
    }
    out
}

/// Has every holder of each chunk append its new tag. Returns how many
/// (chunk, node) tags could not be written; each failure is logged.
pub async fn retag(coord: &Coord, orders: Vec<TagOrder>) -> usize {
    retag_with(coord, orders, false).await
}

/// `dfs-sim retag`: walks the catalog in batches (one short hold of the
/// lock each) and has the holders of every chunk tag the copies that have
/// no tag yet (written before tags); empty files get their name records.
/// Returns the chunks walked and the copies that could not be tagged.
pub async fn retag_untagged(coord: &Coord) -> crate::Result<(u64, u64)> {
    use std::ops::Bound;
    if coord.config().read_only {
        return Err(crate::Error::ReadOnly);
    }
    const FILES: usize = 256;
    let (mut chunks, mut failed) = (0u64, 0u64);
    let mut after: Option<FileName> = None;
    loop {
        let (orders, records, last) = {
            let guard = coord.lock();
            let files = guard.catalog().files();
            let lower = match &after {
                Some(a) => Bound::Excluded(a.clone()),
                None => Bound::Unbounded,
            };
            let mut orders = Vec::new();
            let mut records = Vec::new();
            let mut last = None;
            for (name, entry) in files.range((lower, Bound::Unbounded)).take(FILES) {
                let g = next_generation();
                orders.extend(entry_tags(name, g, entry));
                records.extend(name_record(name, g, entry));
                last = Some(name.clone());
            }
            (orders, records, last)
        };
        let Some(last) = last else { break };
        for r in records {
            broadcast(coord, r);
        }
        chunks += orders.len() as u64;
        failed += retag_with(coord, orders, true).await as u64;
        after = Some(last);
    }
    tracing::info!(chunks, failed, "retag of untagged copies done");
    Ok((chunks, failed))
}

async fn retag_with(coord: &Coord, orders: Vec<TagOrder>, only_untagged: bool) -> usize {
    if orders.is_empty() || coord.config().read_only {
        return 0;
    }
    let mut per_node: BTreeMap<NodeId, Vec<(ChunkId, OwnerTag)>> = BTreeMap::new();
    for (id, nodes, tag) in orders {
        for n in nodes {
            per_node.entry(n).or_default().push((id, tag.clone()));
        }
    }
    let addrs: BTreeMap<NodeId, String> = {
        let mut guard = coord.lock();
        let p = guard.parts();
        per_node
            .keys()
            .map(|n| (n.clone(), p.members.addr_of(n)))
            .collect()
    };
    let cred = coord.config().secret.clone().map(Credential::Internal);
    let cluster = coord.cluster();
    let jobs = per_node.into_iter().map(|(node, tags)| {
        let addr = addrs.get(&node).cloned().unwrap_or_default();
        let cred = cred.clone();
        async move {
            let n = tags.len();
            match tokio::time::timeout(
                RETAG_TIMEOUT,
                retag_on(&addr, cred.as_ref(), cluster, tags, only_untagged),
            )
            .await
            .unwrap_or_else(|_| Err("no answer".into()))
            {
                Ok(failed) => {
                    for (id, e) in &failed {
                        tracing::warn!(%node, chunk = %id, error = %e, "retag failed");
                    }
                    failed.len()
                }
                Err(e) => {
                    tracing::warn!(%node, chunks = n, error = %e, "retag failed on this node");
                    n
                }
            }
        }
    });
    futures_util::future::join_all(jobs).await.into_iter().sum()
}

/// Sends one node its retags in bounded requests over one connection;
/// returns the chunks it could not retag.
async fn retag_on(
    addr: &str,
    cred: Option<&Credential>,
    cluster: protocol::ClusterId,
    tags: Vec<(ChunkId, OwnerTag)>,
    only_untagged: bool,
) -> std::result::Result<Vec<(ChunkId, String)>, String> {
    let mut c = Connection::connect(addr).await.map_err(|e| e.to_string())?;
    handshake::initiate(&mut c, Role::Coord, cred, Some(cluster))
        .await
        .map_err(|e| e.to_string())?;
    let mut failed = Vec::new();
    let mut batch: Vec<(ChunkId, OwnerTag)> = Vec::new();
    let mut bytes = 0;
    let mut rest = tags.into_iter().peekable();
    while rest.peek().is_some() || !batch.is_empty() {
        if let Some((id, t)) = rest.peek() {
            let sz = 64
                + t.name.as_str().len()
                + t.attrs
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 4)
                    .sum::<usize>();
            if batch.is_empty()
                || (batch.len() < protocol::tag::MAX_RETAG && bytes + sz <= RETAG_BYTES)
            {
                batch.push((*id, t.clone()));
                bytes += sz;
                rest.next();
                continue;
            }
        }
        let sent = std::mem::take(&mut batch);
        bytes = 0;
        let n = sent.len();
        c.send(&NodeRequest::Retag {
            tags: sent,
            only_untagged,
        })
        .await
        .map_err(|e| e.to_string())?;
        match c.recv_reply::<NodeResponse>().await {
            Ok(NodeResponse::Retagged(done)) if done.len() == n => {
                failed.extend(done.into_iter().filter_map(|(id, e)| e.map(|e| (id, e))))
            }
            Ok(_) => return Err("unexpected answer to Retag".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(failed)
}
