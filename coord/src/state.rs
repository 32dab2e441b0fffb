//! The coordinator's shared state and the single path by which it changes:
//! records go to the journal writer, which fsyncs a batch, applies it to the
//! catalog, and only then acknowledges (group commit).

use crate::catalog::{Catalog, Garbage, Record};
use crate::config::CoordConfig;
use crate::error::{Error, Result};
use crate::journal::{Journal, OpenMode, SnapshotSource};
use crate::membership::Membership;
use crate::reports::BadReports;
use crate::uploads::{BusyNames, NameGuard, Uploads};
use protocol::{BlockOp, BlockToken, ChunkId, ClusterId, FileName, NodeId, SessionMsg, TokenKey};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Mutable state behind one lock, never held across an await. Its parts
/// are private: the catalog is read-only here (it changes only when the
/// journal writer applies a durable record, in this module), and the other
/// parts are reached through [`State::parts`], a borrow of each.
pub struct State {
    catalog: Catalog,
    uploads: Uploads,
    members: Membership,
    rotation: u64,
    /// Spares that received repaired copies: regular nodes from then on.
    used_spares: HashSet<NodeId>,
    repairs: crate::repair::Repairs,
    rebalance: crate::rebalance::Rebalance,
    /// Deletes waiting for their grace period, oldest first.
    pending_deletes: VecDeque<(Instant, NodeId, Vec<ChunkId>)>,
    reports: BadReports,
    traffic: crate::traffic::Traffic,
}

/// One borrow of each part of [`State`] at once, for code that reads the
/// catalog while it updates bookkeeping (a repair scan, a placement). The
/// catalog is lent shared: nothing outside the apply path can change it.
pub struct Parts<'a> {
    pub catalog: &'a Catalog,
    pub uploads: &'a mut Uploads,
    pub members: &'a mut Membership,
    /// Placement's round-robin start, so ties rotate between puts.
    pub rotation: &'a mut u64,
    pub used_spares: &'a mut HashSet<NodeId>,
    pub repairs: &'a mut crate::repair::Repairs,
    pub rebalance: &'a mut crate::rebalance::Rebalance,
    pub reports: &'a mut BadReports,
    pub traffic: &'a mut crate::traffic::Traffic,
}

impl State {
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn parts(&mut self) -> Parts<'_> {
        Parts {
            catalog: &self.catalog,
            uploads: &mut self.uploads,
            members: &mut self.members,
            rotation: &mut self.rotation,
            used_spares: &mut self.used_spares,
            repairs: &mut self.repairs,
            rebalance: &mut self.rebalance,
            reports: &mut self.reports,
            traffic: &mut self.traffic,
        }
    }
}

type JournalReq = (Vec<Record>, oneshot::Sender<Result<Garbage>>);

pub struct Coord {
    config: CoordConfig,
    /// The cluster this catalog belongs to (unknown only on a member of a
    /// new group that has not heard from its leader yet).
    cluster: crate::group::network::ClusterCell,
    /// The replicated catalog's engine, when this coordinator is a member
    /// of a group (`--peers`); set once, before serving.
    group: std::sync::OnceLock<crate::group::Group>,
    /// Sequence number of the last durable journal record.
    seq: AtomicU64,
    /// Signs block tokens (secured clusters only).
    token_key: Option<TokenKey>,
    /// A background snapshot is being written.
    snapshotting: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
    /// Names being changed (their own lock: see [`BusyNames`]).
    busy: BusyNames,
    journal: mpsc::Sender<JournalReq>,
}

impl Coord {
    /// Loads the catalog and starts the journal writer (for a group member,
    /// the writer that proposes to the group: call [`Coord::start_group`]
    /// before serving).
    pub fn open(config: CoordConfig) -> Result<Arc<Coord>> {
        if config.group.is_some() {
            return Self::open_member(config);
        }
        let (journal, mut catalog) = Journal::open(
            &config.data_dir,
            config.snapshot_every,
            OpenMode {
                recover: config.recover,
                read_only: config.read_only,
            },
        )?;
        test_bug_forget_recent_puts(&mut catalog);
        let mut members = Membership::default();
        members.seed(catalog.node_addrs());
        let (tx, rx) = mpsc::channel(1024);
        // The incident history is there from the first request on.
        let repairs = crate::repair::Repairs::open(&config.data_dir);
        let coord = Arc::new(Coord {
            cluster: crate::group::cluster_cell(Some(journal.cluster())),
            group: Default::default(),
            seq: AtomicU64::new(journal.seq()),
            token_key: config.secret.as_ref().map(TokenKey::from_secret),
            snapshotting: std::sync::atomic::AtomicBool::new(false),
            config,
            state: Mutex::new(State {
                catalog,
                uploads: Uploads::default(),
                members,
                rotation: rand::random::<u8>() as u64,
                used_spares: HashSet::new(),
                repairs,
                rebalance: Default::default(),
                pending_deletes: VecDeque::new(),
                reports: BadReports::default(),
                traffic: Default::default(),
            }),
            busy: BusyNames::default(),
            journal: tx,
        });
        tokio::spawn(writer(journal, Arc::downgrade(&coord), rx));
        Ok(coord)
    }

    /// [`Coord::open`] for a member of a group: the catalog from the
    /// member's latest snapshot (the engine replays the log after it).
    fn open_member(config: CoordConfig) -> Result<Arc<Coord>> {
        let dir = &config.data_dir;
        if config.read_only || config.recover {
            return Err(Error::Group(
                "--read-only and --recover are for a single coordinator's journal; a group member recovers from the others".into(),
            ));
        }
        directio::fsutil::create_dir_durably(dir)?;
        if dir.join("journal.log").exists() || dir.join("catalog.snap").exists() {
            return Err(Error::Group(format!(
                "{} holds a single coordinator's catalog; a group member starts from an empty directory (see README: Running without a single point of failure)",
                dir.display()
            )));
        }
        let lock = crate::journal::lock_dir(dir, false)?;
        let loaded = crate::group::load(dir)?;
        let cluster = crate::group::read_cluster(dir)?;
        if let (Some(a), Some(b)) = (cluster, loaded.cluster) {
            if a != b {
                return Err(Error::Group(format!(
                    "{}: cluster.id says {a} but group.snap belongs to {b}",
                    dir.display()
                )));
            }
        }
        let cluster = cluster.or(loaded.cluster);
        let mut members = Membership::default();
        members.seed(loaded.catalog.node_addrs());
        let (tx, rx) = mpsc::channel(1024);
        let coord = Arc::new(Coord {
            cluster: crate::group::cluster_cell(cluster),
            group: Default::default(),
            seq: AtomicU64::new(0),
            token_key: config.secret.as_ref().map(TokenKey::from_secret),
            snapshotting: std::sync::atomic::AtomicBool::new(false),
            config,
            state: Mutex::new(State {
                catalog: loaded.catalog,
                uploads: Uploads::default(),
                members,
                rotation: rand::random::<u8>() as u64,
                used_spares: HashSet::new(),
                repairs: Default::default(),
                rebalance: Default::default(),
                pending_deletes: VecDeque::new(),
                reports: BadReports::default(),
                traffic: Default::default(),
            }),
            busy: BusyNames::default(),
            journal: tx,
        });
        tokio::spawn(group_writer(Arc::downgrade(&coord), rx, lock));
        Ok(coord)
    }

    /// Starts this member's engine (group members only; a no-op otherwise).
    /// The member with the lowest id forms a new group and gives it a
    /// cluster id.
    pub async fn start_group(self: &Arc<Self>) -> Result<()> {
        let Some(cfg) = self.config.group.clone() else {
            return Ok(());
        };
        let first = cfg.peers.id_of(&cfg.me) == Some(1);
        if self.cluster_known().is_none() && first && crate::group::fresh(&self.config.data_dir)? {
            crate::group::Host::adopt_cluster(&**self, ClusterId::random())?;
        }
        let host: std::sync::Weak<dyn crate::group::Host> = Arc::downgrade(self) as _;
        let group = crate::group::Group::start(
            host,
            &self.config.data_dir,
            self.config.secret.clone(),
            cfg,
            self.cluster.clone(),
        )
        .await?;
        if self.group.set(group).is_err() {
            return Err(Error::Group("the group was started twice".into()));
        }
        tokio::spawn(watch_leadership(Arc::downgrade(self)));
        Ok(())
    }

    /// This coordinator's group, if it is a member of one.
    pub fn group(&self) -> Option<&crate::group::Group> {
        self.group.get()
    }

    /// Whether this coordinator may serve: a single coordinator always, a
    /// group member while it leads. Returns its term (0 when single).
    pub fn leading(&self) -> Option<u64> {
        match self.config.group {
            None => Some(0),
            Some(_) => self.group.get().and_then(|g| g.leading()),
        }
    }

    /// The cluster id, if known (see [`Coord::cluster`]).
    pub fn cluster_known(&self) -> Option<ClusterId> {
        *self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation under this lock completes or is a single
        // assignment, so a poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `names` for one change (commit, copy, concat, remove) until
    /// the guard drops; a name already being changed is [`Error::Busy`].
    pub fn claim_names(&self, names: Vec<FileName>) -> Result<NameGuard<'_>> {
        self.busy.claim(names)
    }

    /// The options the coordinator was started with.
    pub fn config(&self) -> &CoordConfig {
        &self.config
    }

    /// The cluster this catalog belongs to. A group member that has not
    /// heard from its leader yet answers with an all-zero id (it serves
    /// nothing but the group's messages until it has one).
    pub fn cluster(&self) -> ClusterId {
        self.cluster_known().unwrap_or(ClusterId([0; 16]))
    }

    /// Signs block tokens (secured clusters only).
    pub fn token_key(&self) -> Option<&TokenKey> {
        self.token_key.as_ref()
    }

    /// Sends a repair or move order to `node` over its session. Without a
    /// session the order is dropped, and `forget` removes its bookkeeping
    /// under the same hold of the lock, so the next round plans it again.
    pub fn send_order(
        &self,
        node: &NodeId,
        order: protocol::RepairOrder,
        forget: impl FnOnce(&mut Parts<'_>, ChunkId),
    ) {
        let chunk = order.header.id;
        let mut guard = self.lock();
        let mut st = guard.parts();
        if !st.members.send(node, SessionMsg::Repair(order)) {
            forget(&mut st, chunk);
        }
    }

    /// Sequence number of the last durable record.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// A block token for `op` on `chunk`, in a secured cluster.
    pub fn grant(
        &self,
        chunk: ChunkId,
        op: BlockOp,
        max_len: u64,
        ttl: Duration,
    ) -> Option<BlockToken> {
        let key = self.token_key.as_ref()?;
        let expires = protocol::token::now_ms().saturating_add(ttl.as_millis() as u64);
        Some(key.sign(chunk, op, max_len, expires))
    }

    /// Makes records durable and applies them. Returns once they are on disk.
    pub async fn commit(&self, records: Vec<Record>) -> Result<Garbage> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if self.config.read_only {
            return Err(Error::ReadOnly);
        }
        let (tx, rx) = oneshot::channel();
        self.journal
            .send((records, tx))
            .await
            .map_err(|_| Error::Journal("journal writer stopped".into()))?;
        rx.await
            .map_err(|_| Error::Journal("journal writer stopped".into()))?
    }

    /// Schedules the deletion of copies the catalog no longer references
    /// (removed or replaced files, aborted uploads, excess copies): they go
    /// after `delete_grace`, so readers that looked a file up before finish.
    /// Copies on nodes that are down then become orphans when those nodes
    /// register, and are set aside rather than deleted.
    pub fn collect(&self, garbage: Garbage) {
        if garbage.is_empty() || self.config.read_only {
            return;
        }
        let mut per_node: BTreeMap<NodeId, Vec<ChunkId>> = BTreeMap::new();
        for (chunk, nodes) in garbage {
            for n in nodes {
                per_node.entry(n).or_default().push(chunk);
            }
        }
        let due = Instant::now() + self.config.delete_grace;
        let mut st = self.lock();
        // Tombstones first, at once (see `protocol::tag`): a rebuild from
        // the nodes during the grace must not bring these files back.
        for (node, ids) in &per_node {
            st.members.send(node, SessionMsg::Doom(ids.clone()));
        }
        for (node, ids) in per_node {
            st.pending_deletes.push_back((due, node, ids));
        }
        drop(st);
        if self.config.delete_grace.is_zero() {
            self.flush_deletes(Instant::now());
        }
    }

    /// Sends the deletes whose grace period is over.
    pub fn flush_deletes(&self, now: Instant) {
        let mut st = self.lock();
        while st
            .pending_deletes
            .front()
            .is_some_and(|(due, _, _)| *due <= now)
        {
            let Some((_, node, ids)) = st.pending_deletes.pop_front() else {
                break;
            };
            // The node may hold this chunk again by now: a repair may have
            // made (or found, "already here") a copy there, journaled or
            // still in flight. Deleting it then would leave the catalog
            // counting a copy that is gone.
            let ids: Vec<ChunkId> = ids
                .into_iter()
                .filter(|id| {
                    let listed = st
                        .catalog
                        .chunk(id)
                        .is_some_and(|(_, c, _)| c.nodes.contains(&node));
                    let repairing = st
                        .repairs
                        .in_flight
                        .get(id)
                        .is_some_and(|t| t.target == node)
                        || st
                            .rebalance
                            .in_flight
                            .get(id)
                            .is_some_and(|t| t.mv.to == node);
                    !listed && !repairing
                })
                .collect();
            if ids.is_empty() {
                continue;
            }
            let n = ids.len();
            if st.members.get(&node).is_some_and(|m| m.behind) {
                tracing::warn!(%node, chunks = n, "not deleting on a node that has seen a newer catalog than ours");
            } else if st.members.send(&node, SessionMsg::Delete(ids)) {
                tracing::info!(%node, chunks = n, "asked node to delete unreferenced chunks");
            } else {
                tracing::info!(%node, chunks = n, "node unreachable; its unreferenced chunks are set aside when it registers");
            }
        }
    }
}

impl crate::group::Host for Coord {
    /// Records the cluster this member belongs to, learned from its leader
    /// or made by the member forming the group; refuses another one.
    fn adopt_cluster(&self, id: ClusterId) -> Result<()> {
        let mut c = self.cluster.lock().unwrap_or_else(|p| p.into_inner());
        match *c {
            Some(have) if have == id => Ok(()),
            Some(have) => Err(Error::Group(format!(
                "this member belongs to cluster {have}, not {id} (wrong --peers or --data?)"
            ))),
            None => {
                crate::group::write_cluster(&self.config.data_dir, id)?;
                tracing::info!(cluster = %id, "joined the coordinator group's cluster");
                *c = Some(id);
                Ok(())
            }
        }
    }

    /// Applies the records of one replicated log entry (every member, in log
    /// order). Returns what each commit freed.
    fn apply_replicated(&self, batch: &[Vec<Record>]) -> Vec<Garbage> {
        let mut st = self.lock();
        batch
            .iter()
            .map(|records| records.iter().flat_map(|r| st.catalog.apply(r)).collect())
            .collect()
    }

    /// Replaces the catalog with a snapshot received from the leader.
    fn replace_catalog(&self, catalog: Catalog) {
        let mut st = self.lock();
        st.members.seed_missing(catalog.node_addrs());
        st.catalog = catalog;
    }

    /// The log index applied last (a member's catalog sequence number).
    fn set_applied(&self, index: u64) {
        self.seq.store(index, Ordering::Release);
    }

    fn write_snapshot(&self, dir: &std::path::Path, file_name: &str, index: u64) -> Result<u64> {
        crate::journal::write_snapshot_as(dir, file_name, self.cluster(), index, Live(self))
    }
}

/// Reads the live catalog for a snapshot, one batch per hold of the lock.
struct Live<'a>(&'a Coord);

impl SnapshotSource for Live<'_> {
    fn head(&mut self) -> Result<Vec<u8>> {
        self.0
            .lock()
            .catalog
            .head_bytes()
            .map_err(|e| Error::Journal(format!("encode snapshot: {e}")))
    }
    fn batch(&mut self, after: Option<&FileName>) -> Result<Option<(Vec<u8>, FileName)>> {
        self.0
            .lock()
            .catalog
            .batch_bytes(after, crate::journal::SNAP_BATCH)
            .map_err(|e| Error::Journal(format!("encode snapshot: {e}")))
    }
}

/// Rotates the journal and writes a fuzzy snapshot of the live catalog in
/// the background: appends and commits go on meanwhile, and the catalog
/// lock is taken one batch of files at a time (never cloned).
fn start_snapshot(coord: &Arc<Coord>, journal: &mut Journal) {
    let seq = match journal.rotate() {
        Ok(seq) => seq,
        Err(e) => {
            tracing::error!(error = %e, "journal rotation failed; no snapshot now");
            return;
        }
    };
    coord.snapshotting.store(true, Ordering::Release);
    let (dir, cluster) = (journal.dir().to_path_buf(), journal.cluster());
    let coord = coord.clone();
    // Held until the snapshot is renamed into place and the rotated journal
    // dropped: a coordinator opening the directory meanwhile waits.
    let lock = journal.lock_handle();
    tokio::task::spawn_blocking(move || {
        let _lock = lock;
        let start = Instant::now();
        let res = crate::journal::write_snapshot(&dir, cluster, seq, Live(&coord))
            .and_then(|bytes| crate::journal::drop_rotated(&dir, seq).map(|_| bytes));
        match res {
            Ok(bytes) => tracing::info!(
                seq,
                bytes,
                ms = start.elapsed().as_millis() as u64,
                "catalog snapshot written"
            ),
            Err(e) => {
                tracing::error!(error = %e, "snapshot failed; the rotated journal is kept and replayed")
            }
        }
        coord.snapshotting.store(false, Ordering::Release);
    });
}

/// A group member's writer: batches whatever commits are queued into one
/// log entry and proposes it; acknowledges once the group committed and
/// this member applied it. `lock` is the data directory's lock, held for
/// the member's life.
async fn group_writer(
    coord: std::sync::Weak<Coord>,
    mut rx: mpsc::Receiver<JournalReq>,
    lock: Option<Arc<std::fs::File>>,
) {
    let _lock = lock;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < crate::group::MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        let Some(coord) = coord.upgrade() else { return };
        let records: Vec<Vec<Record>> = batch.iter().map(|(r, _)| r.clone()).collect();
        let res = match coord.group() {
            Some(g) => match tokio::time::timeout(PROPOSE_TIMEOUT, g.propose(records)).await {
                Ok(r) => r,
                Err(_) => Err(g.no_majority().await),
            },
            None => Err(Error::Group("the group has not started".into())),
        };
        match res {
            Ok(garbage) => {
                for ((_, ack), g) in batch.into_iter().zip(garbage) {
                    let _ = ack.send(Ok(g));
                }
            }
            Err(e) => {
                let leader = match &e {
                    Error::NotLeader { leader } => Some(leader.clone()),
                    _ => None,
                };
                let msg = e.to_string();
                for (_, ack) in batch {
                    let _ = ack.send(Err(match &leader {
                        Some(l) => Error::NotLeader { leader: l.clone() },
                        None if matches!(e, Error::NoLeader(_)) => Error::NoLeader(
                            msg.trim_start_matches("no coordinator leader: ")
                                .to_string(),
                        ),
                        None => Error::Group(msg.clone()),
                    }));
                }
            }
        }
    }
}

/// How long a commit waits for the group: past it the client is told there
/// is no majority (the entry may still commit later, like any timed-out
/// write to a replicated store).
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(8);

/// Watches this member's leadership: on becoming leader it gives every node
/// a full dead-after window to register before anything is declared dead
/// (it has the catalog but no liveness yet); on losing it, it drops its
/// node sessions so the nodes look for the new leader.
async fn watch_leadership(coord: std::sync::Weak<Coord>) {
    let mut rx = match coord
        .upgrade()
        .and_then(|c| c.group().map(|g| g.raft().metrics()))
    {
        Some(rx) => rx,
        None => return,
    };
    let mut was = None;
    loop {
        // An engine that stopped (a fatal storage error, a bug) leaves a
        // member that can never serve or vote again: stop the process so
        // that its supervisor restarts it, rather than linger half-alive.
        if let Err(e) = &rx.borrow().running_state {
            tracing::error!(error = %e, "the coordinator group's engine stopped; exiting so this member can be restarted");
            std::process::exit(70);
        }
        let now = {
            let Some(c) = coord.upgrade() else { return };
            c.leading()
        };
        if now != was {
            let Some(c) = coord.upgrade() else { return };
            if let Some(g) = c.group() {
                g.note_change();
            }
            let mut guard = c.lock();
            let st = guard.parts();
            match now {
                Some(term) => {
                    tracing::info!(term, "leading the coordinator group; waiting a dead-after window for nodes to register before declaring any dead");
                    let known = st.catalog.node_addrs().clone();
                    st.members.seed_missing(&known);
                    st.members.grace(Instant::now(), &c.config);
                }
                None => {
                    tracing::info!(
                        "not leading the coordinator group (now a follower); closing node sessions"
                    );
                    st.members.close_sessions();
                }
            }
            was = now;
        }
        if rx.changed().await.is_err() {
            return;
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
        coord.seq.store(journal.seq(), Ordering::Release);
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
        let files = coord.lock().catalog.len();
        if !coord.snapshotting.load(Ordering::Acquire) && journal.needs_snapshot(files) {
            start_snapshot(&coord, &mut journal);
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
    let forgotten = catalog.forget_created_after(now_ms.saturating_sub(5_000));
    tracing::error!(
        forgotten,
        "DFS_TEST_BUG=ack-before-fsync: forgot recently acknowledged files"
    );
}
