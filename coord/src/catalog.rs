//! The catalog: namespace, file -> stripes -> chunks -> nodes, and the node
//! address book. Changed only by applying journal [`Record`]s, so replaying
//! the journal after a crash rebuilds exactly what was acknowledged.

pub use decide::entry::{legacy, ChunkEntry, FileEntry, Slot, StripeEntry};
use protocol::{ChunkId, FileName, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    files: BTreeMap<FileName, FileEntry>,
    /// Last known data address of every node ever registered, so that after
    /// a restart clients can be pointed at nodes before they re-register.
    node_addrs: BTreeMap<NodeId, String>,
    /// Nodes being drained: they take no new chunks and their copies are
    /// moved away. Durable, so a restart does not forget a drain.
    draining: BTreeSet<NodeId>,
    /// Client keys in force, by name (`dfs-sim key create`). Kept with the
    /// catalog because the coordinator is the one that checks them.
    keys: BTreeMap<String, [u8; 32]>,
    /// Derived: where each chunk sits in the namespace. Rebuilt on load.
    #[serde(skip)]
    index: HashMap<ChunkId, ChunkRef>,
    /// Derived: one shared copy of every holder id seen, so that the holder
    /// lists of a million chunks point at a few node names instead of
    /// each owning a copy ([`Catalog::intern`]).
    #[serde(skip)]
    interned: HashSet<NodeId>,
}

/// Position of a chunk in the namespace: one per chunk in the index, so
/// kept to 24 bytes (a shared name, the stripe, the slot packed in a word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    pub file: FileName,
    stripe: u32,
    /// The slot's index, with [`PARITY_BIT`] set for a parity.
    slot: u32,
}

const PARITY_BIT: u32 = 1 << 31;

impl ChunkRef {
    /// Stripe and slot indexes are far below 2^31 (a file's chunks are
    /// bounded by the upload and concat limits); one beyond would locate
    /// nothing rather than a wrong chunk.
    fn new(file: FileName, stripe: usize, slot: Slot) -> ChunkRef {
        let small = |i: usize| u32::try_from(i).unwrap_or(u32::MAX).min(PARITY_BIT - 1);
        ChunkRef {
            file,
            stripe: u32::try_from(stripe).unwrap_or(u32::MAX),
            slot: match slot {
                Slot::Data(i) => small(i),
                Slot::Parity(j) => PARITY_BIT | small(j),
            },
        }
    }

    pub fn stripe(&self) -> usize {
        self.stripe as usize
    }

    pub fn slot(&self) -> Slot {
        let i = (self.slot & !PARITY_BIT) as usize;
        if self.slot & PARITY_BIT != 0 {
            Slot::Parity(i)
        } else {
            Slot::Data(i)
        }
    }
}

/// One durable change to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A committed put; replaces an existing file of that name.
    PutFile {
        name: FileName,
        entry: FileEntry,
    },
    RemoveFile {
        name: FileName,
    },
    /// A node holds a verified copy (repair, reconciliation). Changes of
    /// holders are deltas, not whole lists, so that records computed
    /// concurrently (a repair finishing while a trim runs) commute.
    AddCopy {
        chunk: ChunkId,
        node: NodeId,
    },
    /// These nodes no longer count as holders (lost, corrupt, trimmed).
    DropCopies {
        chunk: ChunkId,
        nodes: Vec<NodeId>,
    },
    NodeAddr {
        id: NodeId,
        addr: String,
    },
    /// Start (`on`) or stop draining a node.
    Drain {
        node: NodeId,
        on: bool,
    },
    /// A removed node: forget its address and drain state.
    Forget {
        node: NodeId,
    },
    /// A client key issued.
    KeyCreate {
        name: String,
        key: [u8; 32],
    },
    /// A client key revoked.
    KeyRevoke {
        name: String,
    },
    /// `name` becomes the concatenation of the `parts` files, which are
    /// removed; their chunks change owner, none becomes garbage (an S3
    /// multipart upload completing without moving data). `entry` is the
    /// joined file as it was when journaled: applied live, the parts' own
    /// (newer) holder lists are used; replayed over a fuzzy snapshot that
    /// already lost some parts, `entry` rebuilds the same result.
    Concat {
        name: FileName,
        parts: Vec<FileName>,
        entry: FileEntry,
    },
    /// `from`'s entry moves to `to` (a mount's rename), replacing what was
    /// there, whose chunks become garbage. `entry` is the moved file as it
    /// was when journaled: applied live (or replayed where `from` still
    /// exists), `from`'s own holder lists move; replayed over a fuzzy
    /// snapshot that already lost `from`, `entry` rebuilds the same result
    /// (and records after this one bring it up to date), as for `Concat`.
    Rename {
        from: FileName,
        to: FileName,
        entry: FileEntry,
    },
    /// The attributes of `name` become `attrs` (a mount's chmod, chown,
    /// utimens). Replaying it sets the same attributes again.
    SetAttrs {
        name: FileName,
        attrs: protocol::Attrs,
    },
}

/// Copies of a chunk that are no longer referenced and may be deleted.
pub type Garbage = Vec<(ChunkId, Vec<NodeId>)>;

/// Read access for everyone; change only through [`Catalog::apply`], which
/// the journal calls on replay and the journal writer calls once a record
/// is durable (`crate::state`).
impl Catalog {
    /// Every file, by name.
    pub fn files(&self) -> &BTreeMap<FileName, FileEntry> {
        &self.files
    }

    pub fn file(&self, name: &FileName) -> Option<&FileEntry> {
        self.files.get(name)
    }

    /// How many files the catalog holds.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Last known data address of every node ever registered.
    pub fn node_addrs(&self) -> &BTreeMap<NodeId, String> {
        &self.node_addrs
    }

    /// Nodes being drained.
    pub fn draining(&self) -> &BTreeSet<NodeId> {
        &self.draining
    }

    /// Client keys in force, by name.
    pub fn keys(&self) -> &BTreeMap<String, [u8; 32]> {
        &self.keys
    }

    /// TEST ONLY (`DFS_TEST_BUG=ack-before-fsync`, see `crate::state`):
    /// forgets files created after `ms`, as a coordinator that acknowledged
    /// before its journal fsync would after a crash. Returns how many.
    pub(crate) fn forget_created_after(&mut self, ms: u64) -> usize {
        let before = self.files.len();
        self.files.retain(|_, f| f.created_ms < ms);
        self.reindex();
        before - self.files.len()
    }

    /// A catalog of an older format, converted (`crate::legacy`).
    pub(crate) fn upgraded(
        files: BTreeMap<FileName, FileEntry>,
        node_addrs: BTreeMap<NodeId, String>,
        draining: BTreeSet<NodeId>,
    ) -> Catalog {
        let mut c = Catalog {
            files,
            node_addrs,
            draining,
            ..Default::default()
        };
        c.reindex();
        c
    }

    /// Rebuilds derived indexes after deserialisation.
    pub fn reindex(&mut self) {
        self.index.clear();
        let chunks: usize = self
            .files
            .values()
            .flat_map(|f| f.stripes.iter())
            .map(|s| s.data.len() + s.parity.len())
            .sum();
        self.index.reserve(chunks);
        for (name, entry) in &self.files {
            for (si, s) in entry.stripes.iter().enumerate() {
                for (slot, c) in s.members() {
                    self.index
                        .insert(c.header.id, ChunkRef::new(name.clone(), si, slot));
                }
            }
        }
    }

    /// The shared copy of `node` (an `Arc` clone, no allocation once seen).
    fn intern(&mut self, node: &NodeId) -> NodeId {
        match self.interned.get(node) {
            Some(n) => n.clone(),
            None => {
                self.interned.insert(node.clone());
                node.clone()
            }
        }
    }

    /// `entry` with every holder id replaced by its shared copy.
    fn intern_entry(&mut self, mut entry: FileEntry) -> FileEntry {
        for s in entry.stripes.iter_mut() {
            for c in s.data.iter_mut().chain(s.parity.iter_mut()) {
                for n in c.nodes.iter_mut() {
                    *n = self.intern(n);
                }
                c.nodes.shrink_to_fit();
            }
        }
        entry
    }

    fn index_file(&mut self, name: &FileName) {
        let Some(entry) = self.files.get(name) else {
            return;
        };
        for (si, s) in entry.stripes.iter().enumerate() {
            for (slot, c) in s.members() {
                self.index
                    .insert(c.header.id, ChunkRef::new(name.clone(), si, slot));
            }
        }
    }

    fn unindex(&mut self, entry: &FileEntry) -> Garbage {
        let mut garbage = Vec::new();
        for (c, _) in entry.chunks() {
            self.index.remove(&c.header.id);
            garbage.push((c.header.id, c.nodes.clone()));
        }
        garbage
    }

    /// Whether any chunk copy is placed on `node`.
    pub fn holds_any(&self, node: &NodeId) -> bool {
        self.files
            .values()
            .any(|f| f.chunks().any(|(c, _)| c.nodes.contains(node)))
    }

    /// Everything but the files, encoded: the first part of a snapshot.
    /// Taking the files out for the encoding (and putting them back) is
    /// O(1), and means a field added to the catalog is never forgotten.
    pub fn head_bytes(&mut self) -> Result<Vec<u8>, postcard::Error> {
        let files = std::mem::take(&mut self.files);
        let res = postcard::to_allocvec(&*self);
        self.files = files;
        res
    }

    /// Up to `max` files after `after` (in name order), encoded, and the
    /// last name; `None` when there are no more. Snapshots are written a
    /// batch at a time so the catalog lock is never held for long.
    pub fn batch_bytes(
        &self,
        after: Option<&FileName>,
        max: usize,
    ) -> Result<Option<(Vec<u8>, FileName)>, postcard::Error> {
        use std::ops::Bound;
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let batch: Vec<(&FileName, &FileEntry)> = self
            .files
            .range::<FileName, _>((lower, Bound::Unbounded))
            .take(max)
            .collect();
        let Some((last, _)) = batch.last() else {
            return Ok(None);
        };
        let last = (*last).clone();
        Ok(Some((postcard::to_allocvec(&batch)?, last)))
    }

    /// A catalog from a snapshot's head, without files yet.
    pub fn from_head(bytes: &[u8]) -> Result<Catalog, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    /// Adds a batch written by [`Catalog::batch_bytes`]; call
    /// [`Catalog::reindex`] after the last one.
    pub fn load_batch(&mut self, bytes: &[u8]) -> Result<(), postcard::Error> {
        // One file at a time straight into the map: no batch-sized
        // temporary (postcard writes a sequence as a varint count, then
        // the elements).
        let (n, mut rest) = postcard::take_from_bytes::<usize>(bytes)?;
        for _ in 0..n {
            let ((name, entry), more) = postcard::take_from_bytes::<(FileName, FileEntry)>(rest)?;
            rest = more;
            let entry = self.intern_entry(entry);
            self.files.insert(name, entry);
        }
        Ok(())
    }

    pub fn locate(&self, id: &ChunkId) -> Option<&ChunkRef> {
        self.index.get(id)
    }

    pub fn chunk(&self, id: &ChunkId) -> Option<(&FileEntry, &ChunkEntry, bool)> {
        let r = self.index.get(id)?;
        let f = self.files.get(&r.file)?;
        let s = f.stripes.get(r.stripe())?;
        s.get(r.slot()).map(|c| (f, c, r.slot().is_parity()))
    }

    fn chunk_mut(&mut self, id: &ChunkId) -> Option<&mut ChunkEntry> {
        let r = self.index.get(id)?;
        let s = self.files.get_mut(&r.file)?.stripes.get_mut(r.stripe())?;
        match r.slot() {
            Slot::Data(i) => s.data.get_mut(i),
            Slot::Parity(j) => s.parity.get_mut(j),
        }
    }

    /// Applies a record; returns the copies it made unreferenced. Records are
    /// validated before they are journaled, so applying never fails; a record
    /// that no longer fits (replayed after a later state) is skipped.
    pub(crate) fn apply(&mut self, r: &Record) -> Garbage {
        match r {
            Record::PutFile { name, entry } => {
                let entry = self.intern_entry(entry.clone());
                let garbage = match self.files.insert(name.clone(), entry) {
                    Some(old) => self.unindex(&old),
                    None => Vec::new(),
                };
                self.index_file(name);
                garbage
            }
            Record::RemoveFile { name } => match self.files.remove(name) {
                Some(old) => self.unindex(&old),
                None => Vec::new(),
            },
            Record::AddCopy { chunk, node } => match self.chunk_mut(chunk) {
                Some(c) if c.nodes.contains(node) => Vec::new(),
                Some(_) => {
                    let node = self.intern(node);
                    if let Some(c) = self.chunk_mut(chunk) {
                        c.nodes.push(node);
                    }
                    Vec::new()
                }
                // The file was replaced or removed between the copy being
                // made (a repair, a registration) and this record: the copy
                // is garbage, or it would stay on the node unknown to the
                // catalog (found by `dfs-sim chaos` as orphan chunks).
                None => vec![(*chunk, vec![node.clone()])],
            },
            Record::DropCopies { chunk, nodes } => {
                if let Some(c) = self.chunk_mut(chunk) {
                    c.nodes.retain(|n| !nodes.contains(n));
                }
                Vec::new()
            }
            Record::NodeAddr { id, addr } => {
                self.node_addrs.insert(id.clone(), addr.clone());
                Vec::new()
            }
            Record::Forget { node } => {
                self.node_addrs.remove(node);
                self.draining.remove(node);
                Vec::new()
            }
            Record::KeyCreate { name, key } => {
                self.keys.insert(name.clone(), *key);
                Vec::new()
            }
            Record::KeyRevoke { name } => {
                self.keys.remove(name);
                Vec::new()
            }
            Record::Concat { name, parts, entry } => {
                if parts.iter().any(|p| p == name) {
                    return Vec::new();
                }
                let mut new = entry.clone();
                let ids = |e: &FileEntry| -> Vec<ChunkId> {
                    e.chunks().map(|(c, _)| c.header.id).collect()
                };
                if parts.iter().all(|p| self.files.contains_key(p)) {
                    // Live (or a replay that finds every part): take the
                    // parts' current holders.
                    new.stripes = parts
                        .iter()
                        .flat_map(|p| self.files[p].stripes.iter().cloned())
                        .collect();
                } else if let Some(cur) = self.files.get(name).filter(|c| ids(c) == ids(entry)) {
                    // Replay over a snapshot that already has the result.
                    new.stripes = cur.stripes.clone();
                }
                for p in parts {
                    if let Some(part) = self.files.remove(p) {
                        // The chunks move to `name`: nothing is collected.
                        let _ = self.unindex(&part);
                    }
                }
                let new = self.intern_entry(new);
                let keep: HashSet<ChunkId> = ids(&new).into_iter().collect();
                let garbage = match self.files.insert(name.clone(), new) {
                    Some(old) => self
                        .unindex(&old)
                        .into_iter()
                        .filter(|(id, _)| !keep.contains(id))
                        .collect(),
                    None => Vec::new(),
                };
                self.index_file(name);
                garbage
            }
            Record::Drain { node, on } => {
                if *on {
                    self.draining.insert(node.clone());
                } else {
                    self.draining.remove(node);
                }
                Vec::new()
            }
            Record::Rename { from, to, entry } => {
                if from == to {
                    return Vec::new();
                }
                let moved = match self.files.remove(from) {
                    Some(live) => {
                        // The chunks keep their ids: only their index
                        // entries move.
                        let _ = self.unindex(&live);
                        live
                    }
                    None => self.intern_entry(entry.clone()),
                };
                let keep: HashSet<ChunkId> = moved.chunks().map(|(c, _)| c.header.id).collect();
                let garbage = match self.files.insert(to.clone(), moved) {
                    // A fuzzy snapshot may hold the moved file under both
                    // names: its chunks are never garbage.
                    Some(old) => self
                        .unindex(&old)
                        .into_iter()
                        .filter(|(id, _)| !keep.contains(id))
                        .collect(),
                    None => Vec::new(),
                };
                self.index_file(to);
                garbage
            }
            Record::SetAttrs { name, attrs } => {
                if let Some(f) = self.files.get_mut(name) {
                    f.attrs = attrs.clone();
                }
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{ChunkHeader, Codec, Scheme};

    pub(crate) fn chunk(nodes: &[&str]) -> ChunkEntry {
        ChunkEntry {
            header: ChunkHeader {
                id: ChunkId::random(),
                raw_len: 10,
                raw_sha256: [0; 32],
                codec: Codec::Raw,
                stored_len: 10,
                stored_crc: 0,
            },
            nodes: nodes.iter().map(|n| NodeId::new(n).unwrap()).collect(),
        }
    }

    fn file() -> FileEntry {
        FileEntry {
            size: 20,
            created_ms: 0,
            chunk_size: 10,
            replication: 1,
            scheme: Scheme::Xor { k: 2 },
            stripes: vec![StripeEntry {
                data: vec![chunk(&["a"]), chunk(&["b"])],
                parity: vec![chunk(&["c"])],
            }],
            attrs: Default::default(),
        }
    }

    #[test]
    fn rename_moves_chunks_and_replays_idempotently() {
        let mut cat = Catalog::default();
        let (a, b) = (FileName::new("d/a").unwrap(), FileName::new("d/b").unwrap());
        let (fa, fb) = (file(), file());
        let id_a = fa.stripes[0].data[0].header.id;
        let id_b = fb.stripes[0].data[0].header.id;
        cat.apply(&Record::PutFile {
            name: a.clone(),
            entry: fa.clone(),
        });
        cat.apply(&Record::PutFile {
            name: b.clone(),
            entry: fb.clone(),
        });
        let before = cat.clone();
        let rec = Record::Rename {
            from: a.clone(),
            to: b.clone(),
            entry: fa.clone(),
        };
        let g = cat.apply(&rec);
        // The replaced file's three chunks are garbage, the moved ones not.
        assert_eq!(g.len(), 3);
        assert!(g.iter().any(|(id, _)| *id == id_b));
        assert!(!g.iter().any(|(id, _)| *id == id_a));
        assert_eq!(cat.files.len(), 1);
        assert_eq!(cat.locate(&id_a).unwrap().file, b);
        assert!(cat.locate(&id_b).is_none());
        let after = cat.files.clone();
        assert!(cat.apply(&rec).is_empty());
        assert_eq!(cat.files, after);
        // A fuzzy snapshot with the file under both names: the same state,
        // and the moved chunks are not collected.
        let mut both = before.clone();
        both.apply(&Record::PutFile {
            name: b.clone(),
            entry: fa.clone(),
        });
        let g = both.apply(&rec);
        assert!(g.is_empty(), "{g:?}");
        assert_eq!(both.files, after);
        // One that lost `from` already: `entry` rebuilds the result.
        let mut lost = before;
        lost.apply(&Record::RemoveFile { name: a.clone() });
        lost.apply(&rec);
        assert_eq!(lost.files, after);
        assert_eq!(lost.locate(&id_a).unwrap().file, b);
        // SetAttrs replaces the attributes, twice the same.
        let attrs: protocol::Attrs = [("fs.mode".to_string(), "644".to_string())].into();
        let set = Record::SetAttrs {
            name: b.clone(),
            attrs: attrs.clone(),
        };
        cat.apply(&set);
        cat.apply(&set);
        assert_eq!(cat.files[&b].attrs, attrs);
    }

    #[test]
    fn concat_moves_chunks_without_garbage() {
        let mut cat = Catalog::default();
        let (a, b, x) = (
            FileName::new("p/1").unwrap(),
            FileName::new("p/2").unwrap(),
            FileName::new("obj").unwrap(),
        );
        let (fa, fb) = (file(), file());
        let id_b = fb.stripes[0].data[0].header.id;
        cat.apply(&Record::PutFile {
            name: a.clone(),
            entry: fa.clone(),
        });
        cat.apply(&Record::PutFile {
            name: b.clone(),
            entry: fb.clone(),
        });
        let mut joined = fa.clone();
        joined.stripes.extend(fb.stripes.clone());
        joined.size = 40;
        joined.created_ms = 5;
        joined.attrs = [("etag".to_string(), "e-2".to_string())].into();
        let rec = Record::Concat {
            name: x.clone(),
            parts: vec![a.clone(), b.clone()],
            entry: joined,
        };
        let before_concat = cat.clone();
        let g = cat.apply(&rec);
        assert!(g.is_empty());
        assert_eq!(cat.files.len(), 1);
        let f = &cat.files[&x];
        assert_eq!((f.size, f.stripes.len()), (40, 2));
        assert_eq!(cat.locate(&id_b).unwrap().file, x);
        assert_eq!(cat.locate(&id_b).unwrap().stripe(), 1);
        // Replayed again on the result: the same state, nothing collected.
        let after = cat.files.clone();
        assert!(cat.apply(&rec).is_empty());
        assert_eq!(cat.files, after);
        // Replayed over a fuzzy snapshot that caught `p/1` before and `p/2`
        // after the concat (and `obj` before): the same state again.
        let mut fuzzy = before_concat;
        fuzzy.apply(&Record::RemoveFile { name: b.clone() });
        fuzzy.apply(&rec);
        assert_eq!(fuzzy.files, after);
        assert_eq!(fuzzy.locate(&id_b).unwrap().file, x);
    }

    #[test]
    fn put_replace_remove_and_index() {
        let mut cat = Catalog::default();
        let name = FileName::new("x/y").unwrap();
        let f1 = file();
        let id = f1.stripes[0].data[1].header.id;
        assert!(cat
            .apply(&Record::PutFile {
                name: name.clone(),
                entry: f1.clone()
            })
            .is_empty());
        assert_eq!(cat.locate(&id).unwrap().slot(), Slot::Data(1));
        let g = cat.apply(&Record::PutFile {
            name: name.clone(),
            entry: file(),
        });
        assert_eq!(g.len(), 3);
        assert!(cat.locate(&id).is_none());
        let b = NodeId::new("b").unwrap();
        let id2 = cat.files[&name].stripes[0].parity[0].header.id;
        cat.apply(&Record::AddCopy {
            chunk: id2,
            node: b.clone(),
        });
        cat.apply(&Record::DropCopies {
            chunk: id2,
            nodes: vec![NodeId::new("c").unwrap()],
        });
        assert_eq!(cat.chunk(&id2).unwrap().1.nodes, vec![b.clone()]);
        // Serialise, reload, reindex.
        let bytes = postcard::to_allocvec(&cat).unwrap();
        let mut back: Catalog = postcard::from_bytes(&bytes).unwrap();
        back.reindex();
        assert!(back.chunk(&id2).unwrap().2);
        assert_eq!(back.apply(&Record::RemoveFile { name }).len(), 3);
        assert!(back.files.is_empty());
        // A copy added after its file went away is garbage at once.
        assert_eq!(
            back.apply(&Record::AddCopy {
                chunk: id2,
                node: b.clone()
            }),
            vec![(id2, vec![b])]
        );
    }
}

#[cfg(test)]
mod legacy_tests {
    use super::tests::chunk;
    use super::*;
    use protocol::Scheme;

    /// A round-1 catalog (XOR file and replica-only file) converts to one
    /// xor file with a one-element parity list and one `none` file.
    #[test]
    fn round_one_entries_convert() {
        let xor = legacy::FileEntry {
            size: 30,
            created_ms: 1,
            chunk_size: 10,
            replication: 1,
            stripes: vec![
                legacy::StripeEntry {
                    data: vec![chunk(&["a"]), chunk(&["b"])],
                    parity: Some(chunk(&["c"])),
                },
                legacy::StripeEntry {
                    data: vec![chunk(&["a"])],
                    parity: Some(chunk(&["b"])),
                },
            ],
        };
        let plain = legacy::FileEntry {
            size: 20,
            created_ms: 1,
            chunk_size: 10,
            replication: 2,
            stripes: vec![legacy::StripeEntry {
                data: vec![chunk(&["a", "b"]), chunk(&["b", "c"])],
                parity: None,
            }],
        };
        let mut cat = Catalog::default();
        for (n, f) in [("x", xor.clone()), ("y", plain)] {
            cat.apply(&Record::PutFile {
                name: FileName::new(n).unwrap(),
                entry: FileEntry::from_legacy(f),
            });
        }
        let x = &cat.files[&FileName::new("x").unwrap()];
        assert_eq!(x.scheme, Scheme::Xor { k: 2 });
        assert_eq!(x.stripes[0].parity.len(), 1);
        assert_eq!(x.stripes[1].data.len(), 1);
        let pid = xor.stripes[0].parity.as_ref().unwrap().header.id;
        assert_eq!(cat.locate(&pid).unwrap().slot(), Slot::Parity(0));
        let y = &cat.files[&FileName::new("y").unwrap()];
        assert_eq!(y.scheme, Scheme::None);
        assert_eq!(y.stripes.len(), 2);
        assert!(y
            .stripes
            .iter()
            .all(|s| s.data.len() == 1 && s.parity.is_empty()));
    }
}

#[cfg(test)]
mod size_tests {
    use super::tests::chunk;
    use super::*;
    use protocol::Scheme;

    /// The per-file cost of the catalog (issue 13 measured it: about 500
    /// bytes for a one-chunk file, all told) rests on these sizes; a field
    /// that grows them shows here first.
    #[test]
    fn catalog_types_stay_small() {
        use std::mem::size_of;
        assert_eq!(size_of::<FileName>(), 16);
        assert_eq!(size_of::<NodeId>(), 16);
        assert!(size_of::<FileEntry>() <= 80, "{}", size_of::<FileEntry>());
        assert!(size_of::<ChunkEntry>() <= 96, "{}", size_of::<ChunkEntry>());
        assert_eq!(size_of::<ChunkRef>(), 24);
    }

    /// Holder ids decoded separately end up sharing one allocation.
    #[test]
    fn holder_ids_are_interned() {
        let mut cat = Catalog::default();
        for n in ["x", "y"] {
            let mut f = FileEntry {
                size: 10,
                created_ms: 0,
                chunk_size: 10,
                replication: 1,
                scheme: Scheme::None,
                stripes: vec![StripeEntry {
                    data: vec![chunk(&["a"])],
                    parity: Vec::new(),
                }],
                attrs: Default::default(),
            };
            // A fresh allocation, as a decoded record has.
            f.stripes[0].data[0].nodes = vec![NodeId::new(&String::from("a")).unwrap()];
            cat.apply(&Record::PutFile {
                name: FileName::new(n).unwrap(),
                entry: f,
            });
        }
        let ptr = |n: &str| {
            cat.files[&FileName::new(n).unwrap()].stripes[0].data[0].nodes[0]
                .as_str()
                .as_ptr()
        };
        assert_eq!(ptr("x"), ptr("y"));
    }
}
