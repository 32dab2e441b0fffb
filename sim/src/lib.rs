//! `dfs-sim sim`: how safe is a storage layout?
//!
//! Years of node, domain, transient and latent-sector failures in simulated
//! time, with no I/O and no runtime: an event queue, a seeded RNG, and the
//! coordinator's own decision code. Stripes are placed by
//! `decide::placement::plan`, losses are decided by
//! `codes::Code::is_decodable`, health by `protocol::health` (what
//! `fsck --what-if` prints), and repairs are ordered and targeted by
//! `decide::planner::plan` — the functions the running system calls, so the
//! simulator cannot drift from it. Only time, disks and network are
//! modelled.
//!
//! Scale: a cluster of 484 × 16 TB holds millions of stripes. The simulator
//! places a *sample* of stripes with the real placement (by default about
//! 32 members per node) to drive repair, and counts loss over every real
//! stripe with the exposure method ([`exposure`]): whenever nodes fail,
//! the expected number of real stripes made undecodable given the
//! placement's distribution over node sets. See [`cluster::Base`] and
//! [`exposure`] for what is exact and what is approximated.

pub mod cluster;
pub mod engine;
mod error;
pub mod exposure;
pub mod model;
pub mod report;
pub mod rule;
pub mod scenario;

pub use error::{Error, Result};
pub use model::{Failures, Layout, Params, RepairModel};
pub use report::{run, Summary};

#[cfg(test)]
mod tests;
