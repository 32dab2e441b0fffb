//! The dfs-sim client: asks the coordinator where things are and moves the
//! bytes itself, straight between this process and the nodes.
//!
//! Put splits a file into chunks, hashes and compresses them on a bounded
//! pipeline (a few chunks in memory whatever the file size), computes each
//! stripe's XOR parity and writes every copy to its node in parallel, then
//! commits. Get reads each chunk from the first copy that verifies, and
//! rebuilds it from the stripe's parity when none does.

pub mod config;
pub mod coord_client;
pub mod error;
pub mod get;
pub mod put;
pub mod report;

pub use config::ClientConfig;
pub use coord_client::CoordClient;
pub use error::{Error, Result};
