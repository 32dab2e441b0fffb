//! Executing a repair order: produce one verified copy of a chunk on this
//! node, by copying it from another node or decoding it from the members of
//! its stripe that the coordinator's read plan names. Node to node; the coordinator only gives the order and hears
//! the outcome.

use crate::error::{Error, Result};
use crate::server::Ctx;
use bytes::Bytes;
use protocol::chunk;
use protocol::{ChunkHeader, NodeAddr, Rebuild, RepairOrder, RepairSource, SessionMsg};
use std::sync::Arc;

pub(crate) async fn execute(ctx: Arc<Ctx>, order: RepairOrder) {
    let Ok(_permit) = ctx.repairs.clone().acquire_owned().await else {
        return;
    };
    let id = order.header.id;
    let start = std::time::Instant::now();
    let res = if ctx.store.contains(&id) {
        // Already here (e.g. a retried order): verify instead of copying.
        ctx.store.verify(&id).await.map(|_| ())
    } else {
        produce(&ctx, &order).await
    };
    let moved = if res.is_ok() {
        order.header.stored_len
    } else {
        0
    };
    crate::metrics::op("repair", start, res.is_ok(), moved, 0);
    let error = match res {
        Ok(()) => {
            tracing::info!(chunk = %id, task = order.task, bytes = order.header.stored_len, ms = start.elapsed().as_millis() as u64, "repair copy stored");
            None
        }
        Err(e) => {
            tracing::warn!(chunk = %id, task = order.task, error = %e, "repair failed");
            Some(e.to_string())
        }
    };
    let _ = ctx
        .events
        .send(SessionMsg::RepairDone {
            task: order.task,
            chunk: id,
            error,
        })
        .await;
}

async fn produce(ctx: &Ctx, order: &RepairOrder) -> Result<()> {
    // Refuse before moving a byte: a full node must not cost the cluster a
    // whole transfer per attempt.
    if !ctx.store.has_room(order.header.stored_len) {
        return Err(Error::DiskFull(format!(
            "no room for a {}-byte copy beyond the reserve",
            order.header.stored_len
        )));
    }
    let stored = match &order.source {
        RepairSource::Copy(nodes) => fetch_any(ctx, &order.header, nodes).await?,
        RepairSource::Rebuild(r) => rebuild(ctx, &order.header, r).await?,
    };
    let mut w = ctx.store.create(&order.header).await?;
    w.write(stored).await?;
    ctx.store.commit(w).await
}

/// Decodes the wanted member from the read plan's members, fetched one at
/// a time and folded into the output as they arrive: memory stays at the
/// output plus one member, whatever the stripe width. The result is
/// trimmed, hash-checked and re-encoded; it must be exactly the chunk the
/// catalog knows (LZ4 is deterministic).
async fn rebuild(ctx: &Ctx, want: &ChunkHeader, r: &Rebuild) -> Result<Bytes> {
    let bad = |m: String| Error::BadRequest(format!("rebuild of chunk {}: {m}", want.id));
    let code = codes::Code::new(r.scheme).map_err(|e| bad(e.to_string()))?;
    let read: Vec<usize> = r.parts.iter().map(|p| p.member as usize).collect();
    let dec = code
        .decoder(r.data as usize, &read, &[r.member as usize])
        .map_err(|e| bad(e.to_string()))?;
    if r.parity_len > protocol::chunk::MAX_CHUNK_LEN || want.raw_len > r.parity_len {
        return Err(bad(format!("bad parity length {}", r.parity_len)));
    }
    let mut out = vec![0u8; r.parity_len as usize];
    for (i, p) in r.parts.iter().enumerate() {
        let stored = fetch_any(ctx, &p.header, &p.nodes).await?;
        let h = p.header.clone();
        let dec = dec.clone();
        out = blocking(move || {
            let raw = chunk::decode(&h, stored).map_err(|e| Error::Corrupt {
                chunk: h.id,
                reason: e.to_string(),
            })?;
            if raw.len() > out.len() {
                return Err(Error::BadRequest(format!(
                    "member {} is longer than the stripe's parity",
                    h.id
                )));
            }
            dec.add(i, &raw, &mut [out.as_mut_slice()]);
            Ok(out)
        })
        .await?;
    }
    let want = want.clone();
    blocking(move || {
        out.truncate(want.raw_len as usize);
        let (h, stored) = chunk::encode(want.id, Bytes::from(out));
        if h.raw_sha256 != want.raw_sha256 {
            return Err(Error::Corrupt {
                chunk: want.id,
                reason: "rebuilt bytes fail SHA-256 verification".into(),
            });
        }
        if h != want {
            return Err(Error::BadRequest(format!(
                "rebuilt chunk {} encodes differently from the catalog's header",
                want.id
            )));
        }
        Ok(stored)
    })
    .await
}

async fn fetch_any(ctx: &Ctx, header: &ChunkHeader, nodes: &[NodeAddr]) -> Result<Bytes> {
    let mut errors = Vec::new();
    for n in nodes {
        match ctx.pool.fetch(&n.addr, header, None).await {
            Ok(b) => return Ok(b),
            Err(e) => errors.push(format!("{}: {e}", n.id)),
        }
    }
    Err(Error::BadRequest(format!(
        "no source served chunk {} ({})",
        header.id,
        errors.join("; ")
    )))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
}
