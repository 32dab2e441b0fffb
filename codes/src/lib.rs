//! Erasure codes for dfs-sim: XOR, Reed-Solomon (`rs:K+M`) and two-level
//! local reconstruction codes (`lrc:K+L+G`) over GF(2^8).
//!
//! Pure computation, no I/O: the client (put encoding, degraded get), the
//! node (repair rebuild), the coordinator (health, fsck, what-if, repair
//! planning) and the simulator all call the same functions, so there is one
//! answer to "is this stripe decodable?" and one to "what must be read?".
//!
//! Members of a stripe are numbered data first (`0..k`), then parities.
//! Work is done on byte ranges ([`Code::encode_add`], [`Decoder::add`]), so
//! callers stream members through a bounded buffer instead of holding `k`
//! whole chunks.

mod code;
mod error;
pub mod gf;
mod scheme;

pub use code::{Code, Decoder};
pub use error::Error;
pub use scheme::{Role, Scheme, DEFAULT_XOR_K, MAX_MEMBERS};

#[cfg(test)]
mod tests;
