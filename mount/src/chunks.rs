//! The local data cache: whole verified chunks by id, least recently used
//! out first, bounded by `--cache-size`.
//!
//! A chunk id names immutable bytes (a new version of a file has new
//! chunks), so a cached chunk is never stale: close-to-open consistency
//! comes from looking the file up again at open, not from invalidating
//! this cache. A read asks for the chunks it touches; a sequential reader
//! also prefetches the next ones (read-ahead) in the background. Two reads
//! of one chunk at once fetch it once.

use crate::error::{Error, Result};
use crate::remote::Remote;
use bytes::Bytes;
use protocol::{ChunkId, FileInfo};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

struct Slot {
    cell: Arc<OnceCell<Bytes>>,
    last_use: u64,
    len: u64,
}

pub struct ChunkCache {
    inner: Mutex<Inner>,
    budget: u64,
}

struct Inner {
    slots: HashMap<ChunkId, Slot>,
    clock: u64,
    bytes: u64,
}

/// Where each data chunk of a file starts, and its id and length.
pub fn layout(info: &FileInfo) -> Vec<(u64, ChunkId, u64)> {
    let mut at = 0u64;
    info.stripes
        .iter()
        .flat_map(|s| s.data.iter())
        .map(|c| {
            let o = at;
            at += c.header.raw_len;
            (o, c.header.id, c.header.raw_len)
        })
        .collect()
}

impl ChunkCache {
    pub fn new(budget: u64) -> ChunkCache {
        ChunkCache {
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                clock: 0,
                bytes: 0,
            }),
            budget,
        }
    }

    fn cell(&self, id: ChunkId, len: u64) -> Arc<OnceCell<Bytes>> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.clock += 1;
        let clock = g.clock;
        if let Some(s) = g.slots.get_mut(&id) {
            s.last_use = clock;
            return s.cell.clone();
        }
        let cell = Arc::new(OnceCell::new());
        g.slots.insert(
            id,
            Slot {
                cell: cell.clone(),
                last_use: clock,
                len,
            },
        );
        g.bytes += len;
        // Evict the least recently used until within budget (the new one
        // stays even when it alone is over: a read needs it).
        while g.bytes > self.budget && g.slots.len() > 1 {
            let Some(victim) = g
                .slots
                .iter()
                .filter(|(k, _)| **k != id)
                .min_by_key(|(_, s)| s.last_use)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(s) = g.slots.remove(&victim) {
                g.bytes -= s.len;
            }
        }
        cell
    }

    fn forget(&self, id: &ChunkId) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = g.slots.remove(id) {
            g.bytes -= s.len;
        }
    }

    /// Chunk `i` of the file (by `layout`), verified, from the cache or
    /// the cluster.
    pub async fn chunk(
        &self,
        remote: &Remote,
        info: &Arc<FileInfo>,
        at: (u64, ChunkId, u64),
    ) -> Result<Bytes> {
        let (off, id, len) = at;
        let cell = self.cell(id, len);
        let res = cell
            .get_or_try_init(|| async {
                let mut buf = Vec::with_capacity(len as usize);
                remote
                    .read_range(info.clone(), off..off + len, |p| {
                        buf.extend_from_slice(p);
                        Ok(())
                    })
                    .await?;
                if buf.len() as u64 != len {
                    return Err(Error::errno(libc::EIO));
                }
                Ok::<_, Error>(Bytes::from(buf))
            })
            .await
            .cloned();
        if res.is_err() {
            self.forget(&id);
        }
        res
    }

    /// Bytes `[offset, offset + size)` of the file (cut at its end).
    pub async fn read(
        &self,
        remote: &Remote,
        info: &Arc<FileInfo>,
        chunks: &[(u64, ChunkId, u64)],
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        let end = (offset + size).min(info.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        let first = chunks.partition_point(|c| c.0 + c.2 <= offset);
        for &c in &chunks[first..] {
            if c.0 >= end {
                break;
            }
            let bytes = self.chunk(remote, info, c).await?;
            let from = offset.max(c.0) - c.0;
            let to = end.min(c.0 + c.2) - c.0;
            out.extend_from_slice(&bytes[from as usize..to as usize]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_goes_first() {
        let cache = ChunkCache::new(100);
        let (a, b, c) = (ChunkId::random(), ChunkId::random(), ChunkId::random());
        cache.cell(a, 40);
        cache.cell(b, 40);
        cache.cell(a, 40); // a used again: b is now the oldest
        cache.cell(c, 40);
        let g = cache.inner.lock().unwrap();
        assert!(g.slots.contains_key(&a) && g.slots.contains_key(&c));
        assert!(!g.slots.contains_key(&b));
        assert_eq!(g.bytes, 80);
    }
}
