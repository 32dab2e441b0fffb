use thiserror::Error;

/// Why a simulation cannot run: bad parameters or a layout the real
/// placement refuses.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    BadInput(String),
    #[error("bad scheme: {0}")]
    Scheme(#[from] codes::Error),
    #[error("placement refuses this layout: {0}")]
    Placement(#[from] decide::Error),
    #[error("layout file: {0}")]
    Layout(#[from] toml::de::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn bad<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::BadInput(msg.into()))
}
