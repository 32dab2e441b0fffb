//! The one error type of `chaos`: what stops a run before it has a verdict
//! (a verdict with violations is a `Report`, not an error).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cluster(#[from] localcluster::Error),
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Setup(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
