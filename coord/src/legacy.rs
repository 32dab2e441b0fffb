//! The round-1 on-disk catalog format (`DFSSNAP1` snapshots, journals
//! without a header), frozen here so that a data directory written by that
//! version still loads after the catalog types move on. Nothing but the
//! loader in `journal.rs` uses these types; they are converted to the
//! current ones once, at load, and the directory is rewritten in the
//! current format.

use crate::catalog::{Catalog, ChunkEntry, FileEntry, Record};
use protocol::{ChunkHeader, ChunkId, FileName, NodeId};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Deserialize)]
pub struct SnapshotV1 {
    pub last_seq: u64,
    pub catalog: CatalogV1,
}

#[derive(Deserialize)]
pub struct CatalogV1 {
    files: BTreeMap<FileName, FileEntryV1>,
    node_addrs: BTreeMap<NodeId, String>,
    draining: BTreeSet<NodeId>,
}

#[derive(Deserialize)]
pub struct FileEntryV1 {
    size: u64,
    created_ms: u64,
    chunk_size: u64,
    replication: u32,
    stripes: Vec<StripeEntryV1>,
}

#[derive(Deserialize)]
struct StripeEntryV1 {
    data: Vec<ChunkEntryV1>,
    parity: Option<ChunkEntryV1>,
}

#[derive(Deserialize)]
struct ChunkEntryV1 {
    header: ChunkHeader,
    nodes: Vec<NodeId>,
}

#[derive(Deserialize)]
pub enum RecordV1 {
    PutFile { name: FileName, entry: FileEntryV1 },
    RemoveFile { name: FileName },
    AddCopy { chunk: ChunkId, node: NodeId },
    DropCopies { chunk: ChunkId, nodes: Vec<NodeId> },
    NodeAddr { id: NodeId, addr: String },
    Drain { node: NodeId, on: bool },
    Forget { node: NodeId },
}

fn chunk(c: ChunkEntryV1) -> ChunkEntry {
    ChunkEntry {
        header: c.header,
        nodes: c.nodes,
    }
}

/// Round 1's entry in today's shape: a one-element parity list with the
/// `xor` role (scheme `xor:K`), or scheme `none` (see
/// [`FileEntry::from_legacy`]).
fn file(f: FileEntryV1) -> FileEntry {
    FileEntry::from_legacy(crate::catalog::legacy::FileEntry {
        size: f.size,
        created_ms: f.created_ms,
        chunk_size: f.chunk_size,
        replication: f.replication,
        stripes: f
            .stripes
            .into_iter()
            .map(|s| crate::catalog::legacy::StripeEntry {
                data: s.data.into_iter().map(chunk).collect(),
                parity: s.parity.map(chunk),
            })
            .collect(),
    })
}

impl CatalogV1 {
    pub fn into_current(self) -> Catalog {
        Catalog::upgraded(
            self.files.into_iter().map(|(n, f)| (n, file(f))).collect(),
            self.node_addrs,
            self.draining,
        )
    }
}

impl RecordV1 {
    pub fn into_current(self) -> Record {
        match self {
            RecordV1::PutFile { name, entry } => Record::PutFile {
                name,
                entry: file(entry),
            },
            RecordV1::RemoveFile { name } => Record::RemoveFile { name },
            RecordV1::AddCopy { chunk, node } => Record::AddCopy { chunk, node },
            RecordV1::DropCopies { chunk, nodes } => Record::DropCopies { chunk, nodes },
            RecordV1::NodeAddr { id, addr } => Record::NodeAddr { id, addr },
            RecordV1::Drain { node, on } => Record::Drain { node, on },
            RecordV1::Forget { node } => Record::Forget { node },
        }
    }
}
