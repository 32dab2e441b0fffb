//! Executing a repair order: produce one verified copy of a chunk on this
//! node, by copying it from another node or decoding it from the members of
//! its stripe that the coordinator's read plan names. Node to node; the coordinator only gives the order and hears
//! the outcome.

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use bytes::Bytes;
use protocol::chunk;
use protocol::{ChunkHeader, NodeAddr, Rebuild, RepairOrder, RepairSource, SessionMsg};
use std::sync::Arc;

/// Unit of the repair memory budget.
const MIB: u64 = 1024 * 1024;

/// Permits of a budget of `bytes` (at least one).
pub(crate) fn budget_permits(bytes: u64) -> u32 {
    (bytes / MIB).clamp(1, u32::MAX as u64 / 2) as u32
}

/// Bytes an order holds in memory at its peak. A copy holds the stored
/// chunk. A rebuild holds its output (the stripe's parity length) plus one
/// member at a time, stored and (if compressed) decompressed; at the end,
/// the output and its re-encoding.
fn peak_bytes(order: &RepairOrder) -> u64 {
    match &order.source {
        RepairSource::Copy(_) => order.header.stored_len,
        RepairSource::Rebuild(r) => {
            let member = r
                .parts
                .iter()
                .map(|p| match p.header.codec {
                    protocol::Codec::Raw => p.header.stored_len,
                    protocol::Codec::Lz4 => p.header.stored_len + p.header.raw_len,
                })
                .max()
                .unwrap_or(0);
            r.parity_len
                .saturating_add(member.max(order.header.stored_len))
        }
    }
}

pub(crate) async fn execute(ctx: Arc<Ctx>, order: RepairOrder) {
    let Ok(_permit) = ctx.repairs.clone().acquire_owned().await else {
        return;
    };
    // Within the memory budget; one order larger than all of it runs alone.
    let need = peak_bytes(&order)
        .div_ceil(MIB)
        .clamp(1, budget_permits(ctx.config.repair_memory) as u64) as u32;
    let Ok(_memory) = ctx.repair_mem.clone().acquire_many_owned(need).await else {
        return;
    };
    let id = order.header.id;
    let start = std::time::Instant::now();
    let res = if ctx.store.contains(&id) {
        // Already here (e.g. a retried order): verify instead of copying.
        // The catalog counts it again: no tombstone may hide it.
        ctx.store.undoom(&id);
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
    let tag = carried_tag(ctx, order).await;
    let mut w = ctx.store.create_tagged(&order.header, tag.as_ref()).await?;
    w.write(stored).await?;
    ctx.store.commit(w).await
}

/// The owner tag the new copy carries: a source copy's own (a copy), or a
/// read member's with the member index of the chunk produced (a rebuild;
/// every member of a file's first stripe carries the attributes, so they
/// survive this too). Best effort: a copy whose sources have no tag (or do
/// not answer) is stored untagged, as its sources are.
async fn carried_tag(ctx: &Ctx, order: &RepairOrder) -> Option<protocol::OwnerTag> {
    let asks: Vec<(protocol::ChunkId, &NodeAddr)> = match &order.source {
        RepairSource::Copy(nodes) => nodes.iter().map(|n| (order.header.id, n)).collect(),
        RepairSource::Rebuild(r) => r
            .parts
            .iter()
            .flat_map(|p| p.nodes.iter().map(move |n| (p.header.id, n)))
            .collect(),
    };
    for (id, n) in asks {
        match ctx.pool.get_tag(&n.addr, id, None).await {
            Ok(Some(mut t)) => {
                if let RepairSource::Rebuild(r) = &order.source {
                    t.member = r.member;
                }
                return t.check().is_ok().then_some(t);
            }
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(chunk = %id, node = %n.id, error = %e, "no owner tag from this source")
            }
        }
    }
    None
}

/// Decodes the wanted member from the read plan's members, fetched one at
/// a time and folded into the output as they arrive: memory stays at the
/// output plus one member, whatever the stripe width. The result is
/// trimmed, hash-checked and re-encoded; it must be exactly the chunk the
/// catalog knows (LZ4 is deterministic).
async fn rebuild(ctx: &Ctx, want: &ChunkHeader, r: &Rebuild) -> Result<Bytes> {
    let (h, stored) = decode_member(ctx, want.id, want.raw_len, r).await?;
    if h.raw_sha256 != want.raw_sha256 {
        return Err(Error::Corrupt {
            chunk: want.id,
            reason: "rebuilt bytes fail SHA-256 verification".into(),
        });
    }
    if h != *want {
        return Err(Error::BadRequest(format!(
            "rebuilt chunk {} encodes differently from the catalog's header",
            want.id
        )));
    }
    Ok(stored)
}

/// The header of member `r.member` decoded from the members `r` lists,
/// nothing stored (`NodeRequest::Reconstruct`, for a rebuilt catalog).
pub(crate) async fn reconstruct(
    ctx: &Ctx,
    id: protocol::ChunkId,
    raw_len: u64,
    r: &Rebuild,
) -> Result<ChunkHeader> {
    Ok(decode_member(ctx, id, raw_len, r).await?.0)
}

/// Decodes one member, cuts it to `raw_len` and encodes it (LZ4 is
/// deterministic, so this is the header and bytes the original had).
async fn decode_member(
    ctx: &Ctx,
    id: protocol::ChunkId,
    raw_len: u64,
    r: &Rebuild,
) -> Result<(ChunkHeader, Bytes)> {
    let bad = |m: String| Error::BadRequest(format!("rebuild of chunk {id}: {m}"));
    let code = codes::Code::new(r.scheme).map_err(|e| bad(e.to_string()))?;
    let read: Vec<usize> = r.parts.iter().map(|p| p.member as usize).collect();
    let dec = code
        .decoder(r.data as usize, &read, &[r.member as usize])
        .map_err(|e| bad(e.to_string()))?;
    if r.parity_len > protocol::chunk::MAX_CHUNK_LEN || raw_len > r.parity_len {
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
    blocking(move || {
        out.truncate(raw_len as usize);
        Ok(chunk::encode(id, Bytes::from(out)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{ChunkId, Codec, RebuildPart};

    fn header(raw: u64, stored: u64) -> ChunkHeader {
        ChunkHeader {
            id: ChunkId::random(),
            raw_len: raw,
            raw_sha256: [0; 32],
            codec: if raw == stored {
                Codec::Raw
            } else {
                Codec::Lz4
            },
            stored_len: stored,
            stored_crc: 0,
        }
    }

    /// rs:12+4 of 64 MiB chunks: three rebuilds of compressed members fit
    /// the default budget twice, of raw members three times; a copy is the
    /// chunk.
    #[test]
    fn peak_memory_estimates() {
        let m = 64 * MIB;
        let rebuild = |stored: u64| RepairOrder {
            task: 1,
            header: header(m, stored),
            source: RepairSource::Rebuild(Rebuild {
                scheme: "rs:12+4".parse().unwrap(),
                data: 12,
                member: 3,
                parity_len: m,
                parts: (0..12)
                    .map(|i| RebuildPart {
                        member: i,
                        header: header(m, stored),
                        nodes: Vec::new(),
                    })
                    .collect(),
            }),
        };
        assert_eq!(peak_bytes(&rebuild(m)), 128 * MIB);
        assert_eq!(peak_bytes(&rebuild(56 * MIB)), 184 * MIB);
        let copy = RepairOrder {
            task: 1,
            header: header(m, 30 * MIB),
            source: RepairSource::Copy(Vec::new()),
        };
        assert_eq!(peak_bytes(&copy), 30 * MIB);
        let budget = budget_permits(
            crate::config::NodeConfig::new(
                protocol::NodeId::new("n1").unwrap(),
                "x".into(),
                String::new(),
            )
            .repair_memory,
        ) as u64;
        assert_eq!(budget / (peak_bytes(&rebuild(m)) / MIB), 3);
        assert_eq!(budget / (peak_bytes(&rebuild(56 * MIB)) / MIB), 2);
    }
}
