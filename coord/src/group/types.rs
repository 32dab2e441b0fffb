//! What the consensus engine replicates: batches of catalog records, and
//! what applying one returns.

use crate::catalog::{Garbage, Record};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// One log entry's payload: the records of every commit the leader batched
/// together (group commit keeps its batching: one entry, one fsync on each
/// member, for up to [`crate::group::MAX_BATCH`] commits).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proposal(pub Vec<Vec<Record>>);

/// What applying a [`Proposal`] freed, one list per commit, in order: the
/// leader schedules those copies' deletion (followers drop it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied(pub Vec<Garbage>);

openraft::declare_raft_types!(
    /// The coordinator group's engine types. Member ids are small numbers
    /// given by the sorted member names (see [`crate::group::Peers`]).
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type StorageError = openraft::StorageError<u64>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, openraft::BasicNode>;
pub type Membership = openraft::StoredMembership<u64, openraft::BasicNode>;

/// A storage error for the engine (it stops the member: the log or the
/// state machine can no longer be trusted).
pub fn storage_error(e: impl std::fmt::Display) -> StorageError {
    openraft::StorageIOError::write(openraft::AnyError::error(e.to_string())).into()
}
