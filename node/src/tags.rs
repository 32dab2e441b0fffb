//! Owner tags' bookkeeping on a node: tombstones of removed files'
//! chunks, name records of empty files, and the paged listing a rebuild
//! reads.
//!
//! The chunk file format with its tag records is in [`crate::chunkfile`].
//!
//! Tombstones (`doomed/<id>`, empty files) record the coordinator's word
//! that the file of a chunk was removed or replaced, before the delete
//! grace: a rebuild lists such chunks as doomed and never brings their file
//! back. A tombstone goes with its chunk's delete.

use crate::chunkfile::{parse_trailer, record, RECORD_HEAD};
use protocol::tag::{OwnerTag, MAX_TAG_LEN};
use protocol::ChunkId;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// Name records: the owner tags of empty files, which have no chunk to
/// carry them (`names/<name hash>.<generation>.tag`, one record each,
/// written atomically).
pub struct Names {
    dir: PathBuf,
}

impl Names {
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("names");
        directio::fsutil::create_dir_durably(&dir)?;
        Ok(Names { dir })
    }

    fn key(name: &protocol::FileName) -> String {
        use sha2::Digest;
        hex_of(&sha2::Sha256::digest(name.as_str().as_bytes())[..16])
    }

    /// Keeps a record (blocking); refused beyond [`protocol::tag::MAX_NAME_RECORDS`].
    pub fn keep(&self, tag: &OwnerTag) -> std::io::Result<()> {
        if tag.stripes != 0 || tag.check().is_err() {
            return Err(std::io::Error::other(
                "not the name record of an empty file",
            ));
        }
        let count = std::fs::read_dir(&self.dir)?.count();
        if count >= protocol::tag::MAX_NAME_RECORDS {
            return Err(std::io::Error::other("too many name records kept"));
        }
        let file = format!("{}.{}.tag", Self::key(&tag.name), tag.generation);
        directio::fsutil::write_atomic(&self.dir, &file, &record(tag))
    }

    /// Drops the records of `name` up to generation `upto` (blocking).
    pub fn drop_upto(&self, name: &protocol::FileName, upto: u64) -> std::io::Result<u64> {
        let prefix = format!("{}.", Self::key(name));
        let mut n = 0;
        for e in std::fs::read_dir(&self.dir)?.flatten() {
            let f = e.file_name().to_string_lossy().to_string();
            let gen = f
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(".tag"))
                .and_then(|g| g.parse::<u64>().ok());
            if gen.is_some_and(|g| g <= upto) && std::fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        if n > 0 {
            std::fs::File::open(&self.dir)?.sync_all()?;
        }
        Ok(n)
    }

    /// Every record kept (blocking), at most [`protocol::tag::MAX_NAME_RECORDS`].
    pub fn list(&self) -> Vec<OwnerTag> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tag"))
            .take(protocol::tag::MAX_NAME_RECORDS)
            .filter_map(|e| {
                let b = std::fs::read(e.path()).ok()?;
                (b.len() <= MAX_TAG_LEN + RECORD_HEAD).then(|| parse_trailer(&b))?
            })
            .collect()
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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
    use crate::chunkfile::parse_trailer;
    use protocol::{ChunkHeader, ChunkPlan, FileName, PutPlan, StripePlan};

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
        plan.owner_tag(&FileName::new(name).unwrap(), 5, 0, 0)
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
            .retag(vec![(h1.id, tag("o", 3)), (big.id, tag("b2", 4))], false)
            .await;
        assert!(done.iter().all(|(_, e)| e.is_none()), "{done:?}");
        assert_eq!(store.tag_of(&h1.id).await.unwrap(), Some(tag("o", 3)));
        assert_eq!(store.tag_of(&big.id).await.unwrap(), Some(tag("b2", 4)));
        store.verify(&h1.id).await.unwrap();
        store.verify(&big.id).await.unwrap();
        // A missing chunk cannot be retagged.
        let r = store
            .retag(vec![(ChunkId::random(), tag("x", 1))], false)
            .await;
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
