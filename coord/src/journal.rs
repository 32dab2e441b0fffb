//! Durability of the catalog: a snapshot plus an append-only journal.
//!
//! ```text
//! catalog.snap   "DFSSNAP1" | crc32(body): u32 LE | body = postcard(Snapshot)
//! journal.log    entry*, entry = len: u32 LE | crc32(payload): u32 LE | payload
//!                payload = postcard((seq: u64, Record))
//! ```
//!
//! A change is acknowledged only after its entry is written and the journal
//! fsynced. Replay applies the snapshot, then every entry with a sequence
//! number above the snapshot's; it stops at the first torn or corrupt entry
//! (a crash mid-append) and truncates the journal there. Snapshots are
//! written to a temp file, fsynced and renamed, never rewritten in place;
//! the journal is then replaced by an empty one the same way.

use crate::catalog::{Catalog, Record};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const SNAP_MAGIC: &[u8; 8] = b"DFSSNAP1";
const SNAP_FILE: &str = "catalog.snap";
const LOG_FILE: &str = "journal.log";
/// No single record comes near this; a larger length is a torn write.
const MAX_ENTRY_LEN: u32 = 64 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    last_seq: u64,
    catalog: Catalog,
}

/// The open journal. Owned by one writer task, so appends are serialised.
pub struct Journal {
    dir: PathBuf,
    log: File,
    len: u64,
    seq: u64,
    since_snapshot: u64,
    snapshot_every: u64,
    /// Set when a failed append could not be rolled back: every later append
    /// is refused rather than written after garbage that replay would stop at.
    broken: Option<String>,
}

impl Journal {
    /// Loads the catalog from disk (snapshot, then journal) and opens the
    /// journal for appending.
    pub fn open(dir: &Path, snapshot_every: u64) -> Result<(Journal, Catalog)> {
        std::fs::create_dir_all(dir)?;
        let (mut catalog, snap_seq) = match std::fs::read(dir.join(SNAP_FILE)) {
            Ok(bytes) => read_snapshot(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Catalog::default(), 0),
            Err(e) => return Err(e.into()),
        };
        let log_path = dir.join(LOG_FILE);
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)?;
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes)?;
        let mut pos = 0usize;
        let mut seq = snap_seq;
        let mut replayed = 0u64;
        while let Some((entry_seq, record, next)) = parse_entry(&bytes, pos) {
            if entry_seq > seq {
                catalog.apply(&record);
                seq = entry_seq;
                replayed += 1;
            }
            pos = next;
        }
        if pos < bytes.len() {
            tracing::warn!(
                at = pos,
                dropped = bytes.len() - pos,
                "journal has a torn tail (crash during append); truncating"
            );
            log.set_len(pos as u64)?;
            log.sync_all()?;
        }
        catalog.reindex();
        tracing::info!(
            files = catalog.files.len(),
            snapshot_seq = snap_seq,
            replayed,
            "catalog loaded"
        );
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                log,
                len: pos as u64,
                seq,
                since_snapshot: replayed,
                snapshot_every: snapshot_every.max(1),
                broken: None,
            },
            catalog,
        ))
    }

    /// Appends records and fsyncs: once this returns `Ok`, they survive a
    /// crash. On error nothing of the batch remains in the journal.
    pub fn append(&mut self, records: &[Record]) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(Error::Journal(format!("journal unusable: {why}")));
        }
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
        let res = self.log.write_all(&buf).and_then(|_| self.log.sync_data());
        if let Err(e) = res {
            if let Err(e2) = self.log.set_len(self.len).and_then(|_| self.log.sync_all()) {
                self.broken = Some(format!("{e}; rollback failed: {e2}"));
            }
            return Err(Error::Journal(format!("append failed: {e}")));
        }
        self.len += buf.len() as u64;
        self.seq = seq;
        self.since_snapshot += records.len() as u64;
        Ok(())
    }

    pub fn needs_snapshot(&self) -> bool {
        self.since_snapshot >= self.snapshot_every
    }

    /// Writes `catalog` (which must reflect every appended record) as the new
    /// snapshot and starts an empty journal.
    pub fn snapshot(&mut self, catalog: &Catalog) -> Result<()> {
        let body = postcard::to_allocvec(&Snapshot {
            last_seq: self.seq,
            catalog: catalog.clone(),
        })
        .map_err(|e| Error::Journal(format!("encode snapshot: {e}")))?;
        let mut bytes = Vec::with_capacity(body.len() + 12);
        bytes.extend_from_slice(SNAP_MAGIC);
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        write_atomic(&self.dir, SNAP_FILE, &bytes)?;
        write_atomic(&self.dir, LOG_FILE, &[])?;
        self.log = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        self.len = 0;
        self.since_snapshot = 0;
        self.broken = None;
        tracing::info!(
            seq = self.seq,
            bytes = bytes.len(),
            "catalog snapshot written"
        );
        Ok(())
    }
}

fn read_snapshot(bytes: &[u8]) -> Result<(Catalog, u64)> {
    if bytes.len() < 12 || &bytes[..8] != SNAP_MAGIC {
        return Err(Error::Journal("catalog.snap: bad magic".into()));
    }
    let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let body = &bytes[12..];
    if crc32fast::hash(body) != crc {
        return Err(Error::Journal(
            "catalog.snap: checksum mismatch (refusing to start on a corrupt catalog)".into(),
        ));
    }
    let snap: Snapshot =
        postcard::from_bytes(body).map_err(|e| Error::Journal(format!("catalog.snap: {e}")))?;
    Ok((snap.catalog, snap.last_seq))
}

fn parse_entry(bytes: &[u8], pos: usize) -> Option<(u64, Record, usize)> {
    let hdr = bytes.get(pos..pos + 8)?;
    let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let crc = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    if len > MAX_ENTRY_LEN {
        return None;
    }
    let payload = bytes.get(pos + 8..pos + 8 + len as usize)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let (seq, record): (u64, Record) = postcard::from_bytes(payload).ok()?;
    Some((seq, record, pos + 8 + len as usize))
}

/// temp file, fsync, rename, fsync the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let res = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(res?)
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

    #[test]
    fn replay_snapshot_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut j, mut cat) = Journal::open(dir.path(), 3).unwrap();
            for i in 0..5 {
                j.append(&[rec(i)]).unwrap();
                cat.apply(&rec(i));
                if j.needs_snapshot() {
                    j.snapshot(&cat).unwrap();
                }
            }
        }
        // A torn append: half an entry at the end.
        let log = dir.path().join(LOG_FILE);
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (mut j, cat) = Journal::open(dir.path(), 3).unwrap();
        assert_eq!(cat.node_addrs.len(), 5);
        // Appending after the truncated tail still replays.
        j.append(&[Record::RemoveFile {
            name: FileName::new("nope").unwrap(),
        }])
        .unwrap();
        j.append(&[rec(9)]).unwrap();
        drop(j);
        let (_, cat) = Journal::open(dir.path(), 3).unwrap();
        assert_eq!(cat.node_addrs.len(), 6);
    }

    #[test]
    fn corrupt_snapshot_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut j, cat) = Journal::open(dir.path(), 1).unwrap();
            j.snapshot(&cat).unwrap();
        }
        let p = dir.path().join(SNAP_FILE);
        let mut b = std::fs::read(&p).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(&p, b).unwrap();
        assert!(Journal::open(dir.path(), 1).is_err());
    }
}
