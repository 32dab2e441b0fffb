//! The dfs-sim chunkserver. A node stores chunks as one file each under its
//! data directory, serves them as streams of framed data, checks a CRC on
//! every receive and every read, and keeps a session with the coordinator
//! for heartbeats and commands.
//!
//! The node never interprets file names: it only knows [`protocol::ChunkId`]s.

pub mod chunkfile;
pub mod config;
mod ctx;
pub mod error;
pub mod identity;
pub mod metrics;
pub mod repair;
pub mod scrub;
pub mod server;
pub mod session;
pub mod store;
pub mod tags;

pub use config::NodeConfig;
pub use error::{Error, Result};
pub use server::run;
