//! The node's error type.

use protocol::{ChunkId, ErrorKind, WireError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Protocol(#[from] protocol::Error),
    #[error("no chunk {0}")]
    NoSuchChunk(ChunkId),
    #[error("chunk {chunk} is corrupt: {reason}")]
    Corrupt { chunk: ChunkId, reason: String },
    #[error("disk full: {0}")]
    DiskFull(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("this node belongs to another cluster ({mine}); the coordinator is of cluster {theirs}: refusing it (wrong --coord, or a coordinator started on the wrong --data?)")]
    WrongCluster {
        mine: protocol::ClusterId,
        theirs: protocol::ClusterId,
    },
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("refusing a deposed coordinator leader: its term {term} is below {seen}, the highest this node has seen")]
    Deposed { term: u64, seen: u64 },
    /// A member of a coordinator group that does not lead it.
    #[error("that coordinator is not the leader")]
    NotLeader { leader: Option<String> },
    /// The store is gone or unwritable (see `ChunkStore::probe`): the node
    /// takes no writes until it works again.
    #[error("this node's store failed: {0}")]
    StoreFailed(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error as sent back to the peer.
    pub fn to_wire(&self) -> WireError {
        let kind = match self {
            Error::NoSuchChunk(_) => ErrorKind::NoSuchChunk,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::DiskFull(_) => ErrorKind::DiskFull,
            Error::BadRequest(_) => ErrorKind::BadRequest,
            Error::Forbidden(_) | Error::WrongCluster { .. } | Error::Deposed { .. } => {
                ErrorKind::Forbidden
            }
            Error::Io(e) if is_disk_full(e) => ErrorKind::DiskFull,
            _ => ErrorKind::Internal,
        };
        WireError::new(kind, self.to_string())
    }
}

/// ENOSPC and EDQUOT both mean "no room", whatever the file system says.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
}
