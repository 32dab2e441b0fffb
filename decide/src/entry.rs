//! What the catalog holds for a file: its stripes, their chunks and the
//! nodes holding each copy. Plain data shared by the coordinator's catalog,
//! its decisions and the simulator.

use protocol::{ChunkHeader, NodeId, Scheme};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub size: u64,
    pub created_ms: u64,
    pub chunk_size: u64,
    pub replication: u32,
    /// The erasure code of every stripe; roles of the parities follow from
    /// it (`Scheme::parity_roles`).
    pub scheme: Scheme,
    pub stripes: Vec<StripeEntry>,
    /// Small metadata (S3 content type, user metadata, ETag). Chunk offsets
    /// come from each chunk's `raw_len`, not from `chunk_size`: a file made
    /// by [`Record::Concat`] has chunks of different lengths.
    pub attrs: protocol::Attrs,
}

/// Data chunks (at most the scheme's K; fewer in a short stripe, whose
/// missing data are virtual zeros never stored) and every parity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeEntry {
    pub data: Vec<ChunkEntry>,
    /// In the scheme's member order: member `K + j` is `parity[j]`.
    pub parity: Vec<ChunkEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    pub header: ChunkHeader,
    /// Nodes holding a verified copy.
    pub nodes: Vec<NodeId>,
}

/// Where in its stripe a chunk sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    Data(usize),
    Parity(usize),
}

impl Slot {
    pub fn is_parity(self) -> bool {
        matches!(self, Slot::Parity(_))
    }

    /// Member index in the code (`k` data members come first).
    pub fn member(self, k: usize) -> usize {
        match self {
            Slot::Data(i) => i,
            Slot::Parity(j) => k + j,
        }
    }
}

impl FileEntry {
    pub fn chunks(&self) -> impl Iterator<Item = (&ChunkEntry, bool)> {
        self.stripes.iter().flat_map(|s| {
            s.data
                .iter()
                .map(|c| (c, false))
                .chain(s.parity.iter().map(|c| (c, true)))
        })
    }

    /// The code of this file's stripes, built once per distinct scheme
    /// (`codes::Code::shared`). Schemes are validated when decoded, so
    /// every scheme a catalog entry can hold has a code.
    pub fn code(&self) -> Arc<codes::Code> {
        codes::Code::shared(self.scheme)
            .expect("a catalog scheme was validated when it was decoded")
    }

    /// Copies each chunk should have: `replication` for data, one for parity.
    pub fn target(&self, parity: bool) -> u32 {
        if parity {
            1
        } else {
            self.replication
        }
    }
}

impl StripeEntry {
    pub fn members(&self) -> impl Iterator<Item = (Slot, &ChunkEntry)> {
        self.data
            .iter()
            .enumerate()
            .map(|(i, c)| (Slot::Data(i), c))
            .chain(
                self.parity
                    .iter()
                    .enumerate()
                    .map(|(j, c)| (Slot::Parity(j), c)),
            )
    }

    pub fn get(&self, slot: Slot) -> Option<&ChunkEntry> {
        match slot {
            Slot::Data(i) => self.data.get(i),
            Slot::Parity(j) => self.parity.get(j),
        }
    }

    /// Round 1's stripe (data plus at most one XOR parity) in today's shape:
    /// the parity becomes a one-element list whose role is `xor`. The loader
    /// of round-1 snapshots and journals calls this (via
    /// [`FileEntry::from_legacy`]).
    pub fn from_legacy(old: legacy::StripeEntry) -> StripeEntry {
        StripeEntry {
            data: old.data,
            parity: old.parity.into_iter().collect(),
        }
    }
}

impl FileEntry {
    /// Round 1's file entry: no scheme field; a file had XOR parity iff its
    /// stripes carried a parity block, and its stripe width was the longest
    /// stripe's data count. Files without parity become `none`, whose
    /// stripes hold one chunk each (round 1 planned them that way).
    pub fn from_legacy(old: legacy::FileEntry) -> FileEntry {
        let parity = old.stripes.iter().any(|s| s.parity.is_some());
        let width = old.stripes.iter().map(|s| s.data.len()).max().unwrap_or(1);
        let scheme = if parity {
            Scheme::Xor {
                k: width.clamp(1, codes::MAX_MEMBERS - 1) as u8,
            }
        } else {
            Scheme::None
        };
        let mut stripes: Vec<StripeEntry> = old
            .stripes
            .into_iter()
            .map(StripeEntry::from_legacy)
            .collect();
        if !parity {
            // `none` stripes hold one chunk each.
            stripes = stripes
                .into_iter()
                .flat_map(|s| {
                    s.data.into_iter().map(|c| StripeEntry {
                        data: vec![c],
                        parity: Vec::new(),
                    })
                })
                .collect();
        }
        FileEntry {
            size: old.size,
            created_ms: old.created_ms,
            chunk_size: old.chunk_size,
            replication: old.replication,
            scheme,
            stripes,
            attrs: Default::default(),
        }
    }
}

/// Round 1's stripe shape, the input of [`FileEntry::from_legacy`]. The
/// rest of round 1's on-disk format (snapshot, records) is frozen in
/// `crate::legacy`, whose loader calls the conversion.
pub mod legacy {
    use super::ChunkEntry;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct FileEntry {
        pub size: u64,
        pub created_ms: u64,
        pub chunk_size: u64,
        pub replication: u32,
        pub stripes: Vec<StripeEntry>,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct StripeEntry {
        pub data: Vec<ChunkEntry>,
        pub parity: Option<ChunkEntry>,
    }
}
