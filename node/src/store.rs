//! Chunk files on local disk.
//!
//! Layout under the data directory:
//!
//! ```text
//! chunks/ab/ab12…ef.chunk   one file per chunk, named by its ChunkId only
//! tmp/                      chunks being received (wiped at start)
//! quarantine/<id>.chunk     chunks found corrupt, kept until the coordinator
//!                           purges them after the grace period
//! orphans/<id>.chunk        chunks the catalog did not know, set aside (never
//!                           deleted on sight); reclaimed or purged later
//! ```
//!
//! The modification time of a set-aside file is the time it was set aside:
//! its age, reported at registration, decides when its grace period ends.
//!
//! Format of a chunk file:
//!
//! ```text
//! +-------------------+---------------------+---------------------+----------------+
//! | magic "DFSCHNK2"  | header_len: u32 LE  | ChunkHeader postcard | stored bytes   | tag records
//! +-------------------+---------------------+---------------------+----------------+
//! ```
//!
//! The owner tag records after the stored bytes are described in
//! [`crate::tags`]; format-1 files (`DFSCHNK1`, from before tags) are read
//! the same way and simply have none.
//!
//! A chunk becomes visible only by rename, after its bytes and CRC were
//! checked and the temp file was fsynced; the directory is fsynced after the
//! rename, so a visible chunk survives a power loss.

use crate::chunkfile::{parse_header, FILE_MAGIC};
use crate::error::{is_disk_full, Error, Result};
use bytes::{Bytes, BytesMut};
use directio::fsutil::create_dir_durably;
use protocol::chunk::{self, check_bounds};
use protocol::{ChunkHeader, ChunkId, NodeStats};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Read granularity when streaming a chunk out: a few data frames per
/// read, so a direct read (no kernel read-ahead) is large enough to run
/// near the disk's speed.
const READ_PIECE: usize = 4 * protocol::DATA_FRAME_MAX;
/// Bytes staged between direct writes of a chunk being received.
const WRITE_STAGE: usize = 4 * 1024 * 1024;
/// Chunk files at least this long are written and read with direct I/O,
/// bypassing the page cache; smaller ones (small files, read back often,
/// committed in groups) go through it.
const DIRECT_MIN_LEN: u64 = 1024 * 1024;

/// The chunks of one node, with an in-memory index of ids and sizes.
pub struct ChunkStore {
    chunks_dir: PathBuf,
    tmp_dir: PathBuf,
    quarantine_dir: PathBuf,
    orphans_dir: PathBuf,
    reserve_bytes: u64,
    /// Chunks at most this long are committed in groups (0: never).
    group_max_len: u64,
    index: Mutex<HashMap<ChunkId, u64>>,
    /// Ids deleted recently. A client put of an aborted upload can still be
    /// in flight when the coordinator's delete arrives; it must not land
    /// afterwards and linger as garbage.
    tombstones: Mutex<HashMap<ChunkId, std::time::Instant>>,
    /// Small chunks waiting for the group committer.
    group: std::sync::mpsc::Sender<Pending>,
    /// Tombstones of chunks whose file was removed (see [`crate::tags`]).
    doomed: crate::tags::Doomed,
    /// The paged walk of a tag listing in progress.
    pager: Mutex<crate::tags::Pager>,
    /// Name records of empty files (see [`crate::tags::Names`]).
    names: crate::tags::Names,
    /// The data directory, held open: a directory removed (its link count
    /// drops to 0) or replaced by another under the same path (another
    /// device and inode; the open handle keeps the inode from being reused)
    /// is not this store any more, and its chunks are gone.
    data_dir: PathBuf,
    dir_handle: std::fs::File,
    /// Why the store cannot be trusted with writes (gone, replaced,
    /// unwritable), if it cannot: set by [`ChunkStore::probe`], which runs
    /// periodically and after every failed write. The node then reports
    /// itself failed and refuses writes.
    failed: Mutex<Option<String>>,
}

/// Chunks at most this long are committed in groups; larger ones are
/// fsynced on their own (a group sync would also flush other writers'
/// large dirty data, and a large chunk's own fsync dominates anyway).
pub const GROUP_MAX_LEN: u64 = 256 * 1024;
/// Most chunks one group commit covers.
const GROUP_MAX: usize = 256;

/// A received small chunk whose bytes are written to its temp file, waiting
/// to be made durable and visible.
struct Pending {
    tmp: PathBuf,
    final_path: PathBuf,
    /// Kept open until the group is synced.
    file: std::fs::File,
    done: tokio::sync::oneshot::Sender<std::io::Result<()>>,
}

/// The group committer: every chunk that arrived while the previous group
/// was being synced is made durable by one `syncfs` of the store's file
/// system, linked into place, and the links made durable by a second
/// `syncfs`; only then is any of them acknowledged. Two syncs per group
/// instead of two per chunk; never an acknowledgement before its sync.
fn group_committer(chunks_dir: PathBuf, rx: std::sync::mpsc::Receiver<Pending>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let synced = syncfs(&chunks_dir);
        let mut linked = Vec::with_capacity(batch.len());
        for p in batch {
            let res = synced.as_ref().map_err(clone_err).and_then(|_| {
                if let Some(d) = p.final_path.parent() {
                    create_dir_durably(d)?;
                }
                std::fs::hard_link(&p.tmp, &p.final_path)
            });
            linked.push((p, res));
        }
        let links_synced = if linked.iter().any(|(_, r)| r.is_ok()) {
            syncfs(&chunks_dir)
        } else {
            Ok(())
        };
        for (p, res) in linked {
            let res = res.and_then(|_| links_synced.as_ref().map(|_| ()).map_err(clone_err));
            drop(p.file);
            let _ = p.done.send(res);
        }
    }
}

fn clone_err(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

/// Flushes every dirty page and inode of the file system holding `path`.
fn syncfs(path: &Path) -> std::io::Result<()> {
    let dir = std::fs::File::open(path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: `dir` is an open file descriptor for the duration of the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// How long a deleted id refuses client puts.
const TOMBSTONE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

impl ChunkStore {
    /// Opens (creating if needed) the store, removes leftovers of uploads cut
    /// short by a crash, and indexes the chunk files present.
    pub fn open(data_dir: &Path, reserve_bytes: u64) -> Result<Self> {
        Self::open_with(data_dir, reserve_bytes, GROUP_MAX_LEN)
    }

    /// [`ChunkStore::open`] with the group-commit threshold chosen
    /// (`node --group-commit`; 0 turns group commit off).
    pub fn open_with(data_dir: &Path, reserve_bytes: u64, group_max_len: u64) -> Result<Self> {
        let chunks_dir = data_dir.join("chunks");
        let tmp_dir = data_dir.join("tmp");
        let quarantine_dir = data_dir.join("quarantine");
        let orphans_dir = data_dir.join("orphans");
        for d in [&chunks_dir, &tmp_dir, &quarantine_dir, &orphans_dir] {
            create_dir_durably(d)?;
        }
        for e in std::fs::read_dir(&tmp_dir)? {
            let _ = std::fs::remove_file(e?.path());
        }
        let mut index = HashMap::new();
        for sub in std::fs::read_dir(&chunks_dir)? {
            let sub = sub?;
            if !sub.file_type()?.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(sub.path())? {
                let f = f?;
                let name = f.file_name();
                let Some(id) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".chunk"))
                    .and_then(ChunkId::from_hex)
                else {
                    tracing::warn!(path = %f.path().display(), "ignoring unknown file in chunk store");
                    continue;
                };
                index.insert(id, f.metadata()?.len());
            }
        }
        tracing::info!(chunks = index.len(), dir = %data_dir.display(), "chunk store opened");
        let (group, rx) = std::sync::mpsc::channel();
        let dir = chunks_dir.clone();
        std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || group_committer(dir, rx))?;
        let doomed = crate::tags::Doomed::open(data_dir)?;
        let names = crate::tags::Names::open(data_dir)?;
        Ok(ChunkStore {
            group,
            doomed,
            names,
            pager: Mutex::new(Default::default()),
            data_dir: data_dir.to_path_buf(),
            dir_handle: std::fs::File::open(data_dir)?,
            failed: Mutex::new(None),
            chunks_dir,
            tmp_dir,
            quarantine_dir,
            orphans_dir,
            reserve_bytes,
            group_max_len,
            index: Mutex::new(index),
            tombstones: Mutex::new(HashMap::new()),
        })
    }

    fn path_of(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.chunks_dir.join(&hex[..2]).join(format!("{hex}.chunk"))
    }

    fn index(&self) -> std::sync::MutexGuard<'_, HashMap<ChunkId, u64>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every update is a single insert or remove), so poison is ignored.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.index().contains_key(id)
    }

    pub fn inventory(&self) -> Vec<ChunkId> {
        self.index().keys().copied().collect()
    }

    /// Why the store is failed, if it is (see [`ChunkStore::probe`]).
    pub fn failed(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks that the store is still there and writable: the data
    /// directory is the one opened (same device and inode), its `chunks/`
    /// and `tmp/` exist, and a probe file can be created, written and
    /// removed in `tmp/`. Records the outcome (logging each change) and
    /// returns the failure, if any. Blocking, and cheap: no fsync.
    ///
    /// Why: a data directory removed under a running node (`rm -rf`, an
    /// unmounted disk) otherwise leaves a node that heartbeats as alive
    /// while every write and read fails, and repair keeps choosing it.
    pub fn probe(&self) -> Option<String> {
        let res = self.check_store();
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        match (&res, failed.as_ref()) {
            (Err(why), None) => {
                tracing::error!(dir = %self.data_dir.display(), reason = %why, "store failed: refusing writes and reporting this node failed")
            }
            (Ok(()), Some(was)) => {
                tracing::warn!(dir = %self.data_dir.display(), was = %was, "store works again")
            }
            _ => {}
        }
        *failed = res.err();
        failed.clone()
    }

    fn check_store(&self) -> std::result::Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.data_dir.display();
        let held = self
            .dir_handle
            .metadata()
            .map_err(|e| format!("data directory {dir}: {e}"))?;
        if held.nlink() == 0 {
            return Err(format!("data directory {dir} is gone (removed)"));
        }
        match dir_identity(&self.data_dir) {
            None => return Err(format!("data directory {dir} is gone")),
            Some(id) if id != (held.dev(), held.ino()) => {
                return Err(format!(
                    "data directory {dir} was replaced (another directory now has its name; the chunks this node held are gone)"
                ))
            }
            Some(_) => {}
        }
        for d in [&self.chunks_dir, &self.tmp_dir] {
            if !d.is_dir() {
                return Err(format!("{} is gone", d.display()));
            }
        }
        let probe = self
            .tmp_dir
            .join(format!("probe.{:016x}", rand::random::<u64>()));
        let res = std::fs::File::create(&probe)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"probe"));
        let _ = std::fs::remove_file(&probe);
        match res {
            Ok(()) => Ok(()),
            // A full disk is not a failed one: placement already avoids it.
            Err(e) if is_disk_full(&e) => Ok(()),
            Err(e) => Err(format!("cannot write in {}: {e}", self.tmp_dir.display())),
        }
    }

    /// A write failed with `e`: probe the store at once (a gone or
    /// unwritable store is found by the first failed write, not the next
    /// periodic probe) and turn the error into the node's.
    fn write_failed(&self, e: std::io::Error) -> Error {
        if !is_disk_full(&e) {
            self.probe();
        }
        disk_err(e)
    }

    fn refuse_if_failed(&self) -> Result<()> {
        match self.failed() {
            Some(why) => Err(Error::StoreFailed(why)),
            None => Ok(()),
        }
    }

    pub fn stats(&self) -> NodeStats {
        let failed = self.failed();
        let idx = self.index();
        NodeStats {
            failed,
            chunks: idx.len() as u64,
            bytes: idx.values().sum(),
            free_bytes: free_bytes(&self.chunks_dir),
            orphans: count_files(&self.orphans_dir),
            quarantined: count_files(&self.quarantine_dir),
            reserve_bytes: self.reserve_bytes,
            ..NodeStats::default()
        }
    }

    /// Whether `bytes` more fit beyond the reserve (unknown free space: yes).
    pub fn has_room(&self, bytes: u64) -> bool {
        free_bytes(&self.chunks_dir).is_none_or(|free| free >= bytes + self.reserve_bytes)
    }

    /// Whether `id` is held aside (orphan or quarantined).
    pub fn is_set_aside(&self, id: &ChunkId) -> bool {
        let name = format!("{id}.chunk");
        self.orphans_dir.join(&name).exists() || self.quarantine_dir.join(&name).exists()
    }

    /// Every copy held aside, with its age, for registration.
    pub fn set_aside_list(&self) -> Vec<protocol::SetAside> {
        let mut out = Vec::new();
        for (dir, corrupt) in [(&self.orphans_dir, false), (&self.quarantine_dir, true)] {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(id) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".chunk"))
                    .and_then(ChunkId::from_hex)
                else {
                    continue;
                };
                let age_s = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                out.push(protocol::SetAside { id, age_s, corrupt });
            }
        }
        out
    }

    /// Moves copies the catalog does not know out of the live set. Never
    /// deletes: a coordinator that is wrong about its catalog costs nothing.
    pub async fn set_aside(&self, ids: &[ChunkId]) -> u64 {
        let mut n = 0;
        for id in ids {
            let to = self.orphans_dir.join(format!("{id}.chunk"));
            if move_stamped(&self.path_of(id), &to).is_ok() {
                n += 1;
            }
            self.index().remove(id);
        }
        let _ = fsync_dir(self.orphans_dir.clone()).await;
        for id in ids {
            if let Some(d) = self.path_of(id).parent() {
                let _ = fsync_dir(d.to_path_buf()).await;
            }
        }
        n
    }

    /// Moves set-aside copies back into the live set (the catalog needs
    /// them after all); each is checked (header, length) before it counts.
    pub async fn reclaim(&self, ids: &[ChunkId]) -> u64 {
        let mut n = 0;
        for id in ids {
            let from = self.orphans_dir.join(format!("{id}.chunk"));
            let to = self.path_of(id);
            if let Some(d) = to.parent() {
                let _ = create_dir_durably(d);
            }
            if to.exists() || std::fs::rename(&from, &to).is_err() {
                continue;
            }
            match self.open_chunk_at(id, &to).await {
                Ok(r) => {
                    let size = std::fs::metadata(&to).map(|m| m.len()).unwrap_or(0);
                    drop(r);
                    self.index().insert(*id, size);
                    n += 1;
                }
                Err(e) => {
                    tracing::warn!(chunk = %id, error = %e, "reclaimed copy is unusable; quarantining it");
                    let _ = move_stamped(&to, &self.quarantine_dir.join(format!("{id}.chunk")));
                }
            }
            if let Some(d) = to.parent() {
                let _ = fsync_dir(d.to_path_buf()).await;
            }
        }
        let _ = fsync_dir(self.orphans_dir.clone()).await;
        n
    }

    /// Deletes set-aside copies whose grace period the coordinator found
    /// over. Only files in `orphans/` and `quarantine/` are touched.
    pub async fn purge(&self, ids: &[ChunkId]) -> u64 {
        let mut n = 0;
        for id in ids {
            for dir in [&self.orphans_dir, &self.quarantine_dir] {
                if std::fs::remove_file(dir.join(format!("{id}.chunk"))).is_ok() {
                    n += 1;
                }
            }
        }
        self.doomed.remove(ids);
        let _ = fsync_dir(self.orphans_dir.clone()).await;
        let _ = fsync_dir(self.quarantine_dir.clone()).await;
        n
    }

    /// Starts receiving a chunk. Refuses up front when the disk cannot hold it.
    pub async fn create(&self, header: &ChunkHeader) -> Result<ChunkWriter> {
        self.create_tagged(header, None).await
    }

    /// [`ChunkStore::create`] of a chunk with an owner tag, written after
    /// its stored bytes at commit.
    pub async fn create_tagged(
        &self,
        header: &ChunkHeader,
        tag: Option<&protocol::OwnerTag>,
    ) -> Result<ChunkWriter> {
        check_bounds(header).map_err(|e| Error::BadRequest(e.to_string()))?;
        if let Some(t) = tag {
            t.check().map_err(Error::BadRequest)?;
        }
        let trailer = tag.map(crate::chunkfile::record).unwrap_or_default();
        self.refuse_if_failed()?;
        if let Some(free) = free_bytes(&self.chunks_dir) {
            let need = header.stored_len + self.reserve_bytes;
            if free < need {
                return Err(Error::DiskFull(format!(
                    "{free} bytes free, chunk needs {} plus a reserve of {}",
                    header.stored_len, self.reserve_bytes
                )));
            }
        }
        let tmp_path =
            self.tmp_dir
                .join(format!("{}.{:016x}.tmp", header.id, rand::random::<u64>()));
        let enc = postcard::to_allocvec(header).map_err(protocol::Error::from)?;
        let mut prefix = Vec::with_capacity(12 + enc.len());
        prefix.extend_from_slice(FILE_MAGIC);
        prefix.extend_from_slice(&(enc.len() as u32).to_le_bytes());
        prefix.extend_from_slice(&enc);
        // Large chunks bypass the page cache (see `directio`); small ones,
        // committed in groups and read back often, go through it.
        let direct = header.stored_len >= DIRECT_MIN_LEN;
        let path = tmp_path.clone();
        let file = tokio::task::spawn_blocking(move || {
            let mut w = directio::DirectWriter::create(&path, WRITE_STAGE, direct)?;
            w.write_all(&prefix)?;
            Ok::<_, std::io::Error>(w)
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        // The guard exists before the result is judged: a file created and
        // then failed to write is removed too.
        let guard = TempGuard(Some(tmp_path));
        let file = file.map_err(|e| self.write_failed(e))?;
        Ok(ChunkWriter {
            file: Some(file),
            pending: None,
            guard,
            header: header.clone(),
            crc: crc32fast::Hasher::new(),
            written: 0,
            trailer,
        })
    }

    /// Makes a fully received chunk durable and visible.
    pub async fn commit(&self, mut w: ChunkWriter) -> Result<()> {
        w.settle().await?;
        let ChunkWriter {
            file,
            pending: _,
            guard,
            header,
            crc,
            written,
            trailer,
        } = w;
        if written != header.stored_len {
            return Err(Error::BadRequest(format!(
                "received {written} of {} bytes",
                header.stored_len
            )));
        }
        if crc.finalize() != header.stored_crc {
            return Err(Error::Corrupt {
                chunk: header.id,
                reason: "CRC mismatch on received bytes".into(),
            });
        }
        let mut file =
            file.ok_or_else(|| Error::Io(std::io::Error::other("chunk writer poisoned")))?;
        let extra = trailer.len() as u64;
        // The owner tag follows the stored bytes; then the last (padded)
        // block of a direct write, and the cut to length.
        let file = tokio::task::spawn_blocking(move || {
            file.write_all(&trailer)?;
            file.finish()
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
        .map_err(|e| self.write_failed(e))?;
        let final_path = self.path_of(&header.id);
        let tmp = guard.0.clone().unwrap_or_default();
        if header.stored_len <= self.group_max_len {
            // Small chunks share their syncs with whatever else arrived.
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.group
                .send(Pending {
                    tmp,
                    final_path,
                    file,
                    done: tx,
                })
                .map_err(|_| Error::Io(std::io::Error::other("group committer stopped")))?;
            return match rx.await {
                Ok(Ok(())) => {
                    let size = 12 + header.stored_len + postcard_len(&header) + extra;
                    self.index().insert(header.id, size);
                    self.doomed.remove(&[header.id]);
                    Ok(())
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    self.same_as_existing(&header).await
                }
                Ok(Err(e)) => Err(self.write_failed(e)),
                Err(_) => Err(Error::Io(std::io::Error::other("group committer stopped"))),
            };
        }
        // fdatasync: the data and the size, not timestamps nobody reads.
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
            .map_err(|e| self.write_failed(e))?;
        let dir = final_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if !dir.is_dir() {
            create_dir_durably(&dir).map_err(|e| self.write_failed(e))?;
        }
        // Link, not rename: a copy already present under this id is never
        // replaced (a put reusing an id cannot overwrite a good copy). The
        // same bytes again are fine (a retried put); others are refused.
        match std::fs::hard_link(&tmp, &final_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return self.same_as_existing(&header).await;
            }
            Err(e) => return Err(self.write_failed(e)),
        }
        fsync_dir(dir).await?;
        let size = 12 + header.stored_len + postcard_len(&header) + extra;
        self.index().insert(header.id, size);
        // Stored again (a repair onto a node that had dropped it): live.
        self.doomed.remove(&[header.id]);
        Ok(())
    }

    /// Copies chunk `from` under the new id `to` on this disk (the
    /// coordinator's `Clone` order, for copying a file inside the cluster).
    ///
    /// The chunk file embeds its id in its header, so a hard link cannot
    /// serve; instead the new file gets its own header and the stored bytes
    /// are streamed from the source file into it in large blocks (direct
    /// I/O for large chunks, so neither file goes through the page cache),
    /// CRC-checked on the way out of the source and again on the way in,
    /// before the copy is made durable and visible exactly like a received
    /// chunk (temp file, fsync, link never replacing, directory fsync). A
    /// source that fails its CRC is reported as corrupt (`Error::Corrupt`
    /// naming `from`).
    pub async fn clone_chunk(&self, from: &ChunkId, to: ChunkId) -> Result<ChunkHeader> {
        if self.contains(&to) || self.path_of(&to).exists() || self.tombstoned(&to) {
            return Err(Error::BadRequest(format!(
                "chunk {to} already exists here or was deleted; not replaced"
            )));
        }
        let mut src = self.open_chunk(from).await?;
        let mut header = src.header.clone();
        header.id = to;
        let mut w = self.create(&header).await?;
        // The stored bytes pass through here once, in large blocks (direct
        // I/O on both files for large chunks): the reader checks them
        // against the source's CRC, the writer computes the CRC of what it
        // writes, and `commit` refuses a mismatch, as for a put.
        while let Some(piece) = src.next_piece().await? {
            w.write(piece).await?;
        }
        if !src.crc_ok() {
            return Err(Error::Corrupt {
                chunk: *from,
                reason: "CRC mismatch while copying the stored bytes".into(),
            });
        }
        self.commit(w).await?;
        // A delete of this id (the copy was abandoned and collected) may
        // have raced the link: the same check as after a put.
        if self.tombstoned(&to) {
            self.delete(&[to]).await;
            return Err(Error::BadRequest(format!(
                "chunk {to} was deleted while being copied"
            )));
        }
        Ok(header)
    }

    /// A put of an id already present: fine if it is the same chunk (a
    /// retried put), refused otherwise; the present copy is never replaced.
    async fn same_as_existing(&self, header: &ChunkHeader) -> Result<()> {
        match self.open_chunk(&header.id).await.map(|r| r.header) {
            Ok(h) if h == *header => Ok(()),
            _ => Err(Error::BadRequest(format!(
                "chunk {} already exists here with other contents; not replaced",
                header.id
            ))),
        }
    }

    /// Opens a chunk for streaming: checks the header against the file's
    /// size and the expected id before a byte is sent.
    pub async fn open_chunk(&self, id: &ChunkId) -> Result<ChunkReader> {
        let path = self.path_of(id);
        self.open_chunk_at(id, &path).await
    }

    async fn open_chunk_at(&self, id: &ChunkId, path: &Path) -> Result<ChunkReader> {
        let (id2, path) = (*id, path.to_path_buf());
        let opened = tokio::task::spawn_blocking(move || open_reader(&id2, &path))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        match opened {
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                self.index().remove(id);
                Err(Error::NoSuchChunk(*id))
            }
            other => other,
        }
    }

    /// Reads and fully verifies a chunk: CRC, decompression and SHA-256.
    /// Used by the scrubber and by repair before trusting a local copy.
    pub async fn verify(&self, id: &ChunkId) -> Result<ChunkHeader> {
        let mut r = self.open_chunk(id).await?;
        let mut stored = BytesMut::with_capacity(r.header.stored_len as usize);
        while let Some(piece) = r.next_piece().await? {
            stored.extend_from_slice(&piece);
        }
        let header = r.header.clone();
        let h2 = header.clone();
        tokio::task::spawn_blocking(move || chunk::decode(&h2, stored.freeze()))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
            .map_err(|e| Error::Corrupt {
                chunk: *id,
                reason: e.to_string(),
            })?;
        Ok(header)
    }

    /// Moves a corrupt chunk out of the way so it is never served again.
    pub async fn quarantine(&self, id: &ChunkId, reason: &str) {
        let from = self.path_of(id);
        let to = self.quarantine_dir.join(format!("{}.chunk", id));
        match move_stamped(&from, &to) {
            Ok(()) => tracing::error!(chunk = %id, reason, "chunk quarantined"),
            Err(e) => {
                tracing::error!(chunk = %id, reason, error = %e, "could not quarantine chunk")
            }
        }
        self.index().remove(id);
    }

    /// Whether `id` was deleted within the last [`TOMBSTONE_TTL`].
    pub fn tombstoned(&self, id: &ChunkId) -> bool {
        let mut t = self.tombstones.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        t.retain(|_, at| now.duration_since(*at) < TOMBSTONE_TTL);
        t.contains_key(id)
    }

    /// Deletes chunks; ids not present are skipped. Returns how many went.
    pub async fn delete(&self, ids: &[ChunkId]) -> u64 {
        let (n, dirs) = self.unlink(ids);
        for d in dirs {
            let _ = fsync_dir(d).await;
        }
        n
    }

    /// The synchronous half of [`ChunkStore::delete`]: records tombstones
    /// and unlinks at once (microseconds per file), so a caller that must
    /// order a delete before a later command on the same chunk (a repair
    /// order arriving next on the session) can; the directory fsyncs that
    /// make the unlinks durable are returned for the caller to run.
    pub fn unlink(&self, ids: &[ChunkId]) -> (u64, std::collections::BTreeSet<PathBuf>) {
        {
            let mut t = self.tombstones.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            for id in ids {
                t.insert(*id, now);
            }
        }
        let mut n = 0;
        let mut dirs = std::collections::BTreeSet::new();
        for id in ids {
            let p = self.path_of(id);
            if std::fs::remove_file(&p).is_ok() {
                n += 1;
                if let Some(d) = p.parent() {
                    dirs.insert(d.to_path_buf());
                }
            }
            // A copy of a removed file may have been set aside meanwhile.
            if std::fs::remove_file(self.orphans_dir.join(format!("{id}.chunk"))).is_ok() {
                n += 1;
                dirs.insert(self.orphans_dir.clone());
            }
            self.index().remove(id);
        }
        self.doomed.remove(ids);
        (n, dirs)
    }
}

/// Owner tags (see [`crate::tags`]): listing, retagging, tombstones.
impl ChunkStore {
    /// One page of the tags of the live chunks, in id order after `after`:
    /// at most `limit` entries and about [`protocol::tag::MAX_TAG_PAGE_BYTES`]
    /// of tags. Returns the entries and where the next page starts. A chunk
    /// unreadable now (deleted meanwhile, corrupt) is skipped: a rebuild
    /// counts only copies it could read.
    pub async fn list_tags(
        &self,
        after: Option<ChunkId>,
        limit: u32,
    ) -> (Vec<protocol::TagEntry>, Option<ChunkId>) {
        let limit = limit.clamp(1, protocol::tag::MAX_TAG_PAGE) as usize;
        let ids = self
            .pager
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .page(after, limit, || self.inventory());
        let Some(last) = ids.last().copied() else {
            return (Vec::new(), None);
        };
        let paths: Vec<(ChunkId, PathBuf)> = ids.iter().map(|id| (*id, self.path_of(id))).collect();
        let read = tokio::task::spawn_blocking(move || read_tags(paths))
            .await
            .unwrap_or_default();
        let mut out = Vec::with_capacity(read.len());
        let mut bytes = 0usize;
        let mut next = Some(last);
        for (id, header, tag) in read {
            bytes += 96
                + tag.as_ref().map_or(0, |t| {
                    t.name.as_str().len()
                        + t.attrs
                            .iter()
                            .map(|(k, v)| k.len() + v.len() + 4)
                            .sum::<usize>()
                });
            if bytes > protocol::tag::MAX_TAG_PAGE_BYTES && !out.is_empty() {
                // The rest comes with the next page (a fresh walk from here).
                next = out.last().map(|e: &protocol::TagEntry| e.header.id);
                self.pager
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .forget();
                break;
            }
            let doomed = self.doomed.contains(&id);
            out.push(protocol::TagEntry {
                header,
                tag,
                doomed,
            });
        }
        (out, next)
    }

    /// The tag of a held chunk (`None`: untagged).
    pub async fn tag_of(&self, id: &ChunkId) -> Result<Option<protocol::OwnerTag>> {
        if !self.contains(id) {
            return Err(Error::NoSuchChunk(*id));
        }
        let (id2, path) = (*id, self.path_of(id));
        let res = tokio::task::spawn_blocking(move || {
            crate::chunkfile::read_tag(&id2, &path, &mut Vec::new())
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        match res {
            Ok((_, tag)) => Ok(tag),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NoSuchChunk(*id)),
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// Gives held chunks new owner tags, each appended and fdatasynced
    /// before it is confirmed. Per chunk: `None` on success, else why not.
    pub async fn retag(
        &self,
        tags: Vec<(ChunkId, protocol::OwnerTag)>,
        only_untagged: bool,
    ) -> Vec<(ChunkId, Option<String>)> {
        let mut jobs = Vec::with_capacity(tags.len());
        for (id, tag) in tags {
            if let Err(e) = tag.check() {
                jobs.push((id, None, tag, Some(e)));
            } else if !self.contains(&id) {
                jobs.push((id, None, tag, Some(format!("no chunk {id}"))));
            } else {
                jobs.push((id, Some(self.path_of(&id)), tag, None));
            }
        }
        if let Err(e) = self.refuse_if_failed() {
            return jobs
                .into_iter()
                .map(|(id, ..)| (id, Some(e.to_string())))
                .collect();
        }
        tokio::task::spawn_blocking(move || {
            let mut buf = Vec::new();
            jobs.into_iter()
                .map(|(id, path, tag, err)| {
                    let Some(path) = path else { return (id, err) };
                    let res =
                        crate::chunkfile::read_tag(&id, &path, &mut buf).and_then(|(h, old)| {
                            if only_untagged && old.is_some() {
                                return Ok(());
                            }
                            let (_, body) =
                                parse_header(&id, &buf).map_err(std::io::Error::other)?;
                            crate::chunkfile::append_tag(&path, body as u64 + h.stored_len, &tag)
                        });
                    (id, res.err().map(|e| e.to_string()))
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// Records tombstones for the held chunks among `ids` (their file was
    /// removed or replaced; the delete follows after the grace).
    pub async fn doom(&self, ids: &[ChunkId]) -> u64 {
        let held: Vec<ChunkId> = ids.iter().copied().filter(|id| self.contains(id)).collect();
        let n = held.len() as u64;
        // A few empty files and one directory fsync, done in place: the
        // session handles it before its next message, like a delete.
        if let Err(e) = self.doomed.add(&held) {
            tracing::error!(error = %e, "could not record tombstones of removed chunks");
        }
        n
    }

    /// The name records of empty files.
    pub async fn name_records(&self) -> Vec<protocol::OwnerTag> {
        // A directory of a few records (empty files are rare): read in place.
        self.names.list()
    }

    /// Keeps or drops a name record (the coordinator's session order).
    pub fn keep_name(&self, tag: &protocol::OwnerTag) {
        if let Err(e) = self.names.keep(tag) {
            tracing::warn!(name = %tag.name, error = %e, "could not keep a name record");
        }
    }

    pub fn drop_name(&self, name: &protocol::FileName, upto: u64) {
        if let Err(e) = self.names.drop_upto(name, upto) {
            tracing::warn!(%name, error = %e, "could not drop name records");
        }
    }

    /// Drops a chunk's tombstone: the catalog counts the copy again.
    pub fn undoom(&self, id: &ChunkId) {
        self.doomed.remove(&[*id]);
    }

    /// Chunks with a tombstone.
    pub fn doomed_count(&self) -> u64 {
        self.doomed.len() as u64
    }
}

/// Reads the header and tag of each chunk, a few threads at once (the
/// reads are small and mostly served from the page cache; their cost is
/// the system calls). Unreadable chunks are left out.
fn read_tags(
    paths: Vec<(ChunkId, PathBuf)>,
) -> Vec<(ChunkId, ChunkHeader, Option<protocol::OwnerTag>)> {
    const THREADS: usize = 4;
    let per = paths.len().div_ceil(THREADS).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    let mut buf = Vec::new();
                    part.iter()
                        .filter_map(|(id, path)| match crate::chunkfile::read_tag(id, path, &mut buf) {
                            Ok((h, t)) => Some((*id, h, t)),
                            Err(e) => {
                                if e.kind() != std::io::ErrorKind::NotFound {
                                    tracing::warn!(chunk = %id, error = %e, "unreadable chunk left out of the tag listing");
                                }
                                None
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn postcard_len(h: &ChunkHeader) -> u64 {
    postcard::to_allocvec(h)
        .map(|v| v.len() as u64)
        .unwrap_or(0)
}

fn disk_err(e: std::io::Error) -> Error {
    if is_disk_full(&e) {
        Error::DiskFull(e.to_string())
    } else {
        Error::Io(e)
    }
}

/// Opens a chunk file and checks its header (magic, bounded length, id,
/// bounds, file length) before a byte of it is served. Blocking.
fn open_reader(id: &ChunkId, path: &Path) -> Result<ChunkReader> {
    let corrupt = |reason: String| Error::Corrupt { chunk: *id, reason };
    let file_len = std::fs::metadata(path)?.len();
    let direct = file_len >= DIRECT_MIN_LEN;
    let mut blocks = directio::BlockReader::open(path, file_len, READ_PIECE, direct)?;
    let first = blocks
        .next_block()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => corrupt("file shorter than its header".into()),
            _ => Error::Io(e),
        })?
        .unwrap_or_default();
    let (header, body) = parse_header(id, &first).map_err(corrupt)?;
    let data_end = body as u64 + header.stored_len;
    // Owner tag records may follow the stored bytes (bounded).
    if file_len < data_end || file_len - data_end > crate::chunkfile::MAX_TRAILER {
        return Err(corrupt(format!(
            "file is {file_len} bytes, header promises {}",
            body as u64 + header.stored_len
        )));
    }
    Ok(ChunkReader {
        remaining: header.stored_len,
        header,
        blocks: Some(blocks),
        first: Some(first.slice(body..)),
        crc: crc32fast::Hasher::new(),
    })
}

/// A chunk being received into a temp file; dropping it without
/// [`ChunkStore::commit`] deletes the temp file.
pub struct ChunkWriter {
    /// `None` only while a write is running on a blocking thread (or after
    /// one failed, which poisons the writer).
    file: Option<directio::DirectWriter>,
    /// The write of the previous piece, still running: the next piece is
    /// received from the socket meanwhile (a direct write blocks until the
    /// disk has the bytes).
    pending: Option<tokio::task::JoinHandle<(directio::DirectWriter, std::io::Result<()>)>>,
    guard: TempGuard,
    header: ChunkHeader,
    crc: crc32fast::Hasher,
    written: u64,
    /// The owner tag record written after the stored bytes (empty: none).
    trailer: Vec<u8>,
}

impl ChunkWriter {
    /// Appends received bytes; more than the header announced is an error.
    /// Takes the bytes by value (a cheap `Bytes` handle) so the write runs on
    /// a blocking thread without copying them.
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.written + data.len() as u64 > self.header.stored_len {
            return Err(Error::BadRequest(format!(
                "more data than the announced {} bytes",
                self.header.stored_len
            )));
        }
        self.crc.update(&data);
        let n = data.len() as u64;
        self.settle().await?;
        let mut f = self
            .file
            .take()
            .ok_or_else(|| Error::Io(std::io::Error::other("chunk writer poisoned")))?;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let r = f.write_all(&data);
            (f, r)
        }));
        self.written += n;
        Ok(())
    }

    /// Waits for the write in flight, if any, and reports its outcome.
    async fn settle(&mut self) -> Result<()> {
        if let Some(job) = self.pending.take() {
            let (f, res) = job.await.map_err(|e| Error::Io(std::io::Error::other(e)))?;
            res.map_err(disk_err)?;
            self.file = Some(f);
        }
        Ok(())
    }

    pub fn remaining(&self) -> u64 {
        self.header.stored_len - self.written
    }
}

/// Removes a temp file on every path that does not rename it.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A chunk being streamed out, checking the CRC as it goes.
pub struct ChunkReader {
    pub header: ChunkHeader,
    /// `None` only while a read runs on a blocking thread.
    blocks: Option<directio::BlockReader>,
    /// What the first block held beyond the header.
    first: Option<Bytes>,
    remaining: u64,
    crc: crc32fast::Hasher,
}

impl ChunkReader {
    /// The next piece of stored bytes (at most [`READ_PIECE`]), `None` at
    /// the end. A file that changed length since it was opened is an error.
    pub async fn next_piece(&mut self) -> Result<Option<Bytes>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let piece = match self.first.take().filter(|b| !b.is_empty()) {
            Some(b) => b,
            None => {
                let mut blocks = self
                    .blocks
                    .take()
                    .ok_or_else(|| Error::Io(std::io::Error::other("chunk reader poisoned")))?;
                let (blocks, res) = tokio::task::spawn_blocking(move || {
                    let r = blocks.next_block();
                    (blocks, r)
                })
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e)))?;
                self.blocks = Some(blocks);
                res?.ok_or_else(|| {
                    Error::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "chunk file ended early",
                    ))
                })?
            }
        };
        let n = (piece.len() as u64).min(self.remaining) as usize;
        let piece = piece.slice(..n);
        self.crc.update(&piece);
        self.remaining -= n as u64;
        Ok(Some(piece))
    }

    /// After the last piece: whether the bytes matched their CRC.
    pub fn crc_ok(&self) -> bool {
        self.remaining == 0 && self.crc.clone().finalize() == self.header.stored_crc
    }
}

/// Renames `from` to `to` and stamps it with the current time: the start of
/// its grace period.
fn move_stamped(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    let f = std::fs::OpenOptions::new().write(true).open(to)?;
    f.set_modified(std::time::SystemTime::now())
}

fn count_files(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.count() as u64)
        .unwrap_or(0)
}

/// fsyncs a directory so a rename or unlink in it survives a crash.
pub async fn fsync_dir(dir: PathBuf) -> Result<()> {
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    Ok(())
}

/// How often a node probes its store (see [`ChunkStore::probe`]).
pub const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Probes the store every [`PROBE_EVERY`] until `stop`.
pub async fn probe_loop(
    store: std::sync::Arc<ChunkStore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let s = store.clone();
        let _ = tokio::task::spawn_blocking(move || s.probe()).await;
    }
}

/// (device, inode) of a directory, None if it is not one (or is gone).
fn dir_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

/// Free bytes for unprivileged users on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a properly sized,
    // zero-initialised out-parameter that statvfs fills on success.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) == 0 {
            Some(st.f_bavail as u64 * st.f_frsize as u64)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn put(store: &ChunkStore, data: &[u8]) -> ChunkHeader {
        let (h, stored) = chunk::encode(ChunkId::random(), Bytes::copy_from_slice(data));
        let mut w = store.create(&h).await.unwrap();
        w.write(stored.clone()).await.unwrap();
        store.commit(w).await.unwrap();
        h
    }

    #[tokio::test]
    async fn write_read_verify_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 0).unwrap();
        let h = put(&store, &b"x".repeat(3_000_000)).await;
        assert!(store.contains(&h.id));
        store.verify(&h.id).await.unwrap();
        let mut r = store.open_chunk(&h.id).await.unwrap();
        let mut n = 0;
        while let Some(p) = r.next_piece().await.unwrap() {
            n += p.len();
        }
        assert_eq!(n as u64, h.stored_len);
        assert!(r.crc_ok());
        // Reopening finds it again.
        drop(store);
        let store = ChunkStore::open(dir.path(), 0).unwrap();
        assert_eq!(store.stats().chunks, 1);
        assert_eq!(store.delete(&[h.id]).await, 1);
        assert!(matches!(
            store.open_chunk(&h.id).await,
            Err(Error::NoSuchChunk(_))
        ));
    }

    /// Chunks of 1 MiB and more take the direct-I/O path: written in
    /// uneven frames, read back byte-exact, a flipped last byte is found.
    #[tokio::test]
    async fn large_chunk_round_trips_through_direct_io() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 0).unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let raw: Vec<u8> = (0..3 * 1024 * 1024 + 123)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let (h, stored) = chunk::encode(ChunkId::random(), Bytes::from(raw));
        assert!(h.stored_len >= DIRECT_MIN_LEN);
        let mut w = store.create(&h).await.unwrap();
        for piece in stored.chunks(777_777) {
            w.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        store.commit(w).await.unwrap();
        let mut r = store.open_chunk(&h.id).await.unwrap();
        let mut back = Vec::new();
        while let Some(p) = r.next_piece().await.unwrap() {
            back.extend_from_slice(&p);
        }
        assert!(r.crc_ok());
        assert_eq!(back, stored);
        store.verify(&h.id).await.unwrap();
        let p = store.path_of(&h.id);
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        assert!(matches!(
            store.verify(&h.id).await,
            Err(Error::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn clone_makes_a_verified_copy_under_a_new_id_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 0).unwrap();
        // One chunk above the group-commit size, one below.
        for len in [3_000_000usize, 10_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let h = put(&store, &data).await;
            let to = ChunkId::random();
            let h2 = store.clone_chunk(&h.id, to).await.unwrap();
            assert_eq!(h2.id, to);
            assert_eq!(
                (h2.raw_sha256, h2.stored_crc, h2.stored_len),
                (h.raw_sha256, h.stored_crc, h.stored_len)
            );
            assert_eq!(store.verify(&to).await.unwrap(), h2);
            // An id already present is never replaced.
            let other = put(&store, b"other").await;
            assert!(store.clone_chunk(&h.id, other.id).await.is_err());
            store.verify(&other.id).await.unwrap();
        }
        // A missing source is reported as such; a corrupt one as corrupt.
        assert!(matches!(
            store
                .clone_chunk(&ChunkId::random(), ChunkId::random())
                .await,
            Err(Error::NoSuchChunk(_))
        ));
        let h = put(&store, &b"y".repeat(100_000)).await;
        let path = store.path_of(&h.id);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let to = ChunkId::random();
        assert!(matches!(
            store.clone_chunk(&h.id, to).await,
            Err(Error::Corrupt { chunk, .. }) if chunk == h.id
        ));
        assert!(!store.contains(&to));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn bad_crc_or_short_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 0).unwrap();
        let (mut h, stored) = chunk::encode(ChunkId::random(), Bytes::from(vec![7u8; 5000]));
        h.stored_crc ^= 1;
        let mut w = store.create(&h).await.unwrap();
        w.write(stored.clone()).await.unwrap();
        assert!(matches!(store.commit(w).await, Err(Error::Corrupt { .. })));
        let w = store.create(&h).await.unwrap();
        drop(w);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        assert!(!store.contains(&h.id));
    }

    #[tokio::test]
    async fn a_store_whose_directory_goes_or_is_replaced_is_failed_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = ChunkStore::open(&data, 0).unwrap();
        put(&store, b"before").await;
        assert_eq!(store.probe(), None);
        assert_eq!(store.stats().failed, None);
        std::fs::remove_dir_all(&data).unwrap();
        let why = store.probe().expect("a gone directory is found");
        assert!(why.contains("gone"), "{why}");
        assert_eq!(store.stats().failed.as_deref(), Some(why.as_str()));
        let (h, _) = chunk::encode(ChunkId::random(), Bytes::from_static(b"after"));
        assert!(matches!(store.create(&h).await, Err(Error::StoreFailed(_))));
        // The same path made again is another directory: still failed.
        std::fs::create_dir_all(data.join("chunks")).unwrap();
        std::fs::create_dir_all(data.join("tmp")).unwrap();
        assert!(
            store.probe().is_some(),
            "a recreated directory is not the store"
        );
    }

    #[tokio::test]
    async fn flipped_byte_on_disk_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 0).unwrap();
        let h = put(&store, &b"hello".repeat(10_000)).await;
        let p = store.path_of(&h.id);
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0x55;
        std::fs::write(&p, bytes).unwrap();
        assert!(matches!(
            store.verify(&h.id).await,
            Err(Error::Corrupt { .. })
        ));
        store.quarantine(&h.id, "test").await;
        assert!(!store.contains(&h.id));
        // Truncated file: caught by the header/length check.
        let h2 = put(&store, b"abc").await;
        let p2 = store.path_of(&h2.id);
        let len = std::fs::metadata(&p2).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p2)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        assert!(matches!(
            store.open_chunk(&h2.id).await,
            Err(Error::Corrupt { .. })
        ));
    }
}
