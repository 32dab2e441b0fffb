//! The coordinator's shared state and the single path by which it changes:
//! records go to the journal writer, which fsyncs a batch, applies it to the
//! catalog, and only then acknowledges (group commit).

use crate::catalog::{Catalog, Garbage, Record};
use crate::config::CoordConfig;
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::membership::Membership;
use protocol::{ChunkId, FileName, NodeId, PutPlan, SessionMsg};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// A planned, not yet committed upload.
pub struct Upload {
    pub name: FileName,
    pub size: u64,
    pub force: bool,
    pub plan: PutPlan,
    pub expires: Instant,
    /// Nodes the client failed to write to during this upload: never
    /// offered again as replacements.
    pub failed: HashSet<NodeId>,
}

impl Upload {
    pub fn chunk_ids(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.plan
            .stripes
            .iter()
            .flat_map(|s| s.data.iter().chain(s.parity.iter()).map(|c| c.id))
    }
}

/// Mutable state behind one lock, never held across an await.
pub struct State {
    pub catalog: Catalog,
    pub uploads: HashMap<u64, Upload>,
    /// Names with a commit or remove in flight: a second change to the same
    /// name waits its turn instead of racing the journal.
    pub busy: HashSet<FileName>,
    pub members: Membership,
    pub rotation: u64,
    pub next_upload: u64,
    pub repairs: crate::repair::Repairs,
}

type JournalReq = (Vec<Record>, oneshot::Sender<Result<Garbage>>);

pub struct Coord {
    pub config: CoordConfig,
    state: Mutex<State>,
    journal: mpsc::Sender<JournalReq>,
}

impl Coord {
    /// Loads the catalog and starts the journal writer.
    pub fn open(config: CoordConfig) -> Result<Arc<Coord>> {
        let (journal, mut catalog) = Journal::open(&config.data_dir, config.snapshot_every)?;
        test_bug_forget_recent_puts(&mut catalog);
        let mut members = Membership::default();
        members.seed(&catalog.node_addrs);
        let (tx, rx) = mpsc::channel(1024);
        let coord = Arc::new(Coord {
            config,
            state: Mutex::new(State {
                catalog,
                uploads: HashMap::new(),
                busy: HashSet::new(),
                members,
                rotation: rand::random::<u8>() as u64,
                next_upload: rand::random::<u32>() as u64,
                repairs: Default::default(),
            }),
            journal: tx,
        });
        tokio::spawn(writer(journal, Arc::downgrade(&coord), rx));
        Ok(coord)
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation under this lock completes or is a single
        // assignment, so a poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes records durable and applies them. Returns once they are on disk.
    pub async fn commit(&self, records: Vec<Record>) -> Result<Garbage> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        self.journal
            .send((records, tx))
            .await
            .map_err(|_| Error::Journal("journal writer stopped".into()))?;
        rx.await
            .map_err(|_| Error::Journal("journal writer stopped".into()))?
    }

    /// Asks the nodes holding unreferenced copies to delete them. Nodes that
    /// are down are reconciled when they register again.
    pub fn collect(&self, garbage: Garbage) {
        if garbage.is_empty() {
            return;
        }
        let mut per_node: BTreeMap<NodeId, Vec<ChunkId>> = BTreeMap::new();
        for (chunk, nodes) in garbage {
            for n in nodes {
                per_node.entry(n).or_default().push(chunk);
            }
        }
        let st = self.lock();
        for (node, ids) in per_node {
            let n = ids.len();
            if st.members.send(&node, SessionMsg::Delete(ids)) {
                tracing::info!(%node, chunks = n, "asked node to delete unreferenced chunks");
            } else {
                tracing::info!(%node, chunks = n, "node unreachable; its unreferenced chunks go when it registers");
            }
        }
    }
}

/// The journal writer: batches whatever requests are queued, appends and
/// fsyncs them once, applies them to the catalog, then acknowledges.
async fn writer(
    mut journal: Journal,
    coord: std::sync::Weak<Coord>,
    mut rx: mpsc::Receiver<JournalReq>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        let records: Vec<Record> = batch.iter().flat_map(|(r, _)| r.iter().cloned()).collect();
        let (j, res) = match tokio::task::spawn_blocking(move || {
            let res = journal.append(&records);
            (journal, res)
        })
        .await
        {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "journal writer panicked");
                return;
            }
        };
        journal = j;
        let Some(coord) = coord.upgrade() else { return };
        match res {
            Err(e) => {
                tracing::error!(error = %e, "journal append failed");
                let msg = e.to_string();
                for (_, ack) in batch {
                    let _ = ack.send(Err(Error::Journal(msg.clone())));
                }
            }
            Ok(()) => {
                let mut acks = Vec::with_capacity(batch.len());
                {
                    let mut st = coord.lock();
                    for (records, ack) in batch {
                        let mut garbage = Vec::new();
                        for r in &records {
                            garbage.extend(st.catalog.apply(r));
                        }
                        acks.push((ack, garbage));
                    }
                }
                for (ack, garbage) in acks {
                    let _ = ack.send(Ok(garbage));
                }
            }
        }
        if journal.needs_snapshot() {
            let catalog = coord.lock().catalog.clone();
            journal = match tokio::task::spawn_blocking(move || {
                if let Err(e) = journal.snapshot(&catalog) {
                    tracing::error!(error = %e, "snapshot failed; journal keeps growing");
                }
                journal
            })
            .await
            {
                Ok(j) => j,
                Err(_) => return,
            };
        }
    }
}

/// TEST ONLY, inert unless the environment says `DFS_TEST_BUG=ack-before-fsync`
/// (used by `tests/chaos.rs` to prove that `dfs-sim chaos` catches lost
/// writes): pretend the coordinator acknowledged commits before their
/// journal records were durable, by forgetting at start every file
/// committed in the last few seconds, as such a coordinator would after a
/// crash. Never set it on a cluster whose data matters.
fn test_bug_forget_recent_puts(catalog: &mut crate::catalog::Catalog) {
    if std::env::var("DFS_TEST_BUG").as_deref() != Ok("ack-before-fsync") {
        return;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let before = catalog.files.len();
    catalog.files.retain(|_, f| f.created_ms + 5_000 < now_ms);
    tracing::error!(
        forgotten = before - catalog.files.len(),
        "DFS_TEST_BUG=ack-before-fsync: forgot recently acknowledged files"
    );
}
