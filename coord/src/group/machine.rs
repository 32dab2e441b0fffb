//! The replicated state machine is the catalog itself: applying an entry
//! applies its records, in log order, on every member; a snapshot is the
//! catalog snapshot the single coordinator already writes.
//!
//! ```text
//! group.snap  the catalog snapshot format (journal.rs), last_seq = the
//!             log index it was taken at
//! group.meta  postcard(SnapshotMeta): last log id and membership covered,
//!             written (atomically) after group.snap
//! ```
//!
//! Snapshots are fuzzy, like the single coordinator's: taken as of the
//! last applied entry while later entries keep applying, which is correct
//! because every record is idempotent given the order (replaying entries
//! after `last_log_id` on top reaches the same catalog). For the same
//! reason a crash between writing `group.snap` and `group.meta` is
//! harmless: the older meta only replays more.

use super::types::{
    storage_error, Applied, Entry, LogId, Membership, SnapshotMeta, StorageError, TypeConfig,
};
use super::Host;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::journal::read_group_snapshot;
use directio::fsutil::write_atomic;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use protocol::ClusterId;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Weak;

const SNAP_FILE: &str = "group.snap";
const META_FILE: &str = "group.meta";

/// What a member finds on disk when it starts.
pub struct Loaded {
    pub catalog: Catalog,
    pub meta: Option<SnapshotMeta>,
    pub cluster: Option<ClusterId>,
}

/// The metadata of the latest durable snapshot in `dir`, if any.
pub fn load_meta(dir: &Path) -> Result<Option<SnapshotMeta>> {
    match std::fs::read(dir.join(META_FILE)) {
        Ok(b) => Ok(Some(
            postcard::from_bytes::<SnapshotMeta>(&b)
                .map_err(|e| Error::Group(format!("group.meta: {e}")))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Loads the latest snapshot in `dir` (an empty catalog when there is none).
pub fn load(dir: &Path) -> Result<Loaded> {
    let meta = load_meta(dir)?;
    let snap = match std::fs::File::open(dir.join(SNAP_FILE)) {
        Ok(f) => Some(read_group_snapshot(f)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    Ok(match (snap, meta) {
        (Some((catalog, _, cluster)), Some(meta)) => Loaded {
            catalog,
            meta: Some(meta),
            cluster: Some(cluster),
        },
        // A snapshot without its meta (a crash before the first meta was
        // written): the log from the start replays over it.
        (Some((catalog, _, cluster)), None) => Loaded {
            catalog,
            meta: None,
            cluster: Some(cluster),
        },
        (None, _) => Loaded {
            catalog: Catalog::default(),
            meta: None,
            cluster: None,
        },
    })
}

pub struct Machine {
    coord: Weak<dyn Host>,
    dir: PathBuf,
    applied: Option<LogId>,
    membership: Membership,
}

impl Machine {
    pub fn new(coord: Weak<dyn Host>, dir: PathBuf, meta: Option<&SnapshotMeta>) -> Machine {
        Machine {
            coord,
            dir,
            applied: meta.and_then(|m| m.last_log_id),
            membership: meta.map(|m| m.last_membership.clone()).unwrap_or_default(),
        }
    }

    // The engine's own error type, as its traits require.
    #[allow(clippy::result_large_err)]
    fn coord(&self) -> std::result::Result<std::sync::Arc<dyn Host>, StorageError> {
        self.coord
            .upgrade()
            .ok_or_else(|| storage_error("the coordinator stopped"))
    }
}

fn read_current(dir: &Path) -> Result<Option<(SnapshotMeta, Vec<u8>)>> {
    let meta = match std::fs::read(dir.join(META_FILE)) {
        Ok(b) => postcard::from_bytes::<SnapshotMeta>(&b)
            .map_err(|e| Error::Group(format!("group.meta: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bytes = std::fs::read(dir.join(SNAP_FILE))?;
    Ok(Some((meta, bytes)))
}

pub struct Builder {
    coord: Weak<dyn Host>,
    dir: PathBuf,
    applied: Option<LogId>,
    membership: Membership,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> std::result::Result<Snapshot<TypeConfig>, StorageError> {
        let coord = self
            .coord
            .upgrade()
            .ok_or_else(|| storage_error("the coordinator stopped"))?;
        let (dir, applied) = (self.dir.clone(), self.applied);
        let index = applied.map(|l| l.index).unwrap_or(0);
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!("{}-{}", index, rand::random::<u32>()),
        };
        let meta2 = meta.clone();
        let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            coord.write_snapshot(&dir, SNAP_FILE, index)?;
            let m = postcard::to_allocvec(&meta2).map_err(|e| Error::Group(e.to_string()))?;
            write_atomic(&dir, META_FILE, &m)?;
            Ok(std::fs::read(dir.join(SNAP_FILE))?)
        })
        .await
        .map_err(storage_error)?
        .map_err(storage_error)?;
        tracing::info!(index, bytes = bytes.len(), "group snapshot written");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for Machine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> std::result::Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> std::result::Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let coord = self.coord()?;
        let mut out = Vec::new();
        for e in entries {
            self.applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(Applied::default()),
                EntryPayload::Normal(p) => out.push(Applied(coord.apply_replicated(&p.0))),
                EntryPayload::Membership(m) => {
                    self.membership = Membership::new(Some(e.log_id), m);
                    out.push(Applied::default());
                }
            }
            coord.set_applied(e.log_id.index);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Builder {
        Builder {
            coord: self.coord.clone(),
            dir: self.dir.clone(),
            applied: self.applied,
            membership: self.membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> std::result::Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> std::result::Result<(), StorageError> {
        let coord = self.coord()?;
        let bytes = snapshot.into_inner();
        let (dir, meta2) = (self.dir.clone(), meta.clone());
        let catalog = tokio::task::spawn_blocking(move || -> Result<(Catalog, ClusterId)> {
            let (catalog, _, cluster) = read_group_snapshot(&bytes[..])?;
            write_atomic(&dir, SNAP_FILE, &bytes)?;
            let m = postcard::to_allocvec(&meta2).map_err(|e| Error::Group(e.to_string()))?;
            write_atomic(&dir, META_FILE, &m)?;
            Ok((catalog, cluster))
        })
        .await
        .map_err(storage_error)?
        .map_err(storage_error)?;
        let (catalog, cluster) = catalog;
        coord.adopt_cluster(cluster).map_err(storage_error)?;
        let files = catalog.len();
        coord.replace_catalog(catalog);
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        if let Some(l) = meta.last_log_id {
            coord.set_applied(l.index);
        }
        tracing::info!(files, index = ?meta.last_log_id, "installed the leader's snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> std::result::Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let dir = self.dir.clone();
        let cur = tokio::task::spawn_blocking(move || read_current(&dir))
            .await
            .map_err(storage_error)?
            .map_err(storage_error)?;
        Ok(cur.map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
