//! Errors of the protocol layer, and the error type that travels on the wire.

use serde::{Deserialize, Serialize};

/// What went wrong talking to a peer. Every variant names the cause so the
/// binary can print one line that tells the user what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed message: {0}")]
    Decode(#[from] postcard::Error),
    #[error("peer closed the connection")]
    Closed,
    #[error("protocol error: expected {expected}, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    #[error("protocol version mismatch: we speak {ours}, peer speaks {theirs}")]
    VersionMismatch { ours: u16, theirs: u16 },
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("message of {0} bytes exceeds the frame limit")]
    TooLarge(usize),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("{0}")]
    Remote(WireError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The class of a failure reported by a remote peer; callers branch on it
/// (e.g. a client tries the next replica on `NoSuchChunk` or `Corrupt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    NoSuchFile,
    FileExists,
    InvalidName,
    NotEnoughNodes,
    NoSuchChunk,
    Corrupt,
    DiskFull,
    BadRequest,
    NoSuchUpload,
    NoSuchNode,
    Internal,
    /// The peer may not do this (role, key, token).
    Forbidden,
    /// A per-peer or global limit was reached; try again later.
    Overloaded,
}

/// An error sent back to the peer instead of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    pub kind: ErrorKind,
    pub message: String,
}

impl WireError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        WireError {
            kind,
            message: message.into(),
        }
    }
}

impl Error {
    /// The remote error kind, if the peer answered with an error.
    pub fn remote_kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Remote(w) => Some(w.kind),
            _ => None,
        }
    }
}
