//! The coordinator's error type.

use protocol::{ErrorKind, FileName, WireError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such file: {0}")]
    NoSuchFile(FileName),
    #[error("{0} already exists (use --force to overwrite)")]
    FileExists(FileName),
    #[error("{0} is being written by another put right now")]
    Busy(FileName),
    #[error(transparent)]
    Placement(#[from] decide::Error),
    #[error("no such upload {0} (expired, aborted, or the coordinator restarted)")]
    NoSuchUpload(u64),
    #[error("commit does not match the plan: {0}")]
    BadCommit(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("journal: {0}")]
    Journal(String),
    #[error("the coordinator runs --read-only: no change is accepted")]
    ReadOnly,
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("too busy: {0}")]
    Overloaded(String),
    /// This member of a coordinator group does not lead it: the request
    /// goes to `leader` (an address), or to another member. The server
    /// answers it with a typed `NotLeader` reply, never as an error.
    #[error("not the coordinator leader (leader: {})", leader.as_deref().unwrap_or("unknown"))]
    NotLeader { leader: Option<String> },
    #[error("no coordinator leader: {0}")]
    NoLeader(String),
    #[error("coordinator group: {0}")]
    Group(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Protocol(#[from] protocol::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn to_wire(&self) -> WireError {
        let kind = match self {
            Error::NoSuchFile(_) => ErrorKind::NoSuchFile,
            Error::FileExists(_) | Error::Busy(_) => ErrorKind::FileExists,
            Error::Placement(_) => ErrorKind::NotEnoughNodes,
            Error::NoSuchUpload(_) => ErrorKind::NoSuchUpload,
            Error::BadCommit(_) | Error::BadRequest(_) | Error::ReadOnly => ErrorKind::BadRequest,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::Overloaded(_) | Error::NoLeader(_) => ErrorKind::Overloaded,
            _ => ErrorKind::Internal,
        };
        WireError::new(kind, self.to_string())
    }
}
