//! The dfs-sim wire protocol: every type that crosses a socket, the framing that
//! carries it and the handshake that opens every connection.
//!
//! Nothing outside this crate encodes or decodes bytes on the wire, so a change
//! of format is a change to this crate alone (and to [`PROTOCOL_VERSION`]).

mod activity;
pub mod attrs;
pub mod chunk;
pub mod connection;
pub mod dashboard;
pub mod data_client;
pub mod error;
pub mod handshake;
pub mod health;
pub mod ids;
pub mod message;
pub mod server;
pub mod tag;
pub mod token;

pub use connection::{Connection, Frame, DATA_FRAME_MAX, MAX_FRAME_LEN};
pub use dashboard::{
    Flow, FlowKind, Incident, IncidentCause, IncidentNode, IncidentScheme, NodeTraffic,
};
pub use error::{Error, ErrorKind, Result, WireError};
pub use handshake::{Credential, Role, Secret};
pub use ids::{ChunkId, ClusterId, FileName, NodeId};
pub use message::*;
pub use tag::OwnerTag;
pub use token::{BlockOp, BlockToken, TokenKey};

/// Bumped on every incompatible change of any message; peers with different
/// versions refuse each other in the handshake instead of misreading frames.
pub const PROTOCOL_VERSION: u16 = 4;
