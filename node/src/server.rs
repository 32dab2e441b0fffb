//! The node's accept loop and the handling of one data connection.

use crate::config::NodeConfig;
use crate::ctx::{Ctx, ScrubState, VERIFY_PARALLEL};
use crate::error::{Error, Result};
use crate::session;
use crate::store::ChunkStore;
use protocol::data_client::NodePool;
use protocol::handshake::{self, Acceptor, Credential, Peer, Role};
use protocol::{
    BlockOp, BlockToken, ChunkHeader, ChunkId, Connection, NodeRequest, NodeResponse, TokenKey,
};
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

/// How long in-flight requests get to finish after shutdown is requested;
/// what is still running then is cut off (its temp files are removed).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Slowest rate at which a peer may send a chunk: a put stream trickling
/// slower than this is cut off, so slow peers cannot pin a connection and a
/// temp file forever (plus [`TRANSFER_GRACE`] for latency).
pub const MIN_TRANSFER_RATE: u64 = 256 * 1024;
const TRANSFER_GRACE: Duration = Duration::from_secs(10);

/// Runs a node on `listener` until `shutdown` completes. Returns once every
/// connection has finished or been cut off; nothing half-written stays
/// visible either way, because chunks appear only by rename.
pub async fn run(
    listener: TcpListener,
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let store = Arc::new(ChunkStore::open_with(
        &config.data_dir,
        config.reserve_bytes,
        config.group_commit_max,
    )?);
    let identity = crate::identity::Identity::load(&config.data_dir)?;
    let (events, events_rx) = mpsc::channel(4096);
    let max_connections = config.max_connections;
    let ctx = Arc::new(Ctx {
        pool: NodePool::new(Role::Node, config.secret.clone().map(Credential::Internal)),
        repairs: Arc::new(Semaphore::new(config.repair_parallel.max(1))),
        repair_mem: Arc::new(Semaphore::new(
            crate::repair::budget_permits(config.repair_memory) as usize,
        )),
        identity: Mutex::new(identity),
        token_key: config.secret.as_ref().map(TokenKey::from_secret),
        verifying: Mutex::new(HashSet::new()),
        verify_slots: Arc::new(Semaphore::new(VERIFY_PARALLEL)),
        config,
        store,
        events,
        events_rx: tokio::sync::Mutex::new(events_rx),
        scrub: ScrubState::default(),
    });
    let mut tasks = protocol::server::Tasks::default();
    tasks.spawn(crate::scrub::run(ctx.clone(), tasks.stop_signal()));
    tasks.spawn(crate::store::probe_loop(
        ctx.store.clone(),
        tasks.stop_signal(),
    ));
    if let Some(coord) = ctx.config.coord.clone() {
        let stop = tasks.stop_signal();
        tasks.spawn(session::dial_loop(ctx.clone(), coord, stop));
    }
    tracing::info!(
        id = %ctx.config.id,
        listen = %listener.local_addr()?,
        "node serving"
    );
    let c = ctx.clone();
    protocol::server::serve(
        listener,
        max_connections,
        DRAIN_TIMEOUT,
        tasks,
        shutdown,
        move |conn, stop| handle(conn, c.clone(), stop),
    )
    .await;
    tracing::info!("node stopped");
    Ok(())
}

/// Serves one connection: handshake, then requests one after another.
/// Any malformed input closes this connection only.
async fn handle(mut conn: Connection, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let policy = Acceptor {
        secret: ctx.config.secret.clone(),
        cluster: ctx.cluster(),
        keys: None,
        anonymous_clients: true,
    };
    let peer = match handshake::accept(&mut conn, &policy).await {
        Ok(p) => {
            tracing::debug!(role = ?p.role, proved = p.proved, "peer connected");
            p
        }
        Err(e) => {
            tracing::warn!(error = %e, "handshake failed, closing connection");
            return;
        }
    };
    let secured = ctx.config.secret.is_some();
    // Nodes and the coordinator (proved by the internal secret) move chunks
    // freely; everyone else needs a block token per chunk.
    let trusted = peer.is(Role::Node, secured) || peer.is(Role::Coord, secured);
    while let Some(req) = conn.next_request::<NodeRequest>(&mut stop).await {
        let access = declare(&req);
        if !permits(&peer, access, secured) {
            let why = format!("only the coordinator may send {}", label(&req));
            // A refused `Put` is followed by data frames that are not read:
            // the connection closes after the refusal.
            let put = matches!(req, NodeRequest::Put { .. } | NodeRequest::PutTagged { .. });
            if !refuse(&mut conn, &peer, &why).await || put || matches!(req, NodeRequest::Attach) {
                return;
            }
            continue;
        }
        let keep_going = match req {
            NodeRequest::Put { header, token } => {
                match check_token(
                    &ctx,
                    trusted,
                    token.as_ref(),
                    &header.id,
                    BlockOp::Write,
                    header.stored_len,
                ) {
                    Ok(()) => {
                        let (t, len) = (Instant::now(), header.stored_len);
                        let ok = put(&mut conn, &ctx, header, None).await;
                        crate::metrics::op("put", t, ok, if ok { len } else { 0 }, 0);
                        ok
                    }
                    // The data frames that follow are not read: close.
                    Err(e) => {
                        let _ = conn.reply_err(e.to_wire()).await;
                        false
                    }
                }
            }
            NodeRequest::Get { id, token } => {
                match check_token(&ctx, trusted, token.as_ref(), &id, BlockOp::Read, 0) {
                    Ok(()) => {
                        let t = Instant::now();
                        let (keep_going, sent) = get(&mut conn, &ctx, id).await;
                        crate::metrics::op("get", t, sent.is_some(), 0, sent.unwrap_or(0));
                        keep_going
                    }
                    Err(e) => conn.reply_err(e.to_wire()).await.is_ok(),
                }
            }
            NodeRequest::Preview { id, max_len } => {
                let t = Instant::now();
                let ok = preview(&mut conn, &ctx, id, max_len).await;
                crate::metrics::op("preview", t, ok, 0, 0);
                ok
            }
            NodeRequest::Delete(ids) => {
                let count = ctx.store.delete(&ids).await;
                tracing::info!(count, "deleted chunks");
                conn.reply(&NodeResponse::Deleted { count }).await.is_ok()
            }
            NodeRequest::Ping => conn.reply(&NodeResponse::Pong(ctx.stats())).await.is_ok(),
            NodeRequest::Clone { pairs } => {
                if pairs.len() > protocol::MAX_CLONE_PAIRS {
                    let e = Error::BadRequest(format!(
                        "{} chunks to clone; at most {} per request",
                        pairs.len(),
                        protocol::MAX_CLONE_PAIRS
                    ));
                    conn.reply_err(e.to_wire()).await.is_ok()
                } else {
                    let t = Instant::now();
                    let done = clone_chunks(&ctx, pairs).await;
                    let ok = done.iter().all(|(_, e)| e.is_none());
                    crate::metrics::op("clone", t, ok, 0, 0);
                    conn.reply(&NodeResponse::Cloned(done)).await.is_ok()
                }
            }
            NodeRequest::Attach => {
                session::attached(conn, ctx, stop).await;
                return;
            }
            NodeRequest::PutTagged { header, token, tag } => {
                let digest = tag.digest();
                match check_token_tagged(
                    &ctx,
                    trusted,
                    token.as_ref(),
                    &header.id,
                    BlockOp::Write,
                    header.stored_len,
                    Some(&digest),
                ) {
                    Ok(()) => {
                        let (t, len) = (Instant::now(), header.stored_len);
                        let ok = put(&mut conn, &ctx, header, Some(*tag)).await;
                        crate::metrics::op("put", t, ok, if ok { len } else { 0 }, 0);
                        ok
                    }
                    Err(e) => {
                        let _ = conn.reply_err(e.to_wire()).await;
                        false
                    }
                }
            }
            NodeRequest::GetTag { id, token } => {
                match check_token(&ctx, trusted, token.as_ref(), &id, BlockOp::Read, 0) {
                    Ok(()) => match ctx.store.tag_of(&id).await {
                        Ok(t) => conn
                            .reply(&NodeResponse::Tag(t.map(Box::new)))
                            .await
                            .is_ok(),
                        Err(e) => conn.reply_err(e.to_wire()).await.is_ok(),
                    },
                    Err(e) => conn.reply_err(e.to_wire()).await.is_ok(),
                }
            }
            NodeRequest::ListTags { after, limit } => {
                let t = Instant::now();
                let names = if after.is_none() {
                    ctx.store.name_records().await
                } else {
                    Vec::new()
                };
                let (entries, next) = ctx.store.list_tags(after, limit).await;
                crate::metrics::op("list_tags", t, true, 0, 0);
                let (cluster, seq_seen) = {
                    let id = ctx.identity.lock().unwrap_or_else(|p| p.into_inner());
                    (id.cluster, id.seq_seen)
                };
                conn.reply(&NodeResponse::Tags {
                    node: ctx.config.id.clone(),
                    cluster,
                    seq_seen,
                    entries,
                    next,
                    names,
                })
                .await
                .is_ok()
            }
            NodeRequest::Reconstruct {
                id,
                raw_len,
                rebuild,
            } => {
                let t = Instant::now();
                let res = crate::repair::reconstruct(&ctx, id, raw_len, &rebuild).await;
                crate::metrics::op("reconstruct", t, res.is_ok(), 0, 0);
                match res {
                    Ok(h) => conn.reply(&NodeResponse::Header(h)).await.is_ok(),
                    Err(e) => conn.reply_err(e.to_wire()).await.is_ok(),
                }
            }
            NodeRequest::Retag {
                tags,
                only_untagged,
            } => {
                if tags.len() > protocol::tag::MAX_RETAG {
                    let e = Error::BadRequest(format!(
                        "{} chunks to retag; at most {} per request",
                        tags.len(),
                        protocol::tag::MAX_RETAG
                    ));
                    conn.reply_err(e.to_wire()).await.is_ok()
                } else {
                    let t = Instant::now();
                    let done = ctx.store.retag(tags, only_untagged).await;
                    let ok = done.iter().all(|(_, e)| e.is_none());
                    crate::metrics::op("retag", t, ok, 0, 0);
                    tracing::info!(count = done.len(), ok, "retagged chunks");
                    conn.reply(&NodeResponse::Retagged(done)).await.is_ok()
                }
            }
        };
        if !keep_going {
            return;
        }
    }
}

/// Who may send a node request. `Token` requests are checked per chunk
/// (`check_token`: nodes and the coordinator need no token, everyone else
/// one for that chunk and operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The coordinator, proved by the internal secret.
    Coord,
    /// Anyone holding a block token for the chunk.
    Token,
    /// Every peer that completed the handshake.
    Anyone,
}

impl Access {
    /// The name the trust table in ARCHITECTURE.md uses.
    pub fn name(self) -> &'static str {
        match self {
            Access::Coord => "coord",
            Access::Token => "token",
            Access::Anyone => "anyone",
        }
    }
}

/// The node's request table: who may send each request. Exhaustive, so a
/// new request does not compile until it is declared; an empty list would
/// refuse everyone.
pub fn declare(req: &NodeRequest) -> &'static [Access] {
    match req {
        NodeRequest::Put { .. }
        | NodeRequest::Get { .. }
        | NodeRequest::PutTagged { .. }
        | NodeRequest::GetTag { .. } => &[Access::Token],
        NodeRequest::Ping => &[Access::Anyone],
        NodeRequest::Delete(_)
        | NodeRequest::Attach
        | NodeRequest::Preview { .. }
        | NodeRequest::Clone { .. }
        | NodeRequest::ListTags { .. }
        | NodeRequest::Retag { .. }
        | NodeRequest::Reconstruct { .. } => &[Access::Coord],
    }
}

/// A request's name, for refusals.
fn label(req: &NodeRequest) -> &'static str {
    match req {
        NodeRequest::Put { .. } => "Put",
        NodeRequest::Get { .. } => "Get",
        NodeRequest::Delete(_) => "Delete",
        NodeRequest::Ping => "Ping",
        NodeRequest::Attach => "Attach",
        NodeRequest::Preview { .. } => "Preview",
        NodeRequest::Clone { .. } => "Clone",
        NodeRequest::PutTagged { .. } => "PutTagged",
        NodeRequest::ListTags { .. } => "ListTags",
        NodeRequest::Retag { .. } => "Retag",
        NodeRequest::GetTag { .. } => "GetTag",
        NodeRequest::Reconstruct { .. } => "Reconstruct",
    }
}

/// Deny by default: a peer must match one of the declared roles. Token
/// requests pass here and are checked chunk by chunk.
fn permits(peer: &Peer, access: &[Access], secured: bool) -> bool {
    access.iter().any(|a| match a {
        Access::Coord => peer.is(Role::Coord, secured),
        Access::Token | Access::Anyone => true,
    })
}

fn check_token(
    ctx: &Ctx,
    trusted: bool,
    token: Option<&BlockToken>,
    id: &ChunkId,
    op: BlockOp,
    len: u64,
) -> Result<()> {
    check_token_tagged(ctx, trusted, token, id, op, len, None)
}

/// [`check_token`] of a grant that must be signed over an owner tag's
/// digest: a client's tag naming another file than the one signed fails.
fn check_token_tagged(
    ctx: &Ctx,
    trusted: bool,
    token: Option<&BlockToken>,
    id: &ChunkId,
    op: BlockOp,
    len: u64,
    tag: Option<&[u8; 32]>,
) -> Result<()> {
    match (&ctx.token_key, trusted) {
        (Some(key), false) => key
            .check_tagged(token, id, op, len, protocol::token::now_ms(), tag)
            .map_err(|e| {
                tracing::warn!(chunk = %id, ?op, error = %e, "refused a data request");
                Error::Forbidden(e.to_string())
            }),
        _ => Ok(()),
    }
}

async fn refuse(conn: &mut Connection, peer: &Peer, why: &str) -> bool {
    tracing::warn!(role = ?peer.role, proved = peer.proved, "refused: {why}");
    conn.reply_err(Error::Forbidden(why.into()).to_wire())
        .await
        .is_ok()
}

/// Receives a chunk. Returns whether the connection can serve another
/// request: after an error the peer may still be sending data frames, so
/// the connection is closed rather than resynchronised.
async fn put(
    conn: &mut Connection,
    ctx: &Ctx,
    header: ChunkHeader,
    tag: Option<protocol::OwnerTag>,
) -> bool {
    let id = header.id;
    match receive(conn, ctx, header, tag).await {
        Ok(()) => {
            tracing::debug!(chunk = %id, "stored chunk");
            conn.reply(&NodeResponse::Stored { id }).await.is_ok()
        }
        Err(e) => {
            tracing::warn!(chunk = %id, error = %e, "put failed");
            if !matches!(e, Error::Protocol(_)) {
                let _ = conn.reply_err(e.to_wire()).await;
            }
            false
        }
    }
}

async fn receive(
    conn: &mut Connection,
    ctx: &Ctx,
    header: ChunkHeader,
    tag: Option<protocol::OwnerTag>,
) -> Result<()> {
    let mut w = ctx.store.create_tagged(&header, tag.as_ref()).await?;
    let deadline = Instant::now()
        + TRANSFER_GRACE
        + Duration::from_secs(header.stored_len / MIN_TRANSFER_RATE);
    while w.remaining() > 0 {
        let data = tokio::time::timeout_at(deadline.into(), conn.recv_data())
            .await
            .map_err(|_| {
                Error::BadRequest(format!(
                    "chunk {} arrived slower than {} KiB/s; dropped",
                    header.id,
                    MIN_TRANSFER_RATE / 1024
                ))
            })??;
        w.write(data).await?;
    }
    ctx.store.commit(w).await?;
    // The delete of an aborted upload may have arrived while these bytes
    // were on the wire or being fsynced. A delete records its tombstone
    // before unlinking, so checking after the rename closes the race: either
    // the delete sees our file, or we see its tombstone and remove the file.
    if ctx.store.tombstoned(&header.id) {
        ctx.store.delete(&[header.id]).await;
        return Err(Error::BadRequest(format!(
            "chunk {} was deleted while arriving (its upload was aborted)",
            header.id
        )));
    }
    Ok(())
}

/// Streams a chunk out, verifying its CRC on the way; a mismatch is reported
/// in the trailer and the file is quarantined. Returns whether the
/// connection can go on, and the bytes sent when the read succeeded.
async fn get(conn: &mut Connection, ctx: &Ctx, id: ChunkId) -> (bool, Option<u64>) {
    let mut r = match ctx.store.open_chunk(&id).await {
        Ok(r) => r,
        Err(e) => {
            if let Error::Corrupt { reason, .. } = &e {
                ctx.corrupt(&id, reason).await;
            }
            tracing::warn!(chunk = %id, error = %e, "get failed");
            return (conn.reply_err(e.to_wire()).await.is_ok(), None);
        }
    };
    if conn
        .reply(&NodeResponse::Chunk(r.header.clone()))
        .await
        .is_err()
    {
        return (false, None);
    }
    loop {
        match r.next_piece().await {
            Ok(Some(piece)) => {
                if conn.send_data(&piece).await.is_err() {
                    return (false, None);
                }
            }
            Ok(None) => break,
            Err(e) => {
                // Cannot signal inside a data stream: closing tells the
                // reader the chunk is incomplete.
                tracing::error!(chunk = %id, error = %e, "read failed mid-stream");
                return (false, None);
            }
        }
    }
    let ok = r.crc_ok();
    if !ok {
        ctx.corrupt(&id, "CRC mismatch while serving a read").await;
    }
    let sent = ok.then_some(r.header.stored_len);
    (conn.reply(&NodeResponse::End { ok }).await.is_ok(), sent)
}

/// Copies each held chunk under its new id, one after another (each copy
/// is disk-bound; the coordinator asks every holder at once). A source
/// found corrupt is quarantined and reported, as on any read.
async fn clone_chunks(ctx: &Ctx, pairs: Vec<(ChunkId, ChunkId)>) -> Vec<(ChunkId, Option<String>)> {
    let mut out = Vec::with_capacity(pairs.len());
    for (from, to) in pairs {
        let res = ctx.store.clone_chunk(&from, to).await;
        match &res {
            Err(Error::Corrupt { chunk, reason }) => ctx.corrupt(chunk, reason).await,
            Err(Error::NoSuchChunk(id)) if *id == from => ctx.missing(&from),
            _ => {}
        }
        if let Err(e) = &res {
            tracing::warn!(%from, %to, error = %e, "clone failed");
        }
        out.push((to, res.err().map(|e| e.to_string())));
    }
    tracing::info!(count = out.len(), "cloned chunks");
    out
}

/// Verifies a whole copy, then answers with its first raw bytes (the
/// dashboard's hex view). A corrupt copy is quarantined as on any read.
async fn preview(conn: &mut Connection, ctx: &Ctx, id: ChunkId, max_len: u32) -> bool {
    let max_len = max_len.min(protocol::PREVIEW_MAX) as usize;
    let res = async {
        let mut r = ctx.store.open_chunk(&id).await?;
        let header = r.header.clone();
        let mut stored = bytes::BytesMut::with_capacity(header.stored_len as usize);
        while let Some(piece) = r.next_piece().await? {
            stored.extend_from_slice(&piece);
        }
        let h2 = header.clone();
        let raw =
            tokio::task::spawn_blocking(move || protocol::chunk::decode(&h2, stored.freeze()))
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e)))?
                .map_err(|e| Error::Corrupt {
                    chunk: id,
                    reason: e.to_string(),
                })?;
        Ok::<_, Error>((header, raw.slice(..raw.len().min(max_len)).to_vec()))
    }
    .await;
    match res {
        Ok((header, bytes)) => {
            let crc = crc32fast::hash(&bytes);
            conn.reply(&NodeResponse::Preview { header, bytes, crc })
                .await
                .is_ok()
        }
        Err(e) => {
            if let Error::Corrupt { reason, .. } = &e {
                ctx.corrupt(&id, reason).await;
            }
            tracing::warn!(chunk = %id, error = %e, "preview failed");
            conn.reply_err(e.to_wire()).await.is_ok()
        }
    }
}

#[cfg(test)]
mod trust_tests {
    use super::*;

    fn every_request() -> Vec<NodeRequest> {
        let header = protocol::ChunkHeader {
            id: ChunkId::random(),
            raw_len: 0,
            raw_sha256: [0; 32],
            codec: protocol::Codec::Raw,
            stored_len: 0,
            stored_crc: 0,
        };
        let header2 = header.clone();
        let all = vec![
            NodeRequest::Put {
                header,
                token: None,
            },
            NodeRequest::Get {
                id: ChunkId::random(),
                token: None,
            },
            NodeRequest::Delete(Vec::new()),
            NodeRequest::Ping,
            NodeRequest::Attach,
            NodeRequest::Preview {
                id: ChunkId::random(),
                max_len: 0,
            },
            NodeRequest::Clone { pairs: Vec::new() },
            NodeRequest::PutTagged {
                header: header2.clone(),
                token: None,
                tag: Box::new(crate::tags::test_tag()),
            },
            NodeRequest::ListTags {
                after: None,
                limit: 1,
            },
            NodeRequest::Retag {
                tags: Vec::new(),
                only_untagged: false,
            },
            NodeRequest::GetTag {
                id: ChunkId::random(),
                token: None,
            },
            NodeRequest::Reconstruct {
                id: ChunkId::random(),
                raw_len: 0,
                rebuild: protocol::Rebuild {
                    scheme: protocol::Scheme::None,
                    data: 1,
                    member: 0,
                    parity_len: 0,
                    parts: Vec::new(),
                },
            },
        ];
        // No wildcard: a new request kind must be listed above.
        for r in &all {
            match r {
                NodeRequest::Put { .. }
                | NodeRequest::Get { .. }
                | NodeRequest::Delete(_)
                | NodeRequest::Ping
                | NodeRequest::Attach
                | NodeRequest::Preview { .. }
                | NodeRequest::Clone { .. }
                | NodeRequest::PutTagged { .. }
                | NodeRequest::ListTags { .. }
                | NodeRequest::Retag { .. }
                | NodeRequest::GetTag { .. }
                | NodeRequest::Reconstruct { .. } => {}
            }
        }
        all
    }

    #[test]
    fn every_request_declares_the_roles_of_the_trust_table() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../ARCHITECTURE.md"))
                .unwrap();
        let start = doc.find("**Node requests**").expect("the node trust table");
        let table: std::collections::BTreeMap<String, String> = doc[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let kind = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                Some((kind.to_string(), cells.get(2)?.to_string()))
            })
            .collect();
        let requests = every_request();
        assert_eq!(table.len(), requests.len(), "{table:?}");
        for r in &requests {
            let roles: Vec<&str> = declare(r).iter().map(|a| a.name()).collect();
            assert_eq!(
                table.get(label(r)).map(String::as_str),
                Some(roles.join(", ").as_str()),
                "{}",
                label(r)
            );
        }
    }
}
