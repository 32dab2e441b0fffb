//! Owner tags on disk: the tag trailer of a chunk file, tombstones of
//! removed files' chunks, and the paged listing a rebuild reads.
//!
//! A chunk file of format 2 is
//!
//! ```text
//! "DFSCHNK2" | header_len u32 LE | ChunkHeader | stored bytes | tag record*
//! tag record = "TAG1" | len u32 LE | crc32 u32 LE | postcard OwnerTag
//! ```
//!
//! The tag follows the stored bytes rather than sitting in the header so
//! that a chunk can be given a new owner (the file a `Concat` made, a
//! copy's name, attributes known only at commit, a chunk written before
//! tags) by appending one record and one fdatasync, never by rewriting its
//! bytes. The last record whose CRC holds wins; a record torn by a crash is
//! ignored, so the previous tag stays in force. Format-1 files (no tag)
//! stay readable and may be given a trailer the same way.
//!
//! Tombstones (`doomed/<id>`, empty files) record the coordinator's word
//! that the file of a chunk was removed or replaced, before the delete
//! grace: a rebuild lists such chunks as doomed and never brings their file
//! back. A tombstone goes with its chunk's delete.

use protocol::tag::{OwnerTag, MAX_TAG_LEN};
use protocol::{ChunkHeader, ChunkId};
use std::collections::HashSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const RECORD_MAGIC: &[u8; 4] = b"TAG1";
/// Magic, length, CRC.
const RECORD_HEAD: usize = 12;
/// Most trailer bytes a chunk file may carry: a handful of retags. A retag
/// that would pass it is refused (the chunk keeps its tag).
pub const MAX_TRAILER: u64 = 8 * (MAX_TAG_LEN as u64 + RECORD_HEAD as u64);

/// One encoded tag record.
pub fn record(tag: &OwnerTag) -> Vec<u8> {
    let body = postcard::to_allocvec(tag).unwrap_or_default();
    let mut out = Vec::with_capacity(RECORD_HEAD + body.len());
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The tag a trailer holds: its last whole, CRC-checked, decodable record.
/// Anything after the last good record (a torn append) is ignored.
pub fn parse_trailer(mut t: &[u8]) -> Option<OwnerTag> {
    let mut last = None;
    while t.len() >= RECORD_HEAD && &t[..4] == RECORD_MAGIC {
        let len = u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as usize;
        let crc = u32::from_le_bytes([t[8], t[9], t[10], t[11]]);
        if len > MAX_TAG_LEN || t.len() < RECORD_HEAD + len {
            break;
        }
        let body = &t[RECORD_HEAD..RECORD_HEAD + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        if let Ok(tag) = protocol::connection::decode::<OwnerTag>(body) {
            if tag.check().is_ok() {
                last = Some(tag);
            }
        }
        t = &t[RECORD_HEAD + len..];
    }
    last
}

/// Reads a chunk file's header and tag (blocking): one read for a small
/// chunk, two for a large one. `buf` is reused between calls.
pub fn read_tag(
    id: &ChunkId,
    path: &Path,
    buf: &mut Vec<u8>,
) -> std::io::Result<(ChunkHeader, Option<OwnerTag>)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let f = std::fs::File::open(path)?;
    let file_len = f.metadata()?.len();
    const FIRST: u64 = 64 * 1024;
    let first = file_len.min(FIRST) as usize;
    buf.resize(first, 0);
    f.read_exact_at(&mut buf[..first], 0)?;
    let (header, body) = crate::store::parse_header(id, &buf[..first]).map_err(|e| bad(&e))?;
    let data_end = body as u64 + header.stored_len;
    if file_len < data_end || file_len - data_end > MAX_TRAILER {
        return Err(bad("file length does not match its header"));
    }
    let tlen = (file_len - data_end) as usize;
    if tlen == 0 {
        return Ok((header, None));
    }
    let tag = if file_len <= FIRST {
        parse_trailer(&buf[data_end as usize..first])
    } else {
        let mut t = vec![0u8; tlen];
        f.read_exact_at(&mut t, data_end)?;
        parse_trailer(&t)
    };
    Ok((header, tag))
}

/// Appends a tag record to a chunk file and makes it durable (blocking).
pub fn append_tag(path: &Path, data_end: u64, tag: &OwnerTag) -> std::io::Result<()> {
    let rec = record(tag);
    let f = std::fs::OpenOptions::new().append(true).open(path)?;
    let len = f.metadata()?.len();
    if len < data_end || len - data_end + rec.len() as u64 > MAX_TRAILER {
        return Err(std::io::Error::other(
            "the chunk's tag trailer is full; not retagged",
        ));
    }
    // One write: a crash leaves either the whole record or a torn one,
    // which readers ignore.
    std::io::Write::write_all(&mut &f, &rec)?;
    f.sync_data()
}

/// Chunks whose file the coordinator said was removed or replaced.
pub struct Doomed {
    dir: PathBuf,
    ids: Mutex<HashSet<ChunkId>>,
}

impl Doomed {
    /// Loads the tombstones under `data_dir/doomed/`.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("doomed");
        directio::fsutil::create_dir_durably(&dir)?;
        let mut ids = HashSet::new();
        for e in std::fs::read_dir(&dir)?.flatten() {
            if let Some(id) = e.file_name().to_str().and_then(ChunkId::from_hex) {
                ids.insert(id);
            }
        }
        Ok(Doomed {
            dir,
            ids: Mutex::new(ids),
        })
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, HashSet<ChunkId>> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.ids().contains(id)
    }

    pub fn len(&self) -> usize {
        self.ids().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records tombstones durably (blocking): files, then one directory
    /// fsync.
    pub fn add(&self, ids: &[ChunkId]) -> std::io::Result<()> {
        let mut any = false;
        for id in ids {
            if self.ids().insert(*id) {
                std::fs::File::create(self.dir.join(id.to_hex()))?;
                any = true;
            }
        }
        if any {
            std::fs::File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Drops tombstones (their chunks were deleted, or stored again).
    /// Durability follows the caller's directory fsyncs; a tombstone that
    /// survives a crash is harmless (its chunk is gone or live again and
    /// listed as doomed, which costs a rebuild one copy).
    pub fn remove(&self, ids: &[ChunkId]) {
        for id in ids {
            if self.ids().remove(id) {
                let _ = std::fs::remove_file(self.dir.join(id.to_hex()));
            }
        }
    }
}

/// A sorted snapshot of the store's ids for paged listing, kept between
/// pages so that walking a million chunks costs one sort, not one per page.
#[derive(Default)]
pub struct Pager {
    ids: Vec<ChunkId>,
    /// The id the last page ended at, and the position after it.
    at: Option<(ChunkId, usize)>,
}

impl Pager {
    /// The ids of the page after `after`, at most `limit`; `inventory` is
    /// called for a fresh snapshot when the walk starts or was lost.
    pub fn page(
        &mut self,
        after: Option<ChunkId>,
        limit: usize,
        inventory: impl FnOnce() -> Vec<ChunkId>,
    ) -> Vec<ChunkId> {
        let start = match (after, self.at) {
            (Some(a), Some((b, pos))) if a == b => pos,
            _ => {
                self.ids = inventory();
                self.ids.sort_unstable_by_key(|id| id.0);
                match after {
                    None => 0,
                    Some(a) => self.ids.partition_point(|id| id.0 <= a.0),
                }
            }
        };
        let end = (start + limit).min(self.ids.len());
        let out = self.ids[start..end].to_vec();
        self.at = out.last().map(|l| (*l, end));
        if end >= self.ids.len() {
            // The walk is over: free the snapshot.
            self.ids = Vec::new();
            self.at = None;
        }
        out
    }

    /// Drops the walk's position: the next page sorts afresh.
    pub fn forget(&mut self) {
        self.ids = Vec::new();
        self.at = None;
    }
}

/// A valid tag for tests.
#[cfg(test)]
pub(crate) fn test_tag() -> OwnerTag {
    tests::tag("t", 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{ChunkPlan, FileName, PutPlan, StripePlan};

    pub(crate) fn tag(name: &str, generation: u64) -> OwnerTag {
        let plan = PutPlan {
            upload_id: 1,
            chunk_size: 10,
            replication: 1,
            scheme: "none".parse().unwrap(),
            stripes: vec![StripePlan {
                data: vec![ChunkPlan {
                    id: ChunkId::random(),
                    nodes: Vec::new(),
                    token: None,
                }],
                parity: Vec::new(),
            }],
            generation,
        };
        OwnerTag::of_plan(&FileName::new(name).unwrap(), 5, &plan, 0, 0)
    }

    #[test]
    fn last_whole_record_wins_and_torn_ones_are_ignored() {
        let mut t = record(&tag("a", 1));
        t.extend(record(&tag("b", 2)));
        assert_eq!(parse_trailer(&t).unwrap().name.as_str(), "b");
        let whole = t.len();
        t.extend(record(&tag("c", 3)));
        // Torn anywhere in the third record: the second stays in force.
        for cut in whole..t.len() {
            assert_eq!(parse_trailer(&t[..cut]).unwrap().name.as_str(), "b");
        }
        // A flipped byte in the last record: the one before wins.
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(parse_trailer(&t).unwrap().name.as_str(), "b");
        assert_eq!(parse_trailer(b""), None);
        assert_eq!(parse_trailer(b"garbage garbage"), None);
    }

    #[test]
    fn pages_walk_every_id_once_in_order() {
        let ids: Vec<ChunkId> = (0..1000).map(|_| ChunkId::random()).collect();
        let mut p = Pager::default();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = p.page(after, 77, || ids.clone());
            if page.is_empty() {
                break;
            }
            after = page.last().copied();
            seen.extend(page);
        }
        let mut want = ids.clone();
        want.sort_by_key(|id| id.0);
        assert_eq!(seen, want);
        // A walk resumed elsewhere (a lost cursor) starts after `after`.
        let mut p = Pager::default();
        let page = p.page(Some(want[499]), 10, || ids.clone());
        assert_eq!(page, want[500..510].to_vec());
    }

    async fn put(
        store: &crate::store::ChunkStore,
        data: &[u8],
        tag: Option<&OwnerTag>,
    ) -> ChunkHeader {
        let (h, stored) =
            protocol::chunk::encode(ChunkId::random(), bytes::Bytes::copy_from_slice(data));
        let mut w = store.create_tagged(&h, tag).await.unwrap();
        w.write(stored).await.unwrap();
        store.commit(w).await.unwrap();
        h
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tags_are_stored_listed_replaced_and_tombstoned() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::ChunkStore::open(dir.path(), 0).unwrap();
        // Small (group commit) and large (direct I/O) chunks, tagged.
        let small = put(&store, b"small", Some(&tag("s", 1))).await;
        let big = put(&store, &vec![7u8; 3 << 20], Some(&tag("b", 2))).await;
        let bare = put(&store, b"untagged", None).await;
        // A format-1 file, as written before tags.
        let (h1, stored1) =
            protocol::chunk::encode(ChunkId::random(), bytes::Bytes::from_static(b"old"));
        let enc = postcard::to_allocvec(&h1).unwrap();
        let mut old = b"DFSCHNK1".to_vec();
        old.extend_from_slice(&(enc.len() as u32).to_le_bytes());
        old.extend_from_slice(&enc);
        old.extend_from_slice(&stored1);
        let hex = h1.id.to_hex();
        let p = dir.path().join("chunks").join(&hex[..2]);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join(format!("{hex}.chunk")), old).unwrap();
        drop(store);
        let store = crate::store::ChunkStore::open(dir.path(), 0).unwrap();
        // Tagged chunks still read and verify byte-exact.
        for h in [&small, &big, &bare, &h1] {
            assert_eq!(&store.verify(&h.id).await.unwrap(), h);
        }
        assert_eq!(store.tag_of(&small.id).await.unwrap(), Some(tag("s", 1)));
        assert_eq!(store.tag_of(&big.id).await.unwrap(), Some(tag("b", 2)));
        assert_eq!(store.tag_of(&bare.id).await.unwrap(), None);
        assert_eq!(store.tag_of(&h1.id).await.unwrap(), None);
        // Retag: the old format-1 file and the big one; both still verify.
        let done = store
            .retag(vec![(h1.id, tag("o", 3)), (big.id, tag("b2", 4))])
            .await;
        assert!(done.iter().all(|(_, e)| e.is_none()), "{done:?}");
        assert_eq!(store.tag_of(&h1.id).await.unwrap(), Some(tag("o", 3)));
        assert_eq!(store.tag_of(&big.id).await.unwrap(), Some(tag("b2", 4)));
        store.verify(&h1.id).await.unwrap();
        store.verify(&big.id).await.unwrap();
        // A missing chunk cannot be retagged.
        let r = store.retag(vec![(ChunkId::random(), tag("x", 1))]).await;
        assert!(r[0].1.is_some());
        // Tombstones survive a restart and go with the delete.
        store.doom(&[small.id]).await;
        drop(store);
        let store = crate::store::ChunkStore::open(dir.path(), 0).unwrap();
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = store.list_tags(after, 2).await;
            all.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(all.len(), 4);
        let by_id = |id: ChunkId| all.iter().find(|e| e.header.id == id).unwrap();
        assert!(by_id(small.id).doomed);
        assert!(!by_id(big.id).doomed);
        assert_eq!(by_id(big.id).tag.as_ref().unwrap().name.as_str(), "b2");
        assert_eq!(by_id(bare.id).tag, None);
        store.delete(&[small.id]).await;
        assert_eq!(store.doomed_count(), 0);
    }
}
