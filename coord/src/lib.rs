//! The dfs-sim coordinator: owns the namespace and the catalog (file ->
//! stripes -> chunks -> nodes), makes every change durable in a journal
//! before acknowledging it, tracks node liveness through heartbeats, and
//! plans where chunks go.
//!
//! It never sees chunk bytes: clients and nodes move those directly.

pub mod catalog;
pub mod cmd;
pub mod config;
pub mod error;
pub mod group;
pub mod incidents;
pub mod journal;
mod legacy;
pub mod membership;
pub mod metrics;
pub mod rebalance;
pub mod rebuild;
pub mod repair;
pub mod reports;
pub mod server;
pub mod session;
pub mod state;
pub mod tags;
pub mod traffic;
pub mod uploads;

pub use config::CoordConfig;
/// Placement and the repair planner are pure decisions shared with the
/// simulator; they live in `decide` and keep their old paths here.
pub use decide::{placement, planner};
pub use error::{Error, Result};
pub use server::{run, serve};
pub use state::Coord;
