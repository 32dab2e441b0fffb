//! One module per control-path operation: each validates its request,
//! changes state only through the journal, and builds its response.

pub mod copy;
pub mod fsck;
pub mod incidents;
pub mod keys;
pub mod maintain;
pub mod namespace;
pub mod put;
pub mod read;
pub mod remove;
pub mod status;

/// Milliseconds since the Unix epoch, for creation times.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
