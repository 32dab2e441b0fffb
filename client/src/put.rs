//! `put`: plan, stream every chunk and parity block to its nodes, commit.
//!
//! The pipeline: a blocking reader thread reads chunk N+1 from disk while
//! chunk N is hashed and compressed on a blocking worker and chunk N-1 is on
//! the wire to its replicas, all at once. A semaphore of `inflight` permits,
//! taken before a chunk is read and released when its last copy is stored,
//! bounds memory whatever the file size.

use crate::config::ClientConfig;
use crate::coord_client::CoordClient;
use crate::error::{Error, Result};
use bytes::Bytes;
use futures_util::future::try_join_all;
use protocol::chunk;
use protocol::data_client::NodePool;
use protocol::handshake::Role;
use protocol::{ChunkHeader, ChunkPlan, CommitPut, FileName, StripeCommit};
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
    pub parity: bool,
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
    let pool = Arc::new(NodePool::new(Role::Client, cfg.secret.clone()));
    let src = Source {
        reader: Box::new(file),
        size: meta.len(),
    };
    put_with(&mut coord, &pool, cfg.inflight, src, name, force, progress).await
}

/// What a put reads from: any reader of a known length.
pub struct Source {
    pub reader: Box<dyn Read + Send>,
    pub size: u64,
}

/// A put over an existing coordinator connection and node pool, so that a
/// program storing many files (`loadgen`) pays for connections once.
pub async fn put_with(
    coord: &mut CoordClient,
    pool: &Arc<NodePool>,
    inflight: usize,
    src: Source,
    name: FileName,
    force: bool,
    progress: Progress,
) -> Result<PutSummary> {
    let start = Instant::now();
    let size = src.size;
    let plan = coord.plan_put(name.clone(), size, force).await?;
    let upload_id = plan.upload_id;
    let parity = plan.stripes.iter().any(|s| s.parity.is_some());
    let replication = plan.replication;
    match stream(pool, inflight, src, &plan, progress).await {
        Ok((stripes, stored_bytes)) => {
            let chunks = stripes.iter().map(|s| s.data.len() as u64).sum();
            let s = coord
                .commit(CommitPut { upload_id, stripes })
                .await
                .map_err(|e| Error::PutFailed {
                    name: name.to_string(),
                    cause: e.to_string(),
                })?;
            Ok(PutSummary {
                name: s.name,
                size,
                chunks,
                stored_bytes,
                replication,
                parity,
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
    /// `None` for the parity block.
    data: Option<usize>,
}

async fn stream(
    pool: &Arc<NodePool>,
    inflight: usize,
    src: Source,
    plan: &protocol::PutPlan,
    progress: Progress,
) -> Result<(Vec<StripeCommit>, u64)> {
    let Source { reader, size } = src;
    let permits = Arc::new(Semaphore::new(inflight.max(1)));
    // Parity blocks have their own single permit: waiting on the data
    // permits could deadlock against the reader holding them.
    let parity_permit = Arc::new(Semaphore::new(1));
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
    let mut headers: Vec<(Vec<Option<ChunkHeader>>, Option<ChunkHeader>)> = plan
        .stripes
        .iter()
        .map(|s| (vec![None; s.data.len()], None))
        .collect();
    let mut jobs: JoinSet<Result<(Slot, ChunkHeader), String>> = JoinSet::new();
    let mut stored_bytes = 0u64;
    let mut absorb =
        |r: std::result::Result<Result<(Slot, ChunkHeader), String>, tokio::task::JoinError>,
         headers: &mut Vec<(Vec<Option<ChunkHeader>>, Option<ChunkHeader>)>|
         -> Result<()> {
            let (slot, h) = r
                .map_err(|e| Error::Unreadable(format!("internal error: {e}")))?
                .map_err(Error::Unreadable)?;
            let copies = match slot.data {
                Some(_) => plan.replication as u64,
                None => 1,
            };
            stored_bytes += h.stored_len * copies;
            match slot.data {
                Some(i) => headers[slot.stripe].0[i] = Some(h),
                None => headers[slot.stripe].1 = Some(h),
            }
            Ok(())
        };
    let result: Result<()> = async {
        for (si, stripe) in plan.stripes.iter().enumerate() {
            let mut acc: Vec<u8> = Vec::new();
            for (ci, cp) in stripe.data.iter().enumerate() {
                let (raw, permit) = match rx.recv().await {
                    Some(Ok(x)) => x,
                    Some(Err(e)) => {
                        return Err(Error::Local {
                            path: "input file".into(),
                            source: e,
                        })
                    }
                    None => return Err(Error::Unreadable("reader stopped early".into())),
                };
                if stripe.parity.is_some() {
                    tokio::task::block_in_place(|| chunk::xor_into(&mut acc, &raw));
                }
                let slot = Slot {
                    stripe: si,
                    data: Some(ci),
                };
                jobs.spawn(store_chunk(
                    pool.clone(),
                    cp.clone(),
                    slot,
                    raw,
                    permit,
                    Some(progress.clone()),
                ));
                while let Some(r) = jobs.try_join_next() {
                    absorb(r, &mut headers)?;
                }
            }
            if let Some(pp) = &stripe.parity {
                let permit = parity_permit
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::Unreadable("pipeline closed".into()))?;
                let slot = Slot {
                    stripe: si,
                    data: None,
                };
                let raw = Bytes::from(std::mem::take(&mut acc));
                jobs.spawn(store_chunk(
                    pool.clone(),
                    pp.clone(),
                    slot,
                    raw,
                    permit,
                    None,
                ));
            }
        }
        while let Some(r) = jobs.join_next().await {
            absorb(r, &mut headers)?;
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
            parity,
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

/// Encodes one chunk and writes every copy in parallel.
async fn store_chunk(
    pool: Arc<NodePool>,
    plan: ChunkPlan,
    slot: Slot,
    raw: Bytes,
    _permit: OwnedSemaphorePermit,
    progress: Option<Progress>,
) -> Result<(Slot, ChunkHeader), String> {
    let id = plan.id;
    let raw_len = raw.len() as u64;
    let (header, stored) = tokio::task::spawn_blocking(move || chunk::encode(id, raw))
        .await
        .map_err(|e| format!("encoder failed: {e}"))?;
    try_join_all(plan.nodes.iter().map(|n| {
        let (pool, header, stored) = (&pool, &header, &stored);
        async move {
            pool.store(&n.addr, header, stored)
                .await
                .map_err(|e| format!("node {} ({}): {e}", n.id, n.addr))
        }
    }))
    .await?;
    if let Some(p) = progress {
        p(raw_len);
    }
    Ok((slot, header))
}
