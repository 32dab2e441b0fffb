//! The one error type of `localcluster`: each variant prints as the line a
//! user sees.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("no cluster in {dir} ({path} not found); start one with `dfs-sim up --data {dir}`")]
    NoCluster { dir: String, path: String },
    #[error("{path} is damaged: {source}")]
    Damaged {
        path: String,
        source: serde_json::Error,
    },
    #[error("unknown node {id:?} (this cluster has {known})")]
    UnknownNode { id: String, known: String },
    #[error("cannot send SIG{signal} to pid {pid}: {reason}")]
    Signal {
        signal: String,
        pid: u32,
        reason: String,
    },
    #[error("{id} exited during startup ({status}); see {}{last}", log.display())]
    Died {
        id: String,
        status: String,
        log: PathBuf,
        /// ": <last log line>" or empty.
        last: String,
    },
    #[error("{id} did not start within {secs} s; see {}", log.display())]
    NotReady { id: String, secs: u64, log: PathBuf },
    #[error("the coordinator did not see all {nodes} nodes alive within {secs} s; see the logs in {}", logs.display())]
    NotAlive {
        nodes: usize,
        secs: u64,
        logs: PathBuf,
    },
    #[error("{id} printed an unexpected line: {line}")]
    BadReadyLine { id: String, line: String },
    #[error(transparent)]
    Client(#[from] client::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
