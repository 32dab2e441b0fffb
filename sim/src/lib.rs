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
//! 32 members per node) and lets each stand for `weight` real stripes on
//! the same nodes; bytes are scaled up by that weight. See
//! [`cluster::Base`] for what this keeps exact and what it approximates.

pub mod cluster;
pub mod engine;
mod error;
pub mod model;
pub mod report;
pub mod scenario;

pub use error::{Error, Result};
pub use model::{Failures, Layout, Params, RepairModel};
pub use report::{run, Summary};

#[cfg(test)]
mod tests;
