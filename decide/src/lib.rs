//! The coordinator's decisions as pure functions of catalog state and time:
//! what a catalog entry is (`entry`), where new chunks go (`placement`), and
//! what to repair, in which order, from where to where (`planner`).
//!
//! Why a crate of its own: the durability simulator (`sim`) and unit tests
//! call exactly the code the live coordinator calls, without sockets, a
//! journal or an async runtime. Nothing here does I/O.

pub mod entry;
pub mod error;
pub mod placement;
pub mod planner;

pub use error::{Error, Result};
