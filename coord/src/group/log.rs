//! The group's log: the journal of a replicated coordinator. Every member
//! appends the leader's entries here and fsyncs before answering, so an
//! entry a majority acknowledged survives any minority of crashes.
//!
//! ```text
//! raft.log    "DFSRAFT1" | frame*
//!             frame = len: u32 LE | crc32(payload): u32 LE | payload
//!             payload = postcard(Frame)
//! raft.vote   postcard(Vote), replaced atomically (temp, fsync, rename)
//! ```
//!
//! A `Truncate` frame removes entries from an index on (a follower's
//! uncommitted tail that the leader overwrote); `Purged` records the last
//! entry a durable snapshot covers; `Committed` the last entry known
//! committed, re-applied at start before the member serves. Purging rewrites the file (temp, fsync,
//! rename) with only the live entries, so it stays about one snapshot
//! interval long. Only a torn final frame is dropped at open; a bad frame
//! followed by good ones is refused, as the single journal does.

use super::types::{storage_error, Entry, LogId, StorageError, TypeConfig, Vote};
use crate::error::{Error, Result};
use directio::fsutil::write_atomic;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogId, RaftLogReader};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const MAGIC: &[u8; 8] = b"DFSRAFT1";
const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "raft.vote";
/// No entry comes near this (a batch is bounded by the frame limit).
const MAX_FRAME: u32 = 64 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
enum Frame {
    Entry(Entry),
    /// Entries at and after this index are gone.
    Truncate(u64),
    /// Entries up to this one are covered by a snapshot.
    Purged(LogId),
    /// The last entry known committed (written without its own fsync; the
    /// next append's fsync covers it): a restarted member re-applies its
    /// log up to here before it serves, so a leader that resumes after a
    /// crash never answers from its older snapshot.
    Committed(LogId),
}

struct Inner {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry>,
    purged: Option<LogId>,
    committed: Option<LogId>,
}

/// The log, shared by the engine's writer and its readers.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn frame_bytes(f: &Frame) -> Result<Vec<u8>> {
    let payload = postcard::to_allocvec(f).map_err(|e| Error::Group(format!("encode log: {e}")))?;
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

impl LogStore {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> Result<LogStore> {
        let path = dir.join(LOG_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut entries = BTreeMap::new();
        let mut purged = None;
        let mut committed = None;
        let mut good = 0usize;
        if !bytes.is_empty() {
            if !bytes.starts_with(MAGIC) {
                return Err(Error::Group(format!(
                    "{}: not a dfs-sim group log",
                    path.display()
                )));
            }
            let mut off = MAGIC.len();
            good = off;
            while off + 8 <= bytes.len() {
                let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap_or_default());
                let crc =
                    u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap_or_default());
                let end = off + 8 + len as usize;
                if len > MAX_FRAME || end > bytes.len() {
                    break;
                }
                let payload = &bytes[off + 8..end];
                let frame = (crc32fast::hash(payload) == crc)
                    .then(|| postcard::from_bytes::<Frame>(payload).ok())
                    .flatten();
                let Some(frame) = frame else {
                    if end < bytes.len() {
                        return Err(Error::Group(format!(
                            "{}: damaged entry at offset {off} followed by more entries (refusing to start; the other members hold the log: wipe this member's directory to rejoin by snapshot)",
                            path.display()
                        )));
                    }
                    break;
                };
                match frame {
                    Frame::Entry(e) => {
                        entries.insert(e.log_id.index, e);
                    }
                    Frame::Truncate(i) => {
                        entries.split_off(&i);
                    }
                    Frame::Purged(id) => {
                        entries = entries.split_off(&(id.index + 1));
                        purged = Some(id);
                    }
                    Frame::Committed(id) => committed = Some(id),
                }
                off = end;
                good = off;
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        if bytes.is_empty() {
            file.write_all(MAGIC)?;
            file.sync_all()?;
            File::open(dir)?.sync_all()?;
        } else if good < bytes.len() {
            tracing::warn!(
                dropped = bytes.len() - good,
                "group log: dropping a torn final entry"
            );
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                entries,
                purged,
                committed,
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the log has never held anything (a fresh member).
    pub fn is_empty(&self) -> bool {
        let g = self.lock();
        g.entries.is_empty() && g.purged.is_none()
    }

    fn write_frames(&self, frames: &[Frame]) -> Result<()> {
        let mut buf = Vec::new();
        for f in frames {
            buf.extend(frame_bytes(f)?);
        }
        let mut g = self.lock();
        g.file.write_all(&buf)?;
        g.file.sync_data()?;
        Ok(())
    }
}

/// Reads the vote, if one was ever saved.
pub fn read_vote(dir: &Path) -> Result<Option<Vote>> {
    match std::fs::read(dir.join(VOTE_FILE)) {
        Ok(b) => postcard::from_bytes(&b)
            .map(Some)
            .map_err(|e| Error::Group(format!("raft.vote: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry>, StorageError> {
        let g = self.lock();
        Ok(g.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> std::result::Result<LogState<TypeConfig>, StorageError> {
        let g = self.lock();
        let last = g
            .entries
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(g.purged);
        Ok(LogState {
            last_purged_log_id: g.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> std::result::Result<(), StorageError> {
        let dir = self.lock().dir.clone();
        let bytes = postcard::to_allocvec(vote).map_err(storage_error)?;
        tokio::task::spawn_blocking(move || write_atomic(&dir, VOTE_FILE, &bytes))
            .await
            .map_err(storage_error)?
            .map_err(storage_error)
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote>, StorageError> {
        let dir = self.lock().dir.clone();
        read_vote(&dir).map_err(storage_error)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> std::result::Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let frames: Vec<Frame> = entries.iter().cloned().map(Frame::Entry).collect();
        let me = self.clone();
        let res = tokio::task::spawn_blocking(move || me.write_frames(&frames))
            .await
            .map_err(storage_error)?;
        match res {
            Ok(()) => {
                let mut g = self.lock();
                for e in entries {
                    g.entries.insert(e.log_id.index, e);
                }
                drop(g);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                callback.log_io_completed(Err(std::io::Error::other(msg.clone())));
                Err(storage_error(msg))
            }
        }
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> std::result::Result<(), StorageError> {
        let Some(c) = committed else { return Ok(()) };
        let bytes = frame_bytes(&Frame::Committed(c)).map_err(storage_error)?;
        let mut g = self.lock();
        g.file.write_all(&bytes).map_err(storage_error)?;
        g.committed = Some(c);
        Ok(())
    }

    async fn read_committed(&mut self) -> std::result::Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn truncate(&mut self, log_id: LogId) -> std::result::Result<(), StorageError> {
        let me = self.clone();
        let index = log_id.index;
        tokio::task::spawn_blocking(move || me.write_frames(&[Frame::Truncate(index)]))
            .await
            .map_err(storage_error)?
            .map_err(storage_error)?;
        self.lock().entries.split_off(&index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> std::result::Result<(), StorageError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.rewrite_purged(log_id))
            .await
            .map_err(storage_error)?
            .map_err(storage_error)
    }
}

impl LogStore {
    /// Drops entries up to `log_id` and rewrites the file with the rest.
    fn rewrite_purged(&self, log_id: LogId) -> Result<()> {
        let mut g = self.lock();
        let rest = g.entries.split_off(&(log_id.index + 1));
        g.entries = rest;
        g.purged = Some(log_id);
        let mut bytes = MAGIC.to_vec();
        bytes.extend(frame_bytes(&Frame::Purged(log_id))?);
        if let Some(c) = g.committed {
            bytes.extend(frame_bytes(&Frame::Committed(c))?);
        }
        for e in g.entries.values() {
            bytes.extend(frame_bytes(&Frame::Entry(e.clone()))?);
        }
        let dir = g.dir.clone();
        write_atomic(&dir, LOG_FILE, &bytes)?;
        let mut file = OpenOptions::new().write(true).open(dir.join(LOG_FILE))?;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))?;
        g.file = file;
        Ok(())
    }
}
