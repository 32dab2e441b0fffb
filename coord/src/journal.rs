//! Durability of the catalog: a snapshot plus an append-only journal, both
//! stamped with the cluster's identity.
//!
//! ```text
//! catalog.snap   "DFSSNAP2" | crc32(body): u32 LE | body
//!                body = section*, section = len: u32 LE | bytes, ended by len 0
//!                sections: postcard(SnapMeta { format: 2, cluster, last_seq }),
//!                          postcard(Catalog without files), then batches of
//!                          postcard(Vec<(FileName, FileEntry)>) in name order
//! journal.log    "DFSJRNL2" | cluster: [u8; 16] | crc32(magic | cluster): u32 LE | entry*
//!                entry = len: u32 LE | crc32(payload): u32 LE | payload
//!                payload = postcard((seq: u64, Record))
//! journal-<seq>.old   a journal rotated out at record <seq>, kept until a
//!                snapshot covering it is durable
//! ```
//!
//! **Snapshots never stop the catalog.** When one is due, the writer rotates
//! the journal (records after `seq` go to a fresh `journal.log`) and a
//! background thread writes the catalog a batch of files at a time, taking
//! the catalog lock for one batch only: a *fuzzy* snapshot, as ZooKeeper's.
//! It is correct because every record is idempotent given the order: a
//! snapshot that already reflects some records after `seq` reaches the same
//! state when all of them are replayed again on top of it (the last record
//! touching each file, holder or node decides). Loading replays the
//! snapshot, then every rotated journal and `journal.log`, skipping records
//! at or below the snapshot's `seq`.
//!
//! A change is acknowledged only after its entry is written and the journal
//! fsynced. Replay applies the snapshot, then every entry with a sequence
//! number above the snapshot's.
//!
//! **Damage is never silent.** Only a torn *final* entry (a crash in the
//! middle of an append: nothing valid follows it) is truncated. A bad entry
//! followed by valid ones is corruption of acknowledged history: the
//! coordinator refuses to start, naming the offset, unless the operator
//! chose `--recover` (keep every valid entry on both sides of the damage,
//! move the damaged journal aside, write a fresh snapshot) or `--read-only`
//! (the same in memory, writing nothing). Records lost in the damage leave
//! chunks the catalog no longer knows; nodes set those aside and nothing is
//! deleted before the orphan grace period.
//!
//! Snapshots are written to a temp file, fsynced and renamed, never
//! rewritten in place; the journal is then replaced by an empty one the same
//! way. A data directory of the round-1 format (`DFSSNAP1`, journal without
//! header) is loaded through `legacy.rs` and rewritten in this format with a
//! new cluster id.

use crate::catalog::{Catalog, Record};
use crate::error::{Error, Result};
use crate::legacy;
use directio::fsutil::{create_dir_durably, write_atomic};
use protocol::ClusterId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SNAP_MAGIC: &[u8; 8] = b"DFSSNAP2";
const SNAP_MAGIC_V1: &[u8; 8] = b"DFSSNAP1";
const LOG_MAGIC: &[u8; 8] = b"DFSJRNL2";
const LOCK_FILE: &str = "coord.lock";
/// How long an open waits for another holder of the directory lock.
const LOCK_WAIT: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_millis(200)
} else {
    std::time::Duration::from_secs(10)
};
/// Magic, cluster id, CRC of both.
const LOG_HEADER_LEN: usize = 8 + 16 + 4;
/// Version of the catalog's on-disk format written by this code.
pub const FORMAT: u32 = 2;
const SNAP_FILE: &str = "catalog.snap";
const LOG_FILE: &str = "journal.log";
/// No single record comes near this; a larger length is a torn write.
const MAX_ENTRY_LEN: u32 = 64 * 1024 * 1024;

/// First section of a snapshot.
#[derive(Serialize, Deserialize)]
struct SnapMeta {
    format: u32,
    cluster: ClusterId,
    last_seq: u64,
}

/// Files per snapshot batch: the catalog lock is held for one batch.
pub const SNAP_BATCH: usize = 1024;
/// A snapshot section larger than this is corruption.
const MAX_SECTION: u32 = 256 * 1024 * 1024;

/// Where a snapshot's contents come from.
pub trait SnapshotSource {
    /// The catalog without its files ([`Catalog::head_bytes`]).
    fn head(&mut self) -> Result<Vec<u8>>;
    /// The next batch ([`Catalog::batch_bytes`]).
    fn batch(
        &mut self,
        after: Option<&protocol::FileName>,
    ) -> Result<Option<(Vec<u8>, protocol::FileName)>>;
}

impl SnapshotSource for &mut Catalog {
    fn head(&mut self) -> Result<Vec<u8>> {
        self.head_bytes()
            .map_err(|e| Error::Journal(format!("encode snapshot: {e}")))
    }
    fn batch(
        &mut self,
        after: Option<&protocol::FileName>,
    ) -> Result<Option<(Vec<u8>, protocol::FileName)>> {
        self.batch_bytes(after, SNAP_BATCH)
            .map_err(|e| Error::Journal(format!("encode snapshot: {e}")))
    }
}

/// Writes a snapshot of `src` taken as of record `last_seq` (see the module
/// comment for why a source that changes meanwhile is fine): temp file,
/// fsync, rename, directory fsync. Returns its size.
pub fn write_snapshot(
    dir: &Path,
    cluster: ClusterId,
    last_seq: u64,
    src: impl SnapshotSource,
) -> Result<u64> {
    write_snapshot_as(dir, SNAP_FILE, cluster, last_seq, src)
}

/// [`write_snapshot`] under another file name (a coordinator group keeps
/// its snapshot as `group.snap`, beside the engine's metadata).
pub(crate) fn write_snapshot_as(
    dir: &Path,
    file_name: &str,
    cluster: ClusterId,
    last_seq: u64,
    mut src: impl SnapshotSource,
) -> Result<u64> {
    use std::io::{Seek, SeekFrom};
    let tmp = dir.join(format!("{file_name}.tmp"));
    let res = (|| -> Result<u64> {
        let file = File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        w.write_all(SNAP_MAGIC)?;
        w.write_all(&[0; 4])?;
        let mut crc = crc32fast::Hasher::new();
        let mut len = 12u64;
        let mut section = |w: &mut std::io::BufWriter<File>, bytes: &[u8]| -> Result<()> {
            let l = (bytes.len() as u32).to_le_bytes();
            crc.update(&l);
            crc.update(bytes);
            w.write_all(&l)?;
            w.write_all(bytes)?;
            len += 4 + bytes.len() as u64;
            Ok(())
        };
        let meta = postcard::to_allocvec(&SnapMeta {
            format: FORMAT,
            cluster,
            last_seq,
        })
        .map_err(|e| Error::Journal(format!("encode snapshot: {e}")))?;
        section(&mut w, &meta)?;
        section(&mut w, &src.head()?)?;
        let mut after = None;
        while let Some((bytes, last)) = src.batch(after.as_ref())? {
            section(&mut w, &bytes)?;
            after = Some(last);
        }
        section(&mut w, &[])?;
        let mut file = w.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(8))?;
        file.write_all(&crc.finalize().to_le_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(file_name))?;
        File::open(dir)?.sync_all()?;
        Ok(len)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Rotated journals in `dir`, oldest first, with the sequence number they
/// were rotated at.
fn rotated(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("journal-"))
            .and_then(|n| n.strip_suffix(".old"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, e.path()));
    }
    out.sort();
    Ok(out)
}

/// Deletes rotated journals a durable snapshot at `seq` covers.
pub fn drop_rotated(dir: &Path, seq: u64) -> Result<()> {
    let mut any = false;
    for (s, p) in rotated(dir)? {
        if s <= seq {
            std::fs::remove_file(p)?;
            any = true;
        }
    }
    if any {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// How to open the journal.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenMode {
    /// Keep the valid records on both sides of a damaged entry and rewrite
    /// the journal (the damaged one is kept beside it).
    pub recover: bool,
    /// Load whatever is valid and write nothing, ever.
    pub read_only: bool,
}

/// A damaged stretch found in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the first bad entry.
    pub offset: u64,
    /// Offset of the next valid entry.
    pub resumes_at: u64,
    /// Last sequence number before the damage, first one after it.
    pub seq_before: u64,
    pub seq_after: u64,
}

/// The open journal. Owned by one writer task, so appends are serialised.
pub struct Journal {
    dir: PathBuf,
    log: Option<File>,
    len: u64,
    seq: u64,
    cluster: ClusterId,
    since_snapshot: u64,
    snapshot_every: u64,
    /// Set when a failed append could not be rolled back: every later append
    /// is refused rather than written after garbage that replay would stop at.
    broken: Option<String>,
    /// Whether this cluster was created by this open (empty directory).
    created: bool,
    /// The directory's lock (see [`lock_dir`]), shared with a snapshot in
    /// progress so that it outlives this journal until the snapshot ends.
    lock: Option<Arc<File>>,
}

/// Locks the coordinator's data directory (`coord.lock`, an advisory
/// `flock`): exclusive for a writing coordinator, shared for `--read-only`.
///
/// Two coordinators writing one catalog would interleave journals, and
/// one loading while the other finishes a snapshot could read the old
/// snapshot yet miss the rotated journal the new one replaced (acknowledged
/// files lost). A predecessor in the same process may still be finishing a
/// snapshot, so a held lock is waited for a few seconds before refusing.
pub(crate) fn lock_dir(dir: &Path, read_only: bool) -> Result<Option<Arc<File>>> {
    let path = dir.join(LOCK_FILE);
    let file = match OpenOptions::new()
        .read(true)
        .write(!read_only)
        .create(!read_only)
        .truncate(false)
        .open(&path)
    {
        Ok(f) => f,
        // A read-only look at a directory that never had a writer.
        Err(e) if read_only && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut said = false;
    loop {
        let res = if read_only {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match res {
            Ok(()) => return Ok(Some(Arc::new(file))),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                // Say so at once: an operator who started a second
                // coordinator by mistake should not stare at silence.
                if !said {
                    tracing::warn!(
                        "{} is locked by another coordinator; waiting up to {} s for it (a snapshot may be finishing), then refusing",
                        path.display(),
                        LOCK_WAIT.as_secs_f64()
                    );
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Journal(format!(
                    "{} is in use by another coordinator ({} is locked); refusing to run two coordinators on one catalog",
                    dir.display(),
                    path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

impl Journal {
    /// Loads the catalog from disk (snapshot, then journal) and opens the
    /// journal for appending. An empty directory creates a new cluster.
    pub fn open(dir: &Path, snapshot_every: u64, mode: OpenMode) -> Result<(Journal, Catalog)> {
        if !mode.read_only {
            create_dir_durably(dir)?;
        }
        let lock = lock_dir(dir, mode.read_only)?;
        let snap = match File::open(dir.join(SNAP_FILE)) {
            Ok(file) => Some(read_snapshot(file)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let log_path = dir.join(LOG_FILE);
        let bytes = match std::fs::read(&log_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let log_v2 = bytes.starts_with(LOG_MAGIC);
        let log_cluster = if log_v2 {
            Some(read_log_header(&bytes)?)
        } else {
            None
        };
        let (mut catalog, snap_seq, snap_cluster, legacy) = match snap {
            Some(Loaded::V2 {
                catalog,
                last_seq,
                cluster,
            }) => (catalog, last_seq, Some(cluster), false),
            Some(Loaded::V1(s)) => (s.catalog.into_current(), s.last_seq, None, true),
            None => (Catalog::default(), 0, None, !log_v2 && !bytes.is_empty()),
        };
        if legacy && log_v2 {
            return Err(Error::Journal(
                "catalog.snap is of the old format but journal.log of the new one: not one catalog"
                    .into(),
            ));
        }
        let cluster = match (snap_cluster, log_cluster) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::Journal(format!(
                    "catalog.snap belongs to cluster {a} but journal.log to cluster {b}: not one catalog"
                )))
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => ClusterId::random(),
        };
        let olds = rotated(dir)?;
        let created = snap_cluster.is_none() && log_cluster.is_none() && !legacy && olds.is_empty();
        // Journals rotated out for a snapshot that never completed.
        let mut snap_seq = snap_seq;
        let mut old_replayed = 0;
        for (_, path) in &olds {
            let b = std::fs::read(path)?;
            if read_log_header(&b)? != cluster {
                return Err(Error::Journal(format!(
                    "{} belongs to another cluster than catalog.snap",
                    path.display()
                )));
            }
            let r = replay::<Record>(&b, LOG_HEADER_LEN, snap_seq, &mut |r| {
                catalog.apply(&r);
            });
            if r.damage.is_some() || r.valid_end < b.len() {
                let msg = format!(
                    "{} is damaged at byte offset {}",
                    path.display(),
                    r.damage
                        .as_ref()
                        .map(|d| d.offset as usize)
                        .unwrap_or(r.valid_end)
                );
                if !mode.recover && !mode.read_only {
                    return Err(Error::Journal(format!(
                        "{msg}. Refusing to start rather than drop acknowledged records. Options: `dfs-sim coord --recover` or `--read-only`"
                    )));
                }
                tracing::error!("{msg}; continuing past the damage");
            }
            snap_seq = r.seq;
            old_replayed += r.replayed;
        }
        let start = if log_v2 { LOG_HEADER_LEN } else { 0 };
        let replay = if legacy {
            replay::<legacy::RecordV1>(&bytes, start, snap_seq, &mut |r| {
                catalog.apply(&r.into_current());
            })
        } else {
            replay::<Record>(&bytes, start, snap_seq, &mut |r| {
                catalog.apply(&r);
            })
        };
        let Replay {
            seq,
            replayed,
            valid_end,
            damage,
        } = replay;
        // No reindex here: the snapshot loaders index what they load and
        // `apply` keeps the index as it replays.
        if let Some(d) = &damage {
            let lost = d.seq_after.saturating_sub(d.seq_before + 1);
            let msg = format!(
                "journal.log in {} is damaged at byte offset {} (after record {}); valid records follow from offset {} (record {}), so this is not a torn write: {} acknowledged record(s) are unreadable",
                dir.display(),
                d.offset,
                d.seq_before,
                d.resumes_at,
                d.seq_after,
                lost
            );
            if !mode.recover && !mode.read_only {
                return Err(Error::Journal(format!(
                    "{msg}. Refusing to start rather than drop them. Options: `dfs-sim coord --recover` keeps every valid record (the damaged journal is kept as journal.log.damaged-*), or `--read-only` serves what is readable and changes nothing"
                )));
            }
            tracing::error!(
                "{msg}; continuing past the damage ({})",
                if mode.recover {
                    "--recover"
                } else {
                    "--read-only"
                }
            );
        }
        let mut journal = Journal {
            dir: dir.to_path_buf(),
            log: None,
            len: valid_end as u64,
            seq,
            cluster,
            since_snapshot: replayed + old_replayed,
            snapshot_every: snapshot_every.max(1),
            broken: None,
            created,
            lock,
        };
        if mode.read_only {
            journal.broken = Some("the coordinator runs --read-only".into());
            tracing::warn!(files = catalog.files().len(), %cluster, "catalog loaded read-only");
            return Ok((journal, catalog));
        }
        if damage.is_some() || legacy || created || !log_v2 {
            if damage.is_some() {
                let aside = dir.join(format!("{LOG_FILE}.damaged-{}", protocol::token::now_ms()));
                std::fs::rename(&log_path, &aside)?;
                tracing::warn!(kept = %aside.display(), "damaged journal moved aside");
            }
            if legacy {
                tracing::warn!(%cluster, "upgrading a round-1 catalog to format {FORMAT}; this coordinator's cluster id is new, nodes adopt it");
            }
            if created {
                tracing::info!(%cluster, dir = %dir.display(), "new cluster created");
            }
            journal.snapshot(&mut catalog)?;
        } else {
            if valid_end < bytes.len() {
                tracing::warn!(
                    at = valid_end,
                    dropped = bytes.len() - valid_end,
                    "journal has a torn final entry (crash during append); truncating it"
                );
            }
            let log = OpenOptions::new().read(true).append(true).open(&log_path)?;
            if valid_end < bytes.len() {
                log.set_len(valid_end as u64)?;
                log.sync_all()?;
            }
            journal.log = Some(log);
        }
        tracing::info!(
            files = catalog.files().len(),
            snapshot_seq = snap_seq,
            replayed,
            %cluster,
            "catalog loaded"
        );
        Ok((journal, catalog))
    }

    pub fn cluster(&self) -> ClusterId {
        self.cluster
    }

    /// Sequence number of the last durable record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether this open created the cluster (its directory was empty).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Appends records and fsyncs: once this returns `Ok`, they survive a
    /// crash. On error nothing of the batch remains in the journal.
    pub fn append(&mut self, records: &[Record]) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(Error::Journal(format!("journal unusable: {why}")));
        }
        let Some(log) = self.log.as_mut() else {
            return Err(Error::Journal("journal not open".into()));
        };
        let mut buf = Vec::new();
        let mut seq = self.seq;
        for r in records {
            seq += 1;
            let payload = postcard::to_allocvec(&(seq, r))
                .map_err(|e| Error::Journal(format!("encode: {e}")))?;
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            buf.extend_from_slice(&payload);
        }
        let res = log.write_all(&buf).and_then(|_| log.sync_data());
        if let Err(e) = res {
            if let Err(e2) = log.set_len(self.len).and_then(|_| log.sync_all()) {
                self.broken = Some(format!("{e}; rollback failed: {e2}"));
            }
            return Err(Error::Journal(format!("append failed: {e}")));
        }
        self.len += buf.len() as u64;
        self.seq = seq;
        self.since_snapshot += records.len() as u64;
        Ok(())
    }

    /// Whether a snapshot is due: after `snapshot_every` records, and never
    /// more often than one record per four files in the catalog, so that
    /// the cost of snapshots per record stays constant however large the
    /// catalog, and a restart replays at most a quarter as many records as
    /// there are files. (One record per *file* was never reached by a
    /// catalog that only grows after a restart: the records replayed at
    /// open are fewer than the files, and each put adds one of each.)
    pub fn needs_snapshot(&self, files: usize) -> bool {
        self.since_snapshot >= self.snapshot_every.max(files as u64 / 4) && self.broken.is_none()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory lock, for a background snapshot to hold while it runs.
    pub fn lock_handle(&self) -> Option<Arc<File>> {
        self.lock.clone()
    }

    /// Starts a fresh `journal.log` for the records after the current one
    /// and keeps the old one as `journal-<seq>.old` until a snapshot at
    /// `seq` is durable ([`write_snapshot`], then [`drop_rotated`]).
    /// Returns `seq`.
    pub fn rotate(&mut self) -> Result<u64> {
        let old = self.dir.join(format!("journal-{:020}.old", self.seq));
        std::fs::rename(self.dir.join(LOG_FILE), &old)?;
        write_atomic(&self.dir, LOG_FILE, &log_header(self.cluster))?;
        self.log = Some(
            OpenOptions::new()
                .read(true)
                .append(true)
                .open(self.dir.join(LOG_FILE))?,
        );
        self.len = LOG_HEADER_LEN as u64;
        self.since_snapshot = 0;
        Ok(self.seq)
    }

    /// Writes `catalog` (which must reflect every appended record) as the new
    /// snapshot and starts an empty journal. Used at open; a running
    /// coordinator rotates and writes fuzzy snapshots instead.
    pub fn snapshot(&mut self, catalog: &mut Catalog) -> Result<()> {
        let bytes = write_snapshot(&self.dir, self.cluster, self.seq, catalog)?;
        write_atomic(&self.dir, LOG_FILE, &log_header(self.cluster))?;
        drop_rotated(&self.dir, u64::MAX)?;
        self.log = Some(
            OpenOptions::new()
                .read(true)
                .append(true)
                .open(self.dir.join(LOG_FILE))?,
        );
        self.len = LOG_HEADER_LEN as u64;
        self.since_snapshot = 0;
        self.broken = None;
        tracing::info!(seq = self.seq, bytes, "catalog snapshot written");
        Ok(())
    }
}

/// Reads a snapshot written by [`write_snapshot_as`] (a group's, or one
/// received from its leader): the catalog, the record it was taken at and
/// its cluster.
pub(crate) fn read_group_snapshot(r: impl std::io::Read) -> Result<(Catalog, u64, ClusterId)> {
    match read_snapshot(r)? {
        Loaded::V2 {
            catalog,
            last_seq,
            cluster,
        } => Ok((catalog, last_seq, cluster)),
        Loaded::V1(_) => Err(Error::Journal(
            "a round-1 snapshot cannot be a group's snapshot".into(),
        )),
    }
}

enum Loaded {
    V2 {
        catalog: Catalog,
        last_seq: u64,
        cluster: ClusterId,
    },
    V1(legacy::SnapshotV1),
}

/// Reads a snapshot a section at a time (memory bounded by one batch, not
/// by the catalog), checking the CRC of the whole body at the end: a
/// catalog built from a corrupt file is dropped before anyone sees it.
fn read_snapshot(file: impl std::io::Read) -> Result<Loaded> {
    use std::io::Read;
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    let mut head = [0u8; 12];
    let short = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::Journal("catalog.snap: cut short".into()),
        _ => Error::Io(e),
    };
    r.read_exact(&mut head).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::Journal("catalog.snap: bad magic".into()),
        _ => Error::Io(e),
    })?;
    let v1 = head.starts_with(SNAP_MAGIC_V1);
    if !(v1 || head.starts_with(SNAP_MAGIC)) {
        return Err(Error::Journal("catalog.snap: bad magic".into()));
    }
    let want = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let checksum = || {
        Error::Journal(
            "catalog.snap: checksum mismatch (refusing to start on a corrupt catalog)".into(),
        )
    };
    let bad = |e: postcard::Error| Error::Journal(format!("catalog.snap: {e}"));
    if v1 {
        let mut body = Vec::new();
        r.read_to_end(&mut body)?;
        if crc32fast::hash(&body) != want {
            return Err(checksum());
        }
        return Ok(Loaded::V1(postcard::from_bytes(&body).map_err(bad)?));
    }
    let mut crc = crc32fast::Hasher::new();
    let mut buf = Vec::new();
    // The next section into `buf`; `false` at the empty end marker.
    let mut next = |r: &mut std::io::BufReader<_>, buf: &mut Vec<u8>| -> Result<bool> {
        let mut l = [0u8; 4];
        r.read_exact(&mut l).map_err(short)?;
        crc.update(&l);
        let len = u32::from_le_bytes(l);
        if len > MAX_SECTION {
            return Err(Error::Journal("catalog.snap: section too large".into()));
        }
        buf.clear();
        buf.resize(len as usize, 0);
        r.read_exact(buf).map_err(short)?;
        crc.update(buf);
        Ok(len > 0)
    };
    let mut decode = || -> Result<(SnapMeta, Catalog)> {
        next(&mut r, &mut buf)?;
        let meta: SnapMeta = postcard::from_bytes(&buf).map_err(bad)?;
        if meta.format != FORMAT {
            return Err(Error::Journal(format!(
                "catalog.snap is of format {}, this version reads {FORMAT}",
                meta.format
            )));
        }
        next(&mut r, &mut buf)?;
        let mut catalog = Catalog::from_head(&buf).map_err(bad)?;
        while next(&mut r, &mut buf)? {
            catalog.load_batch(&buf).map_err(bad)?;
        }
        Ok((meta, catalog))
    };
    let res = decode();
    // Whatever went wrong, a checksum mismatch is the truer explanation.
    let mut rest = Vec::new();
    let trailing = r.read_to_end(&mut rest)?;
    crc.update(&rest);
    if crc.finalize() != want {
        return Err(checksum());
    }
    let (meta, mut catalog) = res?;
    if trailing > 0 {
        return Err(Error::Journal(
            "catalog.snap: bytes after the end marker".into(),
        ));
    }
    catalog.reindex();
    Ok(Loaded::V2 {
        catalog,
        last_seq: meta.last_seq,
        cluster: meta.cluster,
    })
}

fn log_header(cluster: ClusterId) -> Vec<u8> {
    let mut h = Vec::with_capacity(LOG_HEADER_LEN);
    h.extend_from_slice(LOG_MAGIC);
    h.extend_from_slice(&cluster.0);
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

fn read_log_header(bytes: &[u8]) -> Result<ClusterId> {
    let h = bytes
        .get(..LOG_HEADER_LEN)
        .ok_or_else(|| Error::Journal("journal.log: header cut short".into()))?;
    let crc = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
    if crc32fast::hash(&h[..24]) != crc {
        return Err(Error::Journal(
            "journal.log: header checksum mismatch (refusing to guess its cluster)".into(),
        ));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[8..24]);
    Ok(ClusterId(id))
}

struct Replay {
    seq: u64,
    replayed: u64,
    /// End of the last valid entry: where appends continue.
    valid_end: usize,
    damage: Option<Damage>,
}

/// Applies every valid entry above `seq`, classifying a bad entry as a torn
/// tail (nothing valid after it) or damage (valid entries follow; replay
/// continues with them, and the caller decides whether that is allowed).
fn replay<R: DeserializeOwned>(
    bytes: &[u8],
    start: usize,
    mut seq: u64,
    apply: &mut dyn FnMut(R),
) -> Replay {
    let mut pos = start;
    let mut replayed = 0;
    let mut damage = None;
    loop {
        match parse_entry::<R>(bytes, pos) {
            Some((entry_seq, record, next)) => {
                if entry_seq > seq {
                    apply(record);
                    seq = entry_seq;
                    replayed += 1;
                }
                pos = next;
            }
            None if pos >= bytes.len() => break,
            None => match next_valid::<R>(bytes, pos + 1, seq) {
                Some((q, after)) => {
                    damage.get_or_insert(Damage {
                        offset: pos as u64,
                        resumes_at: q as u64,
                        seq_before: seq,
                        seq_after: after,
                    });
                    pos = q;
                }
                None => break,
            },
        }
    }
    Replay {
        seq,
        replayed,
        valid_end: pos.min(bytes.len()),
        damage,
    }
}

/// The first offset at or after `from` where a valid entry with a sequence
/// number above `seq` starts.
fn next_valid<R: DeserializeOwned>(bytes: &[u8], from: usize, seq: u64) -> Option<(usize, u64)> {
    (from..bytes.len().saturating_sub(8)).find_map(|q| match parse_entry::<R>(bytes, q) {
        Some((s, _, _)) if s > seq => Some((q, s)),
        _ => None,
    })
}

fn parse_entry<R: DeserializeOwned>(bytes: &[u8], pos: usize) -> Option<(u64, R, usize)> {
    let hdr = bytes.get(pos..pos + 8)?;
    let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let crc = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    if len > MAX_ENTRY_LEN || len == 0 {
        return None;
    }
    let payload = bytes.get(pos + 8..pos + 8 + len as usize)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let (seq, record): (u64, R) = postcard::from_bytes(payload).ok()?;
    Some((seq, record, pos + 8 + len as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{FileName, NodeId};

    fn rec(i: u32) -> Record {
        Record::NodeAddr {
            id: NodeId::new(&format!("n{i}")).unwrap(),
            addr: format!("127.0.0.1:{i}"),
        }
    }

    fn open(dir: &Path, every: u64) -> Result<(Journal, Catalog)> {
        Journal::open(dir, every, OpenMode::default())
    }

    /// Appends `n` records one by one (one entry each), no snapshots.
    fn fill(dir: &Path, n: u32) -> ClusterId {
        let (mut j, _) = open(dir, 1_000_000).unwrap();
        for i in 0..n {
            j.append(&[rec(i)]).unwrap();
        }
        j.cluster()
    }

    #[test]
    fn replay_snapshot_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = {
            let (mut j, mut cat) = open(dir.path(), 3).unwrap();
            assert!(j.created());
            for i in 0..5 {
                j.append(&[rec(i)]).unwrap();
                cat.apply(&rec(i));
                if j.needs_snapshot(0) {
                    j.snapshot(&mut cat).unwrap();
                }
            }
            j.cluster()
        };
        // A torn append: half an entry at the end.
        let log = dir.path().join(LOG_FILE);
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (mut j, cat) = open(dir.path(), 3).unwrap();
        assert!(!j.created());
        assert_eq!(j.cluster(), cluster, "the cluster id survives restarts");
        assert_eq!(cat.node_addrs().len(), 5);
        // Appending after the truncated tail still replays.
        j.append(&[Record::RemoveFile {
            name: FileName::new("nope").unwrap(),
        }])
        .unwrap();
        j.append(&[rec(9)]).unwrap();
        drop(j);
        let (_, cat) = open(dir.path(), 3).unwrap();
        assert_eq!(cat.node_addrs().len(), 6);
    }

    #[test]
    fn a_torn_final_entry_with_full_length_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 4);
        let log = dir.path().join(LOG_FILE);
        let mut b = std::fs::read(&log).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0x10; // the last entry's payload, nothing after it
        std::fs::write(&log, &b).unwrap();
        let (_, cat) = open(dir.path(), 1_000_000).unwrap();
        assert_eq!(cat.node_addrs().len(), 3);
    }

    #[test]
    fn a_flipped_bit_mid_journal_stops_the_coordinator() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 10);
        let log = dir.path().join(LOG_FILE);
        let good = std::fs::read(&log).unwrap();
        let mut b = good.clone();
        let mid = LOG_HEADER_LEN + (b.len() - LOG_HEADER_LEN) / 2;
        b[mid] ^= 0x04;
        std::fs::write(&log, &b).unwrap();
        let err = open(dir.path(), 1_000_000).err().unwrap().to_string();
        assert!(err.contains("damaged at byte offset"), "{err}");
        assert!(err.contains("--recover"), "{err}");
        // Nothing was truncated or rewritten.
        assert_eq!(std::fs::read(&log).unwrap(), b);
        // Read-only: every valid record on both sides, nothing written.
        let (mut j, cat) = Journal::open(
            dir.path(),
            1_000_000,
            OpenMode {
                read_only: true,
                recover: false,
            },
        )
        .unwrap();
        assert_eq!(cat.node_addrs().len(), 9);
        assert!(j.append(&[rec(50)]).is_err());
        assert_eq!(std::fs::read(&log).unwrap(), b);
        drop(j);
        // Recover: the same records, a clean journal, the damaged one kept.
        let (mut j, cat) = Journal::open(
            dir.path(),
            1_000_000,
            OpenMode {
                recover: true,
                read_only: false,
            },
        )
        .unwrap();
        assert_eq!(cat.node_addrs().len(), 9);
        j.append(&[rec(77)]).unwrap();
        drop(j);
        let kept = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("journal.log.damaged-")
            })
            .count();
        assert_eq!(kept, 1);
        let (_, cat) = open(dir.path(), 1_000_000).unwrap();
        assert_eq!(cat.node_addrs().len(), 10);
    }

    #[test]
    fn a_flipped_length_is_damage_too() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 6);
        let log = dir.path().join(LOG_FILE);
        let mut b = std::fs::read(&log).unwrap();
        // The second entry's length field: now promises far more than the file.
        let first_len =
            u32::from_le_bytes(b[LOG_HEADER_LEN..LOG_HEADER_LEN + 4].try_into().unwrap()) as usize;
        let second = LOG_HEADER_LEN + 8 + first_len;
        b[second + 2] ^= 0x40;
        std::fs::write(&log, &b).unwrap();
        assert!(open(dir.path(), 1_000_000).is_err());
    }

    #[test]
    fn corrupt_snapshot_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut j, mut cat) = open(dir.path(), 1).unwrap();
            j.snapshot(&mut cat).unwrap();
        }
        let p = dir.path().join(SNAP_FILE);
        let mut b = std::fs::read(&p).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(&p, b).unwrap();
        assert!(open(dir.path(), 1).is_err());
    }

    fn put(i: u32) -> Record {
        use crate::catalog::{ChunkEntry, FileEntry, StripeEntry};
        let mut e = FileEntry {
            size: 10,
            created_ms: i as u64,
            chunk_size: 10,
            replication: 1,
            scheme: protocol::Scheme::None,
            stripes: Vec::new(),
            attrs: Default::default(),
        };
        e.stripes.push(StripeEntry {
            data: vec![ChunkEntry {
                header: protocol::ChunkHeader {
                    id: protocol::ChunkId::random(),
                    raw_len: 10,
                    raw_sha256: [0; 32],
                    codec: protocol::Codec::Raw,
                    stored_len: 10,
                    stored_crc: 0,
                },
                nodes: vec![NodeId::new("n1").unwrap()],
            }],
            parity: Vec::new(),
        });
        Record::PutFile {
            name: FileName::new(&format!("f/{i:05}")).unwrap(),
            entry: e,
        }
    }

    #[test]
    fn fuzzy_snapshots_replay_to_the_same_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut cat) = open(dir.path(), 1_000_000).unwrap();
        let apply = |j: &mut Journal, cat: &mut Catalog, r: Record| {
            j.append(std::slice::from_ref(&r)).unwrap();
            cat.apply(&r);
        };
        for b in 0..30 {
            let batch: Vec<Record> = (b * 100..(b + 1) * 100).map(put).collect();
            j.append(&batch).unwrap();
            for r in &batch {
                cat.apply(r);
            }
        }
        let seq = j.rotate().unwrap();
        // Records after the rotation, some already in the catalog when the
        // snapshot reads it (fuzzy), some replacing or removing files.
        for i in 0..50 {
            apply(&mut j, &mut cat, put(i * 3));
        }
        apply(
            &mut j,
            &mut cat,
            Record::RemoveFile {
                name: FileName::new("f/00007").unwrap(),
            },
        );
        write_snapshot(dir.path(), j.cluster(), seq, &mut cat).unwrap();
        // More after the snapshot was taken.
        apply(&mut j, &mut cat, put(9999));
        let want = postcard::to_allocvec(&cat).unwrap();
        drop(j);
        // Crash before the rotated journal was dropped: replayed too.
        let (_, back) = open(dir.path(), 1_000_000).unwrap();
        assert_eq!(postcard::to_allocvec(&back).unwrap(), want);
        drop_rotated(dir.path(), seq).unwrap();
        assert!(rotated(dir.path()).unwrap().is_empty());
        let (_, back) = open(dir.path(), 1_000_000).unwrap();
        assert_eq!(postcard::to_allocvec(&back).unwrap(), want);
        assert_eq!(back.files().len(), 3000);
    }

    #[test]
    fn a_second_coordinator_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(dir.path(), 1_000_000).unwrap();
        let err = match open(dir.path(), 1_000_000) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a second writer opened a locked directory"),
        };
        assert!(err.contains("in use by another coordinator"), "{err}");
        let ro = OpenMode {
            read_only: true,
            recover: false,
        };
        assert!(Journal::open(dir.path(), 1_000_000, ro).is_err());
        // A snapshot in progress keeps the directory locked after the
        // journal is gone.
        let held = j.lock_handle();
        drop(j);
        assert!(open(dir.path(), 1_000_000).is_err());
        drop(held);
        let (_j, _) = open(dir.path(), 1_000_000).unwrap();
    }

    #[test]
    fn a_rotation_without_a_snapshot_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut cat) = open(dir.path(), 1_000_000).unwrap();
        for i in 0..10 {
            j.append(&[put(i)]).unwrap();
            cat.apply(&put(i));
        }
        j.rotate().unwrap();
        for i in 10..20 {
            j.append(&[put(i)]).unwrap();
        }
        j.rotate().unwrap();
        j.append(&[put(20)]).unwrap();
        drop(j);
        let (_, back) = open(dir.path(), 1_000_000).unwrap();
        assert_eq!(back.files().len(), 21);
    }

    /// The round-1 shapes, written here by hand so the test does not depend
    /// on today's types matching them.
    #[derive(Serialize)]
    struct V1Catalog {
        files: std::collections::BTreeMap<String, ()>,
        node_addrs: std::collections::BTreeMap<String, String>,
        draining: std::collections::BTreeSet<String>,
    }
    #[derive(Serialize)]
    struct V1Snap {
        last_seq: u64,
        catalog: V1Catalog,
    }
    #[derive(Serialize)]
    #[allow(dead_code)]
    enum V1Record {
        PutFile,
        RemoveFile { name: String },
        AddCopy,
        DropCopies,
        NodeAddr { id: String, addr: String },
    }

    #[test]
    fn a_round_one_directory_loads_and_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let mut addrs = std::collections::BTreeMap::new();
        addrs.insert("n1".to_string(), "127.0.0.1:1".to_string());
        let body = postcard::to_allocvec(&V1Snap {
            last_seq: 1,
            catalog: V1Catalog {
                files: Default::default(),
                node_addrs: addrs,
                draining: Default::default(),
            },
        })
        .unwrap();
        let mut snap = SNAP_MAGIC_V1.to_vec();
        snap.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        snap.extend_from_slice(&body);
        std::fs::write(dir.path().join(SNAP_FILE), snap).unwrap();
        let mut log = Vec::new();
        for (seq, i) in [(1u64, 1), (2, 2), (3, 3)] {
            let payload = postcard::to_allocvec(&(
                seq,
                V1Record::NodeAddr {
                    id: format!("n{i}"),
                    addr: format!("127.0.0.1:{i}0"),
                },
            ))
            .unwrap();
            log.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            log.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            log.extend_from_slice(&payload);
        }
        std::fs::write(dir.path().join(LOG_FILE), log).unwrap();
        let (j, cat) = open(dir.path(), 100).unwrap();
        // Record 1 is in the snapshot already; 2 and 3 are replayed.
        assert_eq!(cat.node_addrs().len(), 3);
        assert_eq!(cat.node_addrs()[&NodeId::new("n1").unwrap()], "127.0.0.1:1");
        let cluster = j.cluster();
        drop(j);
        assert!(std::fs::read(dir.path().join(SNAP_FILE))
            .unwrap()
            .starts_with(SNAP_MAGIC));
        let (j, cat) = open(dir.path(), 100).unwrap();
        assert_eq!(j.cluster(), cluster);
        assert_eq!(cat.node_addrs().len(), 3);
    }
}
