//! The coordinator group: the catalog replicated on Raft (openraft), so
//! that no single coordinator's machine or disk holds the only map.
//!
//! Every change takes the same path as on a single coordinator (records
//! from a handler, batched by the writer), except that the batch becomes
//! one log entry: the leader appends it, every member fsyncs it into its
//! `raft.log`, and once a majority has it the entry is applied to the
//! catalog on each member in log order; only then is the commit
//! acknowledged. The engine does elections, replication, catch-up by
//! snapshot and membership; this module gives it a log ([`log`]), the
//! catalog as its state machine ([`machine`]) and our connections
//! ([`network`]).
//!
//! Only the leader serves: a follower answers every request but the
//! group's own with `NotLeader`, and the leader answers reads only after
//! confirming with a majority that it still leads (a read-index round), so
//! a deposed leader never serves a stale catalog. Nodes fence a deposed
//! leader by its term (see `RegisterAck::term`).

mod log;
mod machine;
pub mod network;
pub mod peers;
pub mod types;

pub use machine::load;
pub use peers::{GroupConfig, Peers};

use crate::catalog::{Catalog, Garbage, Record};
use crate::error::{Error, Result};
use network::{ClusterCell, Network};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use protocol::{ClusterId, GroupMember, GroupStatus, RaftKind};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use types::{Proposal, Raft};

/// How long a leader waits for a majority to confirm it still leads.
const CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Commits batched into one log entry at most.
pub const MAX_BATCH: usize = 256;
/// Entries per replication message: with [`MAX_BATCH`] commits of a few
/// hundred bytes each, a message stays well under the frame limit.
const MAX_PAYLOAD_ENTRIES: u64 = 8;
const CLUSTER_FILE: &str = "cluster.id";

/// What the engine needs of the coordinator it runs in: the catalog it
/// replicates and the cluster it belongs to. The coordinator implements
/// it; the group never sees the rest of its state.
pub trait Host: Send + Sync + 'static {
    /// Applies one committed entry's commits, in order; what each freed.
    fn apply_replicated(&self, batch: &[Vec<Record>]) -> Vec<Garbage>;
    /// Replaces the catalog with one received as the leader's snapshot.
    fn replace_catalog(&self, catalog: Catalog);
    /// The log index applied last.
    fn set_applied(&self, index: u64);
    /// Records the cluster this member belongs to; refuses another one.
    fn adopt_cluster(&self, id: ClusterId) -> Result<()>;
    /// Writes a (fuzzy) snapshot of the live catalog as of `index` into
    /// `dir/file_name`.
    fn write_snapshot(&self, dir: &Path, file_name: &str, index: u64) -> Result<u64>;
}

/// A running member.
pub struct Group {
    raft: Raft,
    host: std::sync::Weak<dyn Host>,
    me: u64,
    peers: Peers,
    cluster: ClusterCell,
    dir: std::path::PathBuf,
    last_change_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Until when a confirmed leadership stands (see [`Group::confirm_leader`]).
    lease: Mutex<std::time::Instant>,
    election: std::time::Duration,
}

/// Reads this member's cluster id, if it has one.
pub fn read_cluster(dir: &Path) -> Result<Option<ClusterId>> {
    match std::fs::read_to_string(dir.join(CLUSTER_FILE)) {
        Ok(s) => ClusterId::from_hex(&s)
            .map(Some)
            .ok_or_else(|| Error::Group(format!("{CLUSTER_FILE} is not a cluster id"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether `dir` holds no group state yet (a member's first start).
pub fn fresh(dir: &Path) -> Result<bool> {
    Ok(!dir.join("raft.log").exists() && log::read_vote(dir)?.is_none())
}

/// Records the cluster this member belongs to (durably, once).
pub fn write_cluster(dir: &Path, id: ClusterId) -> Result<()> {
    directio::fsutil::write_atomic(dir, CLUSTER_FILE, format!("{id}\n").as_bytes())?;
    Ok(())
}

impl Group {
    /// Starts this member: opens its log, hands the engine the catalog as
    /// state machine, and, on first start of an empty group, lets the
    /// member with the lowest id form it.
    pub async fn start(
        host: std::sync::Weak<dyn Host>,
        dir: &Path,
        secret: Option<protocol::Secret>,
        cfg: GroupConfig,
        cluster: ClusterCell,
    ) -> Result<Group> {
        let dir = dir.to_path_buf();
        let me = cfg
            .peers
            .id_of(&cfg.me)
            .ok_or_else(|| Error::Group(format!("--id {} is not one of --peers", cfg.me)))?;
        let log = log::LogStore::open(&dir)?;
        let fresh = log.is_empty() && log::read_vote(&dir)?.is_none();
        let loaded_meta = machine::load_meta(&dir)?;
        let sm = machine::Machine::new(host.clone(), dir.clone(), loaded_meta.as_ref());
        let election = cfg.election.as_millis() as u64;
        let raft_cfg = openraft::Config {
            cluster_name: "dfs-sim".into(),
            heartbeat_interval: cfg.heartbeat.as_millis() as u64,
            election_timeout_min: election,
            election_timeout_max: election * 2,
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every.max(10)),
            max_in_snapshot_log_to_keep: cfg.snapshot_every.clamp(10, 200),
            snapshot_max_chunk_size: 2 * 1024 * 1024,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Group(e.to_string()))?;
        let network = Network {
            secret,
            cluster: cluster.clone(),
        };
        let raft = Raft::new(me, Arc::new(raft_cfg), network, log, sm)
            .await
            .map_err(|e| Error::Group(e.to_string()))?;
        let group = Group {
            raft,
            host,
            me,
            peers: cfg.peers.clone(),
            cluster,
            dir,
            last_change_ms: Default::default(),
            lease: Mutex::new(std::time::Instant::now()),
            election: cfg.election,
        };
        // The lowest id forms a new group; the others wait to be told.
        if fresh && me == *cfg.peers.by_id.keys().next().unwrap_or(&0) {
            match group.raft.initialize(cfg.peers.nodes()).await {
                Ok(()) => {
                    tracing::info!(members = cfg.peers.len(), "formed a new coordinator group")
                }
                Err(RaftError::APIError(e)) => {
                    tracing::info!(error = %e, "group already formed")
                }
                Err(e) => return Err(Error::Group(e.to_string())),
            }
        }
        Ok(group)
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn me(&self) -> &str {
        self.peers
            .by_id
            .get(&self.me)
            .map(|(n, _)| n.as_str())
            .unwrap_or("?")
    }

    /// The engine's view right now (leader, term, commit index).
    fn metrics(&self) -> openraft::RaftMetrics<u64, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    /// This member leads and its term: what nodes fence orders with.
    pub fn leading(&self) -> Option<u64> {
        let m = self.metrics();
        (m.state == ServerState::Leader && m.current_leader == Some(self.me))
            .then_some(m.current_term)
    }

    /// Where requests should go instead.
    pub fn leader_addr(&self) -> Option<String> {
        let m = self.metrics();
        m.current_leader
            .filter(|l| *l != self.me)
            .and_then(|l| self.peers.addr(l).map(str::to_string))
    }

    /// Appends `batch` as one entry and waits until it is committed on a
    /// majority and applied here. Returns what each commit freed.
    pub async fn propose(
        &self,
        batch: Vec<Vec<crate::catalog::Record>>,
    ) -> Result<Vec<crate::catalog::Garbage>> {
        match self.raft.client_write(Proposal(batch)).await {
            Ok(r) => Ok(r.data.0),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Error::NotLeader {
                    leader: f
                        .leader_id
                        .and_then(|l| self.peers.addr(l).map(str::to_string)),
                })
            }
            Err(e) => Err(Error::Group(e.to_string())),
        }
    }

    /// Confirms with a majority that this member still leads (a read-index
    /// round), so that what it then serves is not from a deposed leader.
    /// A confirmation stands for half the minimum election timeout (a
    /// leader lease): the members that acknowledged it grant no other
    /// candidate a vote before their own election timeout passes.
    pub async fn confirm_leader(&self) -> Result<()> {
        let started = std::time::Instant::now();
        if self.lease_until() > started {
            return Ok(());
        }
        let res = tokio::time::timeout(CONFIRM_TIMEOUT, self.raft.ensure_linearizable()).await;
        match res {
            Ok(Ok(_)) => {
                let mut l = self.lease.lock().unwrap_or_else(|p| p.into_inner());
                *l = started + self.election / 2;
                Ok(())
            }
            Ok(Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                f,
            )))) => Err(Error::NotLeader {
                leader: f
                    .leader_id
                    .and_then(|l| self.peers.addr(l).map(str::to_string)),
            }),
            Ok(Err(RaftError::APIError(openraft::error::CheckIsLeaderError::QuorumNotEnough(
                _,
            ))))
            | Err(_) => Err(self.no_majority().await),
            Ok(Err(e)) => Err(Error::Group(e.to_string())),
        }
    }

    fn lease_until(&self) -> std::time::Instant {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The refusal when this member cannot reach a majority, naming the
    /// members it can reach (a quick connect to each).
    pub async fn no_majority(&self) -> Error {
        let total = self.peers.len();
        let mut reachable = vec![self.me().to_string()];
        for (id, (name, addr)) in &self.peers.by_id {
            if *id == self.me {
                continue;
            }
            let ok = tokio::time::timeout(
                std::time::Duration::from_millis(300),
                tokio::net::TcpStream::connect(addr.as_str()),
            )
            .await;
            if matches!(ok, Ok(Ok(_))) {
                reachable.push(name.clone());
            }
        }
        Error::NoLeader(format!(
            "{} of {total} members reachable ({}); a majority is needed",
            reachable.len(),
            reachable.join(", ")
        ))
    }

    /// Serves a message of another member.
    pub async fn serve_rpc(&self, kind: RaftKind, body: &[u8]) -> Vec<u8> {
        let adopt = |c| match self.host.upgrade() {
            Some(h) => h.adopt_cluster(c),
            None => Err(Error::Group("the coordinator stopped".into())),
        };
        network::serve(&self.raft, &self.cluster, adopt, kind, body).await
    }

    pub fn note_change(&self) {
        self.last_change_ms.store(
            protocol::token::now_ms(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn status(&self) -> GroupStatus {
        let m = self.metrics();
        let leader_idx = m.last_log_index.unwrap_or(0);
        let voters: BTreeSet<u64> = m.membership_config.membership().voter_ids().collect();
        let members = self
            .peers
            .by_id
            .iter()
            .filter(|(id, _)| voters.is_empty() || voters.contains(id))
            .map(|(id, (name, addr))| GroupMember {
                name: name.clone(),
                addr: addr.clone(),
                leader: m.current_leader == Some(*id),
                lag: m.replication.as_ref().map(|r| {
                    let matched = r.get(id).copied().flatten().map(|l| l.index).unwrap_or(0);
                    leader_idx.saturating_sub(matched)
                }),
            })
            .collect();
        GroupStatus {
            me: self.me().to_string(),
            leader: m.current_leader.map(|l| self.peers.name(l)),
            term: m.current_term,
            committed: m.last_log_index.unwrap_or(0),
            applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_change_ms: self
                .last_change_ms
                .load(std::sync::atomic::Ordering::Relaxed),
            members,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A shared, initially unknown cluster id.
pub fn cluster_cell(id: Option<ClusterId>) -> ClusterCell {
    Arc::new(Mutex::new(id))
}
