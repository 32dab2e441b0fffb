use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// `--parity` could not be parsed or is impossible.
    #[error("invalid parity scheme {scheme:?}: {reason}")]
    BadScheme { scheme: String, reason: String },
    /// The members still available cannot rebuild what was asked for.
    #[error("stripe undecodable: members {lost:?} lost, the rest cannot rebuild {wanted:?}")]
    Undecodable {
        lost: Vec<usize>,
        wanted: Vec<usize>,
    },
    /// A caller passed a member index or data count the scheme does not have.
    #[error("{0}")]
    Shape(String),
}
