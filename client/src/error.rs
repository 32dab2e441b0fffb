//! The client's error type: each variant prints as the one line a user sees.

use protocol::{ErrorKind, WireError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no coordinator at {addr} ({source}); start one with `dfs-sim coord` or set DFS_COORD"
    )]
    NoCoordinator {
        addr: String,
        source: protocol::Error,
    },
    /// No member of the coordinator group leads it (or none answers).
    #[error("no coordinator leader: {0}")]
    NoLeader(String),
    /// The coordinator refused the request; its message names the cause.
    #[error("{0}")]
    Coord(WireError),
    #[error("talking to {peer}: {source}")]
    Protocol {
        peer: String,
        source: protocol::Error,
    },
    #[error("{path}: {source}")]
    Local {
        path: String,
        source: std::io::Error,
    },
    #[error("put of {name} failed: {cause}; nothing was committed")]
    PutFailed { name: String, cause: String },
    /// The commit was sent but no answer came back (the coordinator died
    /// or the connection broke): the put may or may not have taken effect.
    #[error("put of {name}: no answer to the commit ({cause}); the file may or may not have been stored, check with `dfs-sim stat {name}`")]
    CommitUnknown { name: String, cause: String },
    #[error("{0}")]
    Unreadable(String),
    #[error("{0}")]
    Usage(String),
    /// The caller's final check refused the commit of a put (its bytes did
    /// not match a digest it was sent with); nothing was committed.
    #[error("{0}")]
    Rejected(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn coord_kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Coord(w) => Some(w.kind),
            _ => None,
        }
    }
}
