//! `put`: plan, stream every chunk and parity block to its nodes, commit.
//!
//! The pipeline: a blocking reader thread reads chunk N+1 from disk while
//! chunk N is hashed and compressed on a blocking worker and chunk N-1 is on
//! the wire to its replicas, all at once. A semaphore of `inflight` permits,
//! taken before a chunk is read and released when its last copy is stored,
//! bounds memory whatever the file size. Parities are encoded as each data
//! chunk passes (`codes::Code::encode_add`), so a stripe is never held
//! whole: memory is the `inflight` data chunks plus one set of parity
//! accumulators, and the next stripe's accumulators are only allocated
//! once the previous stripe's parities are stored.

use crate::config::ClientConfig;
use crate::coord_client::CoordClient;
use crate::error::{Error, Result};
use bytes::Bytes;
use futures_util::future::join_all;
use protocol::chunk;
use protocol::data_client::NodePool;
use protocol::handshake::Role;
use protocol::{
    Attrs, ChunkHeader, ChunkPlan, CommitPut, FileName, NodeAddr, Scheme, StripeCommit,
};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Called with the number of raw bytes just stored.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

#[derive(Debug, Clone)]
pub struct PutSummary {
    pub name: FileName,
    pub size: u64,
    pub chunks: u64,
    pub stored_bytes: u64,
    pub replication: u32,
    pub scheme: Scheme,
    pub elapsed: Duration,
}

pub async fn put(
    cfg: &ClientConfig,
    path: &Path,
    name: FileName,
    force: bool,
    progress: Progress,
) -> Result<PutSummary> {
    let local = |source| Error::Local {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(local)?;
    let meta = file.metadata().map_err(local)?;
    if !meta.is_file() {
        return Err(Error::Usage(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let mut coord = CoordClient::connect(cfg).await?;
    let pool = Arc::new(NodePool::new(Role::Client, None));
    let src = Source {
        reader: Box::new(file),
        size: meta.len(),
    };
    let opts = PutOptions {
        inflight: cfg.inflight,
        force,
        scheme: cfg.scheme,
    };
    put_source(&mut coord, &pool, opts, src, name, None, progress).await
}

/// How one put runs.
#[derive(Debug, Clone, Copy)]
pub struct PutOptions {
    /// Data chunks in memory at once.
    pub inflight: usize,
    /// Replace an existing file of that name.
    pub force: bool,
    /// This file's scheme; `None` takes the cluster's default.
    pub scheme: Option<Scheme>,
}

/// What a put reads from: any reader of a known length.
pub struct Source {
    pub reader: Box<dyn Read + Send>,
    pub size: u64,
}

/// Called once every byte was read and stored, just before the commit: it
/// returns the metadata to keep with the file, or refuses the commit (e.g.
/// an S3 `Content-MD5` that does not match what was read), which aborts the
/// put.
pub type Finish = Box<dyn FnOnce() -> std::result::Result<Attrs, String> + Send>;

/// A put of any reader over an existing coordinator connection and node
/// pool: what programs storing many files (`loadgen`, `chaos`) and the S3
/// gateway (an HTTP body, its metadata decided by `finish` once the bytes
/// were read) use; [`put`] is this for a local file.
pub async fn put_source(
    coord: &mut CoordClient,
    pool: &Arc<NodePool>,
    opts: PutOptions,
    src: Source,
    name: FileName,
    finish: Option<Finish>,
    progress: Progress,
) -> Result<PutSummary> {
    let start = Instant::now();
    let size = src.size;
    let plan = coord
        .plan_put(name.clone(), size, opts.force, opts.scheme)
        .await?;
    let upload_id = plan.upload_id;
    let scheme = plan.scheme;
    let replication = plan.replication;
    match stream(coord, pool, opts.inflight, src, &name, &plan, progress).await {
        Ok((stripes, stored_bytes)) => {
            let chunks = stripes.iter().map(|s| s.data.len() as u64).sum();
            let attrs = match finish.map_or(Ok(Attrs::new()), |f| f()) {
                Ok(a) => a,
                Err(cause) => {
                    if let Err(e) = coord.abort(upload_id).await {
                        tracing::debug!(error = %e, "abort failed; the upload will expire");
                    }
                    return Err(Error::Rejected(cause));
                }
            };
            let s = coord
                .commit(CommitPut {
                    upload_id,
                    stripes,
                    attrs,
                })
                .await
                .map_err(|e| match e {
                    // Refused: the coordinator answered, nothing changed.
                    Error::Coord(_) => Error::PutFailed {
                        name: name.to_string(),
                        cause: e.to_string(),
                    },
                    // No answer: the commit may have been applied.
                    other => Error::CommitUnknown {
                        name: name.to_string(),
                        cause: other.to_string(),
                    },
                })?;
            Ok(PutSummary {
                name: s.name,
                size,
                chunks,
                stored_bytes,
                replication,
                scheme,
                elapsed: start.elapsed(),
            })
        }
        Err(cause) => {
            if let Err(e) = coord.abort(upload_id).await {
                tracing::debug!(error = %e, "abort failed; the upload will expire");
            }
            Err(match cause {
                e @ Error::Local { .. } => e,
                other => Error::PutFailed {
                    name: name.to_string(),
                    cause: other.to_string(),
                },
            })
        }
    }
}

/// Slot of a chunk within the plan.
#[derive(Clone, Copy)]
struct Slot {
    stripe: usize,
    member: Member,
}

#[derive(Clone, Copy)]
enum Member {
    Data(usize),
    Parity(usize),
}

async fn stream(
    coord: &mut CoordClient,
    pool: &Arc<NodePool>,
    inflight: usize,
    src: Source,
    name: &FileName,
    plan: &protocol::PutPlan,
    progress: Progress,
) -> Result<(Vec<StripeCommit>, u64)> {
    let Source { reader, size } = src;
    // Every chunk carries its owner tag (none from a coordinator that
    // gives no generation), the one its write token was signed over.
    let tag = |stripe: usize, member: usize| {
        (plan.generation != 0).then(|| Arc::new(plan.owner_tag(name, size, stripe, member)))
    };
    let permits = Arc::new(Semaphore::new(inflight.max(1)));
    let code = codes::Code::new(plan.scheme).map_err(|e| Error::Unreadable(e.to_string()))?;
    let np = code.members() - code.k();
    // Parity blocks have their own permits: waiting on the data permits
    // could deadlock against the reader holding them. A new stripe waits
    // for all of them, so at most one stripe's parities are in memory.
    let parity_permits = Arc::new(Semaphore::new(np.max(1)));
    let cs = plan.chunk_size;
    let total = size.div_ceil(cs);
    let (tx, mut rx) = mpsc::channel::<std::io::Result<(Bytes, OwnedSemaphorePermit)>>(1);
    let reader = {
        let permits = permits.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            read_chunks(reader, size, cs, total, permits, handle, tx)
        })
    };
    let mut headers: Headers = plan
        .stripes
        .iter()
        .map(|s| (vec![None; s.data.len()], vec![None; s.parity.len()]))
        .collect();
    let mut jobs: JoinSet<Result<Outcome, String>> = JoinSet::new();
    let mut stored_bytes = 0u64;
    let upload_id = plan.upload_id;
    let replication = plan.replication as u64;
    let result: Result<()> = async {
        for (si, stripe) in plan.stripes.iter().enumerate() {
            if stripe.parity.len() != np {
                return Err(Error::Unreadable(format!(
                    "the plan gives a {} stripe {} parities",
                    plan.scheme,
                    stripe.parity.len()
                )));
            }
            let mut acc: Vec<Vec<u8>> = Vec::new();
            if np > 0 {
                // The previous stripe's parities are stored before this
                // stripe's accumulators exist.
                loop {
                    let next = tokio::select! {
                        biased;
                        Some(r) = jobs.join_next(), if !jobs.is_empty() => Next::Job(r),
                        p = parity_permits.clone().acquire_many_owned(np as u32) => Next::Permit(p),
                    };
                    match next {
                        Next::Job(r) => {
                            let done = absorb(coord, pool, upload_id, &mut jobs, r).await?;
                            record(done, replication, &mut headers, &mut stored_bytes);
                        }
                        Next::Permit(p) => {
                            drop(p.map_err(|_| Error::Unreadable("pipeline closed".into()))?);
                            break;
                        }
                        Next::Chunk(_) => unreachable!("not awaited here"),
                    }
                }
            }
            for (ci, cp) in stripe.data.iter().enumerate() {
                // Finished jobs are taken while waiting for the next chunk:
                // a failed one holds a pipeline permit until its retry is
                // started, and the reader needs that permit.
                let item = loop {
                    let next = tokio::select! {
                        biased;
                        Some(r) = jobs.join_next(), if !jobs.is_empty() => Next::Job(r),
                        item = rx.recv() => Next::Chunk(item),
                    };
                    match next {
                        Next::Job(r) => {
                            let done = absorb(coord, pool, upload_id, &mut jobs, r).await?;
                            record(done, replication, &mut headers, &mut stored_bytes);
                        }
                        Next::Chunk(item) => break item,
                        Next::Permit(_) => unreachable!("not awaited here"),
                    }
                };
                let (raw, permit) = match item {
                    Some(Ok(x)) => x,
                    Some(Err(e)) => {
                        return Err(Error::Local {
                            path: "input file".into(),
                            source: e,
                        })
                    }
                    None => return Err(Error::Unreadable("reader stopped early".into())),
                };
                if np > 0 {
                    tokio::task::block_in_place(|| {
                        // Parity length is the stripe's longest chunk (the
                        // first; only a file's last chunk is short).
                        if acc.is_empty() {
                            acc = vec![vec![0u8; raw.len()]; np];
                        }
                        for a in acc.iter_mut().filter(|a| a.len() < raw.len()) {
                            a.resize(raw.len(), 0);
                        }
                        let mut outs: Vec<&mut [u8]> =
                            acc.iter_mut().map(|a| a.as_mut_slice()).collect();
                        code.encode_add(ci, &raw, &mut outs);
                    });
                }
                let slot = Slot {
                    stripe: si,
                    member: Member::Data(ci),
                };
                jobs.spawn(store_chunk(
                    pool.clone(),
                    cp.clone(),
                    slot,
                    raw,
                    permit,
                    Some(progress.clone()),
                    tag(si, ci),
                ));
            }
            for (j, pp) in stripe.parity.iter().enumerate() {
                let permit = loop {
                    let next = tokio::select! {
                        biased;
                        Some(r) = jobs.join_next(), if !jobs.is_empty() => Next::Job(r),
                        p = parity_permits.clone().acquire_owned() => Next::Permit(p),
                    };
                    match next {
                        Next::Job(r) => {
                            let done = absorb(coord, pool, upload_id, &mut jobs, r).await?;
                            record(done, replication, &mut headers, &mut stored_bytes);
                        }
                        Next::Permit(p) => {
                            break p.map_err(|_| Error::Unreadable("pipeline closed".into()))?
                        }
                        Next::Chunk(_) => unreachable!("not awaited here"),
                    }
                };
                let slot = Slot {
                    stripe: si,
                    member: Member::Parity(j),
                };
                let raw = Bytes::from(std::mem::take(&mut acc[j]));
                jobs.spawn(store_chunk(
                    pool.clone(),
                    pp.clone(),
                    slot,
                    raw,
                    permit,
                    None,
                    tag(si, code.k() + j),
                ));
            }
        }
        while let Some(r) = jobs.join_next().await {
            let done = absorb(coord, pool, upload_id, &mut jobs, r).await?;
            record(done, replication, &mut headers, &mut stored_bytes);
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        jobs.abort_all();
        rx.close();
    }
    drop(rx);
    let _ = reader.await;
    result?;
    let stripes = headers
        .into_iter()
        .map(|(data, parity)| StripeCommit {
            data: data.into_iter().flatten().collect(),
            parity: parity.into_iter().flatten().collect(),
        })
        .collect();
    Ok((stripes, stored_bytes))
}

/// Reads the file chunk by chunk, each only once a pipeline slot is free.
fn read_chunks(
    mut file: Box<dyn Read + Send>,
    size: u64,
    cs: u64,
    total: u64,
    permits: Arc<Semaphore>,
    handle: tokio::runtime::Handle,
    tx: mpsc::Sender<std::io::Result<(Bytes, OwnedSemaphorePermit)>>,
) {
    for i in 0..total {
        let Ok(permit) = handle.block_on(permits.clone().acquire_owned()) else {
            return;
        };
        let len = if i + 1 == total { size - i * cs } else { cs } as usize;
        let mut buf = vec![0u8; len];
        let item = file
            .read_exact(&mut buf)
            .map(|_| (Bytes::from(buf), permit));
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

/// Copies of one chunk are retried on replacement nodes this many times
/// before the put gives up.
const MAX_ATTEMPTS: u32 = 3;

type Headers = Vec<(Vec<Option<ChunkHeader>>, Vec<Option<ChunkHeader>>)>;

type Joined = std::result::Result<Result<Outcome, String>, tokio::task::JoinError>;

/// What the pipeline's main loop woke up for.
enum Next {
    Job(Joined),
    Chunk(Option<std::io::Result<(Bytes, OwnedSemaphorePermit)>>),
    Permit(std::result::Result<OwnedSemaphorePermit, tokio::sync::AcquireError>),
}

/// What a store job reports.
enum Outcome {
    /// Every copy is stored.
    Stored(Slot, ChunkHeader),
    /// Some copies failed; the rest are stored. Carries what a retry needs.
    Failed(Retry),
}

struct Retry {
    slot: Slot,
    header: ChunkHeader,
    stored: Bytes,
    permit: OwnedSemaphorePermit,
    progress: Option<Progress>,
    failed: Vec<(NodeAddr, String)>,
    attempt: u32,
    /// The coordinator's write grant for this chunk (any node).
    token: Option<Box<protocol::BlockToken>>,
    /// The chunk's owner tag, which the grant was signed over.
    tag: Option<Arc<protocol::OwnerTag>>,
}

fn record(
    done: Option<(Slot, ChunkHeader)>,
    replication: u64,
    headers: &mut Headers,
    stored_bytes: &mut u64,
) {
    let Some((slot, h)) = done else { return };
    let copies = match slot.member {
        Member::Data(_) => replication,
        Member::Parity(_) => 1,
    };
    *stored_bytes += h.stored_len * copies;
    match slot.member {
        Member::Data(i) => headers[slot.stripe].0[i] = Some(h),
        Member::Parity(j) => headers[slot.stripe].1[j] = Some(h),
    }
}

/// Takes a finished job. A chunk whose copies all landed is returned; for
/// failed copies the coordinator picks replacement nodes (HDFS-style
/// pipeline recovery) and a retry job is started, so a node dying under a
/// put costs a retry, not the put.
async fn absorb(
    coord: &mut CoordClient,
    pool: &Arc<NodePool>,
    upload_id: u64,
    jobs: &mut JoinSet<Result<Outcome, String>>,
    r: Joined,
) -> Result<Option<(Slot, ChunkHeader)>> {
    let outcome = r
        .map_err(|e| Error::Unreadable(format!("internal error: {e}")))?
        .map_err(Error::Unreadable)?;
    let retry = match outcome {
        Outcome::Stored(slot, h) => return Ok(Some((slot, h))),
        Outcome::Failed(retry) => retry,
    };
    let why = retry
        .failed
        .iter()
        .map(|(n, e)| format!("node {} ({}): {e}", n.id, n.addr))
        .collect::<Vec<_>>()
        .join("; ");
    if retry.attempt + 1 >= MAX_ATTEMPTS {
        return Err(Error::Unreadable(why));
    }
    let mut targets = Vec::new();
    for (n, e) in &retry.failed {
        let new = coord
            .replace_target(upload_id, retry.header.id, n.id.clone())
            .await
            .map_err(|c| Error::Unreadable(format!("{why}; no node to take its place: {c}")))?;
        tracing::warn!(chunk = %retry.header.id, failed = %n.id, error = %e, new = %new.id, "copy failed, retrying on another node");
        targets.push(new);
    }
    jobs.spawn(store_copies(
        pool.clone(),
        targets,
        Retry {
            attempt: retry.attempt + 1,
            failed: Vec::new(),
            ..retry
        },
    ));
    Ok(None)
}

/// Encodes one chunk and writes every copy in parallel.
async fn store_chunk(
    pool: Arc<NodePool>,
    plan: ChunkPlan,
    slot: Slot,
    raw: Bytes,
    permit: OwnedSemaphorePermit,
    progress: Option<Progress>,
    tag: Option<Arc<protocol::OwnerTag>>,
) -> Result<Outcome, String> {
    let id = plan.id;
    let (header, stored) = tokio::task::spawn_blocking(move || chunk::encode(id, raw))
        .await
        .map_err(|e| format!("encoder failed: {e}"))?;
    let job = Retry {
        slot,
        header,
        stored,
        permit,
        progress,
        failed: Vec::new(),
        attempt: 0,
        token: plan.token.map(Box::new),
        tag,
    };
    store_copies(pool, plan.nodes, job).await
}

/// Writes the encoded chunk to `nodes` in parallel.
async fn store_copies(
    pool: Arc<NodePool>,
    nodes: Vec<NodeAddr>,
    mut job: Retry,
) -> Result<Outcome, String> {
    let results = join_all(nodes.iter().map(|n| {
        let (pool, header, stored, token, tag) =
            (&pool, &job.header, &job.stored, &job.token, &job.tag);
        async move {
            pool.store_tagged(&n.addr, header, stored, token.as_deref(), tag.as_deref())
                .await
        }
    }))
    .await;
    for (n, r) in nodes.into_iter().zip(results) {
        if let Err(e) = r {
            job.failed.push((n, e.to_string()));
        }
    }
    if !job.failed.is_empty() {
        return Ok(Outcome::Failed(job));
    }
    if let Some(p) = &job.progress {
        p(job.header.raw_len);
    }
    drop(job.permit);
    Ok(Outcome::Stored(job.slot, job.header))
}
